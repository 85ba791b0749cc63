//! Weir `enrich`: SQL in flight. `options.transform` is a statement that
//! reads each batch as the table `input` and may join lookup tables
//! (`options.lookups`, held in memory), run with DataFusion on the batch as it
//! passes from the source to the destination:
//!
//! ```sql
//! SELECT e.*, c.title, e.duration / 1000.0 AS engagement_seconds
//! FROM input e LEFT JOIN content c ON c.id = e.content_id
//! ```
//!
//! The statement is planned once against the source's schema before any data
//! moves, so an unknown column or lookup is an error naming it; the plan's
//! output schema is what the destination gets (and what `runner check`
//! prints). Each batch is then run on one partition, so that a batch gives
//! the same rows in the same order every time it is read again: the
//! destinations that resume a killed load by counting rows rely on it.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::datafusion;
use weir_core::{Error, Result};

/// The name a statement reads each batch by.
pub const INPUT: &str = "input";

/// A lookup table: its rows, loaded from its source.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub name: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Lookup {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A planned statement, ready to run over batches of one schema.
pub struct Enrich {
    sql: String,
    ctx: SessionContext,
    input: SchemaRef,
    output: SchemaRef,
    /// `input` is re-registered for each batch: one batch at a time.
    running: tokio::sync::Mutex<()>,
}

impl Enrich {
    /// Plan `sql` over an `input` of `schema` and the `lookups`: errors name
    /// the column or table at fault, before any data moves.
    pub async fn plan(sql: &str, input: SchemaRef, lookups: &[Lookup]) -> Result<Self> {
        let config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        let state = ctx.state();
        let statement = state
            .sql_to_statement(sql, &Dialect::Generic)
            .map_err(|e| Error::user(format!("options.transform is not valid SQL: {e}")))?;
        let named = state
            .resolve_table_references(&statement)
            .map_err(|e| Error::user(format!("options.transform is not valid SQL: {e}")))?;
        let mut reads_input = false;
        for reference in &named {
            let table = reference.table();
            let known = table == INPUT || lookups.iter().any(|l| l.name == table);
            if !matches!(reference, TableReference::Bare { .. }) || !known {
                // A CTE's name is a bare reference too: let the planner judge those.
                if matches!(reference, TableReference::Bare { .. }) {
                    continue;
                }
                return Err(Error::user(format!(
                    "options.transform reads `{reference}`, which is neither `input` (the batch) nor a lookup \
                     (options.lookups names: {})",
                    names(lookups)
                )));
            }
            reads_input |= table == INPUT;
        }
        if !reads_input {
            return Err(Error::user(
                "options.transform does not read `input`: write it over each batch, `SELECT … FROM input …`",
            ));
        }
        for lookup in lookups {
            if lookup.name == INPUT {
                return Err(Error::user("options.lookups: `input` is the batch's name; name the lookup otherwise"));
            }
            let table = MemTable::try_new(lookup.schema.clone(), vec![lookup.batches.clone()])
                .map_err(|e| Error::internal(format!("lookup `{}`: {e}", lookup.name)))?;
            ctx.register_table(lookup.name.as_str(), Arc::new(table))
                .map_err(|e| Error::internal(format!("lookup `{}`: {e}", lookup.name)))?;
        }
        let empty = RecordBatch::new_empty(input.clone());
        ctx.register_batch(INPUT, empty).map_err(|e| Error::internal(format!("registering the input: {e}")))?;
        let df = ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(|e| Error::user(format!("options.transform cannot run: {}", plain(&e.to_string()))))?;
        let output: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut seen = std::collections::HashSet::new();
        for f in output.fields() {
            if !seen.insert(f.name().as_str()) {
                return Err(Error::user(format!(
                    "options.transform gives two columns named `{}`: name one of them otherwise (AS …)",
                    f.name()
                )));
            }
        }
        Ok(Self { sql: sql.to_owned(), ctx, input, output, running: tokio::sync::Mutex::new(()) })
    }

    /// The columns each batch comes out with.
    pub fn output(&self) -> SchemaRef {
        self.output.clone()
    }

    /// Run the statement over one batch.
    pub async fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.schema().fields() != self.input.fields() {
            return Err(Error::internal("a batch whose schema is not the one the transform was planned for"));
        }
        let _one = self.running.lock().await;
        self.ctx.deregister_table(INPUT).map_err(|e| Error::internal(e.to_string()))?;
        self.ctx.register_batch(INPUT, batch).map_err(|e| Error::internal(e.to_string()))?;
        let fail = |e: datafusion::error::DataFusionError| {
            Error::user(format!("options.transform failed on a batch: {}", plain(&e.to_string())))
        };
        let df = self.ctx.sql_with_options(&self.sql, read_only()).await.map_err(fail)?;
        let batches = df.collect().await.map_err(fail)?;
        let joined = arrow::compute::concat_batches(&self.output, &batches)
            .map_err(|e| Error::internal(format!("the transform's batches: {e}")))?;
        // The same columns as planned, under the planned schema's field names and nullability.
        RecordBatch::try_new(self.output.clone(), joined.columns().to_vec())
            .map_err(|e| Error::user(format!("options.transform gave a batch that does not fit its plan: {e}")))
    }
}

fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

fn names(lookups: &[Lookup]) -> String {
    match lookups {
        [] => "none".to_owned(),
        l => l.iter().map(|l| format!("`{}`", l.name)).collect::<Vec<_>>().join(", "),
    }
}

/// DataFusion's message without its backtrace-ish prefixes.
fn plain(message: &str) -> String {
    message.replace("Schema error: ", "").replace("Error during planning: ", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::array_value_to_string;

    fn events() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("content_id", DataType::Int64, true),
            Field::new("duration", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Int64Array::from(vec![Some(10), Some(11), None])),
                Arc::new(Int64Array::from(vec![Some(30_000), Some(5_000), Some(1_000)])),
            ],
        )
        .unwrap()
    }

    fn content() -> Lookup {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("title", DataType::Utf8, true),
            Field::new("length_seconds", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![10, 11])),
                Arc::new(StringArray::from(vec!["Ten", "Eleven"])),
                Arc::new(Int64Array::from(vec![60, 10])),
            ],
        )
        .unwrap();
        Lookup { name: "content".into(), schema, batches: vec![batch] }
    }

    const SQL: &str = "SELECT e.id, c.title, e.duration / 1000.0 AS engagement_seconds, \
                       round(100.0 * e.duration / 1000.0 / c.length_seconds, 2) AS engagement_percent \
                       FROM input e LEFT JOIN content c ON c.id = e.content_id";

    #[tokio::test]
    async fn joins_each_batch_with_its_lookups_in_order() {
        let e = Enrich::plan(SQL, events().schema(), &[content()]).await.unwrap();
        let names: Vec<_> = e.output().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "title", "engagement_seconds", "engagement_percent"]);
        for _ in 0..2 {
            let out = e.apply(events()).await.unwrap();
            let cell = |c: usize, r: usize| array_value_to_string(out.column(c), r).unwrap();
            assert_eq!(
                (cell(0, 0), cell(1, 0), cell(2, 0), cell(3, 0)),
                ("1".into(), "Ten".into(), "30.0".into(), "50.0".into())
            );
            assert_eq!((cell(0, 2), cell(1, 2)), ("3".into(), "".into()));
        }
    }

    #[tokio::test]
    async fn names_what_is_wrong_before_any_data() {
        let err = |sql: &'static str| async move {
            Enrich::plan(sql, events().schema(), &[content()]).await.err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(err("SELECT nope FROM input").await.contains("nope"));
        assert!(err("SELECT * FROM input JOIN missing m ON m.id = input.id").await.contains("missing"));
        assert!(err("SELECT * FROM content").await.contains("does not read `input`"));
        assert!(err("DELETE FROM input").await.contains("options.transform"));
        assert!(err("SELEC 1").await.contains("not valid SQL"));
        assert!(
            err("SELECT e.id, c.id FROM input e JOIN content c ON c.id = e.content_id").await.contains("two columns")
        );
    }
}
