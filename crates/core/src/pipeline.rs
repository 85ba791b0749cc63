//! A pipeline: one row of the `controller` table, parsed and validated.

use std::fmt;

use serde_json::{Map, Value};

use crate::date::has_template;
use crate::{Error, Ident, Result};

/// A `controller` row as stored: plain values, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ControllerRow {
    pub id: i64,
    pub name: String,
    pub source_type: String,
    pub source_connection: Option<String>,
    pub source_table: Option<String>,
    pub data_source: Option<String>,
    pub destination_type: String,
    pub destination_connection: Option<String>,
    pub schema_name: String,
    pub destination_table: String,
    pub load_type: String,
    pub watermark_column: Option<String>,
    pub primary_key: Vec<String>,
    pub partition_by: Vec<String>,
    pub options: Value,
    pub depends_on: Vec<String>,
    pub notify_emails: Vec<String>,
    /// A cron expression for `runner schedule`.
    pub schedule: Option<String>,
    pub active: bool,
}

/// How the destination is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadType {
    /// The destination ends up holding exactly the source, swapped in atomically.
    Full,
    /// Only rows past the stored watermark: merged by `primary_key` if there is
    /// one, appended otherwise. A date-templated source replaces that date's rows.
    Incremental,
    /// Change data capture: a snapshot, then every insert, update and delete
    /// the source logged after it, applied to a mirror (or appended as history).
    Cdc,
}

impl LoadType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "incremental" => Ok(Self::Incremental),
            "cdc" => Ok(Self::Cdc),
            other => Err(Error::user(format!("load_type `{other}` is not known: use `full`, `incremental` or `cdc`"))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
            Self::Cdc => "cdc",
        }
    }
}

impl fmt::Display for LoadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated pipeline definition: every name a SQL statement will use is an [`Ident`].
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineDef {
    pub id: i64,
    pub name: String,
    pub source_type: String,
    pub source_connection: Option<String>,
    pub source_table: Option<String>,
    pub data_source: Option<String>,
    pub destination_type: String,
    pub destination_connection: Option<String>,
    pub schema_name: Ident,
    /// Empty for a transform (dbt), which builds the tables its project defines,
    /// and for a topic (see `destination_name`).
    pub destination_table: Option<Ident>,
    /// `destination_table` as written: a `kafka` destination's topic, which may
    /// hold `.` and `-` (`postgres.public.orders`) and is no SQL identifier.
    pub destination_name: Option<String>,
    pub load_type: LoadType,
    pub watermark_column: Option<Ident>,
    pub primary_key: Vec<Ident>,
    pub partition_by: Vec<Ident>,
    pub options: Map<String, Value>,
    pub depends_on: Vec<String>,
    pub notify_emails: Vec<String>,
    /// A cron expression for `runner schedule` (checked by the engine).
    pub schedule: Option<String>,
    pub active: bool,
}

impl PipelineDef {
    /// Validate a controller row. Errors name the column at fault and say what to write.
    pub fn parse(row: &ControllerRow) -> Result<Self> {
        let ident = |v: &str, what: &str| Ident::parse(v, what);
        let opt_ident = |v: &Option<String>, what: &str| -> Result<Option<Ident>> {
            v.as_deref().filter(|s| !s.is_empty()).map(|s| ident(s, what)).transpose()
        };
        let idents = |v: &[String], what: &str| -> Result<Vec<Ident>> { v.iter().map(|s| ident(s, what)).collect() };
        let options = match &row.options {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(Error::user(format!("options must be a JSON object, not `{other}`")));
            }
        };
        let def = Self {
            id: row.id,
            name: row.name.clone(),
            source_type: row.source_type.trim().to_ascii_lowercase(),
            source_connection: row.source_connection.clone().filter(|s| !s.is_empty()),
            source_table: row.source_table.clone().filter(|s| !s.is_empty()),
            data_source: row.data_source.clone().filter(|s| !s.is_empty()),
            destination_type: row.destination_type.trim().to_ascii_lowercase(),
            destination_connection: row.destination_connection.clone().filter(|s| !s.is_empty()),
            schema_name: ident(&row.schema_name, "schema_name")?,
            destination_table: match row.destination_type.trim().eq_ignore_ascii_case("kafka") {
                true => None,
                false => opt_ident(&Some(row.destination_table.clone()), "destination_table")?,
            },
            destination_name: Some(row.destination_table.trim().to_owned()).filter(|s| !s.is_empty()),
            load_type: LoadType::parse(&row.load_type)?,
            watermark_column: opt_ident(&row.watermark_column, "watermark_column")?,
            primary_key: idents(&row.primary_key, "primary_key")?,
            partition_by: idents(&row.partition_by, "partition_by")?,
            options,
            depends_on: row.depends_on.clone(),
            notify_emails: row.notify_emails.clone(),
            schedule: row.schedule.clone().filter(|s| !s.trim().is_empty()),
            active: row.active,
        };
        Ok(def)
    }

    /// Whether the run's data is selected by `--date` (a `{date}` template in
    /// `data_source` or `source_table`): such a run replaces that date's rows.
    pub fn is_date_sliced(&self) -> bool {
        [&self.data_source, &self.source_table].into_iter().flatten().any(|s| has_template(s))
    }

    /// The destination table a load writes; an error naming the column if the row left it empty.
    pub fn table(&self) -> Result<&Ident> {
        self.destination_table.as_ref().ok_or_else(|| {
            Error::user(format!("destination_table is empty; a {} destination needs one", self.destination_type))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ControllerRow {
        ControllerRow {
            id: 1,
            name: "orders".into(),
            source_type: "Parquet".into(),
            data_source: Some("orders/dt={date}/".into()),
            destination_type: "postgres".into(),
            schema_name: "bronze".into(),
            destination_table: "orders".into(),
            load_type: "incremental".into(),
            watermark_column: Some("updated_at".into()),
            primary_key: vec!["order_id".into()],
            options: serde_json::json!({"batch_size": 1000}),
            active: true,
            ..Default::default()
        }
    }

    #[test]
    fn parses_a_controller_row() {
        let def = PipelineDef::parse(&row()).unwrap();
        assert_eq!(def.source_type, "parquet");
        assert_eq!(def.load_type, LoadType::Incremental);
        assert_eq!(def.primary_key[0].as_str(), "order_id");
        assert!(def.is_date_sliced());
        assert_eq!(def.table().unwrap().as_str(), "orders");
        let mut r = row();
        r.destination_table = String::new();
        let def = PipelineDef::parse(&r).unwrap();
        assert_eq!(
            def.table().unwrap_err().to_string(),
            "destination_table is empty; a postgres destination needs one"
        );
    }

    #[test]
    fn rejects_bad_names_before_any_sql() {
        let mut r = row();
        r.primary_key = vec!["id; drop table audit".into()];
        assert!(PipelineDef::parse(&r).unwrap_err().to_string().starts_with("primary_key `"));
        let mut r = row();
        r.load_type = "merge".into();
        assert!(PipelineDef::parse(&r).unwrap_err().to_string().contains("full"));
        let mut r = row();
        r.options = serde_json::json!([1]);
        assert!(PipelineDef::parse(&r).is_err());
    }
}
