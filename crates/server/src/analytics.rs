//! `GET /analytics/query`: an aggregate over the events, from PostgreSQL (the
//! `events` table) or from its copy in the lake (`source=lake`).
//!
//! `metric` is `count`, `unique_users`, `sum` or `avg` (the last two of the
//! numeric `property`); `event` names the events; `filters` is a JSON object
//! of properties that must equal the given values (compared as text);
//! `group_by` is `day`, `hour` or `property:<name>`; `from` (included) and
//! `to` (excluded) are RFC 3339 times or dates.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use serde_json::{Value, json};
use weir_core::{Error, Result};
use weir_meta::{AnalyticsQuery, AnalyticsRow, GroupBy, MAX_GROUPS, Metric};

use crate::api::ApiError;
use crate::state::AppState;

/// Where the answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Postgres,
    Lake,
}

/// The query string, parsed.
pub(crate) fn parse(params: &HashMap<String, String>) -> Result<(AnalyticsQuery, Source)> {
    let known = ["metric", "property", "event", "filters", "group_by", "from", "to", "source"];
    if let Some(k) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::user(format!(
            "`{k}` is not a parameter of the analytics query (they are: {})",
            known.join(", ")
        )));
    }
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let property = || {
        get("property")
            .map(str::to_owned)
            .ok_or_else(|| Error::user("metric `sum` and `avg` need `property`: the numeric property to add up"))
    };
    let metric = match get("metric").unwrap_or("count") {
        "count" => Metric::Count,
        "unique_users" => Metric::UniqueUsers,
        "sum" => Metric::Sum(property()?),
        "avg" => Metric::Avg(property()?),
        other => {
            return Err(Error::user(format!("metric `{other}`: it is one of count, unique_users, sum, avg")));
        }
    };
    let group_by = match get("group_by") {
        None => None,
        Some("day") => Some(GroupBy::Day),
        Some("hour") => Some(GroupBy::Hour),
        Some(g) => match g.strip_prefix("property:") {
            Some(p) if !p.is_empty() => Some(GroupBy::Property(p.to_owned())),
            _ => return Err(Error::user(format!("group_by `{g}`: it is day, hour, or property:<name>"))),
        },
    };
    let filters = match get("filters") {
        None => Vec::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
                    _ => Err(Error::user(format!("filters.{k}: a string, number or boolean to compare with"))),
                })
                .collect::<Result<_>>()?,
            _ => return Err(Error::user(r#"filters: a JSON object of properties and values, as {"plan":"pro"}"#)),
        },
    };
    let time = |k: &str| -> Result<Option<DateTime<Utc>>> {
        let Some(v) = get(k) else { return Ok(None) };
        if let Ok(t) = DateTime::parse_from_rfc3339(v) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(|d| Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()))
            .map_err(|_| Error::user(format!("{k}: `{v}` is neither an RFC 3339 time nor a date (2025-03-23)")))
    };
    let source = match get("source").unwrap_or("postgres") {
        "postgres" => Source::Postgres,
        "lake" => Source::Lake,
        other => return Err(Error::user(format!("source `{other}`: it is postgres or lake"))),
    };
    let query = AnalyticsQuery {
        metric,
        event: get("event").map(str::to_owned),
        filters,
        group_by,
        from: time("from")?,
        to: time("to")?,
    };
    Ok((query, source))
}

/// Answer from the source asked for.
pub(crate) async fn answer(state: &AppState, q: &AnalyticsQuery, source: Source) -> Result<Vec<AnalyticsRow>> {
    match source {
        Source::Postgres => state.meta.analytics(q).await,
        Source::Lake => {
            let sql = lake_sql(q, &state.config.events_lake_table);
            let run = async {
                let result = state.engine.query(&sql).await?;
                let batches: Vec<_> = result.batches.try_collect().await?;
                let mut rows = Vec::new();
                for b in &batches {
                    let group = cast(b.column(0), &DataType::Utf8).map_err(|e| Error::internal(e.to_string()))?;
                    let value = cast(b.column(1), &DataType::Float64).map_err(|e| Error::internal(e.to_string()))?;
                    let (group, value) =
                        (group.as_string::<i32>(), value.as_primitive::<arrow::datatypes::Float64Type>());
                    for i in 0..b.num_rows() {
                        rows.push(AnalyticsRow {
                            group: (!group.is_null(i)).then(|| group.value(i).to_owned()),
                            value: (!value.is_null(i)).then(|| value.value(i)),
                        });
                    }
                }
                Ok(rows)
            };
            tokio::time::timeout(state.config.query_timeout, run).await.map_err(|_| {
                Error::user(format!("the lake query took longer than {:?} and was stopped", state.config.query_timeout))
            })?
        }
    }
}

/// The same question in DataFusion's SQL, over the lake copy of the events.
fn lake_sql(q: &AnalyticsQuery, table: &str) -> String {
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let group = match &q.group_by {
        None => "CAST(NULL AS VARCHAR)".to_owned(),
        Some(GroupBy::Day) => "to_char(\"timestamp\", '%Y-%m-%d')".to_owned(),
        Some(GroupBy::Hour) => "to_char(\"timestamp\", '%Y-%m-%dT%H:00Z')".to_owned(),
        Some(GroupBy::Property(p)) => format!("json_text(properties, {})", lit(p)),
    };
    let value = match &q.metric {
        Metric::Count => "CAST(count(*) AS DOUBLE)".to_owned(),
        Metric::UniqueUsers => "CAST(count(DISTINCT user_id) AS DOUBLE)".to_owned(),
        Metric::Sum(p) => format!("sum(json_number(properties, {}))", lit(p)),
        Metric::Avg(p) => format!("avg(json_number(properties, {}))", lit(p)),
    };
    let mut sql = format!("SELECT {group} AS grp, {value} AS value FROM {table} WHERE true");
    if let Some(e) = &q.event {
        sql.push_str(&format!(" AND event = {}", lit(e)));
    }
    for (k, v) in &q.filters {
        sql.push_str(&format!(" AND json_text(properties, {}) = {}", lit(k), lit(v)));
    }
    let ts = |t: &DateTime<Utc>| lit(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    if let Some(from) = &q.from {
        sql.push_str(&format!(" AND \"timestamp\" >= {}", ts(from)));
    }
    if let Some(to) = &q.to {
        sql.push_str(&format!(" AND \"timestamp\" < {}", ts(to)));
    }
    match &q.group_by {
        None => {}
        Some(GroupBy::Property(_)) => sql.push_str(" GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1 ASC NULLS LAST"),
        Some(_) => sql.push_str(" GROUP BY 1 ORDER BY 1 ASC NULLS LAST"),
    }
    sql.push_str(&format!(" LIMIT {MAX_GROUPS}"));
    sql
}

/// The answer as JSON: counts as integers, sums and averages as numbers.
pub(crate) fn to_json(q: &AnalyticsQuery, source: Source, rows: &[AnalyticsRow]) -> Value {
    let integral = matches!(q.metric, Metric::Count | Metric::UniqueUsers);
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let value = match r.value {
                Some(v) if integral => json!(v as i64),
                Some(v) => json!(v),
                None => Value::Null,
            };
            json!({ "group": r.group, "value": value })
        })
        .collect();
    json!({
        "metric": match &q.metric {
            Metric::Count => "count",
            Metric::UniqueUsers => "unique_users",
            Metric::Sum(_) => "sum",
            Metric::Avg(_) => "avg",
        },
        "source": match source { Source::Postgres => "postgres", Source::Lake => "lake" },
        "rows": rows,
    })
}

/// `GET /analytics/query`.
pub(crate) async fn query(State(state): State<AppState>, Query(params): Query<HashMap<String, String>>) -> Response {
    let (q, source) = match parse(&params) {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    match answer(&state, &q, source).await {
        Ok(rows) => (StatusCode::OK, Json(to_json(&q, source, &rows))).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn parses_a_question_and_writes_its_lake_sql() {
        let (q, source) = parse(&params(&[
            ("metric", "sum"),
            ("property", "amount"),
            ("event", "purchase"),
            ("filters", r#"{"plan":"pro","n":1}"#),
            ("group_by", "day"),
            ("from", "2025-03-01"),
            ("source", "lake"),
        ]))
        .expect("valid");
        assert_eq!(source, Source::Lake);
        assert_eq!(q.metric, Metric::Sum("amount".into()));
        let sql = lake_sql(&q, "bronze.events");
        assert!(sql.contains("sum(json_number(properties, 'amount'))"), "{sql}");
        assert!(sql.contains("json_text(properties, 'plan') = 'pro'"), "{sql}");
        assert!(sql.contains("json_text(properties, 'n') = '1'"), "{sql}");
        assert!(sql.contains("\"timestamp\" >= '2025-03-01T00:00:00.000000Z'"), "{sql}");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for (pairs, expected) in [
            (vec![("metric", "median")], "metric `median`"),
            (vec![("metric", "sum")], "need `property`"),
            (vec![("group_by", "week")], "group_by `week`"),
            (vec![("filters", "[1]")], "filters: a JSON object"),
            (vec![("from", "yesterday")], "from: `yesterday`"),
            (vec![("evnt", "x")], "`evnt` is not a parameter"),
        ] {
            let e = parse(&params(&pairs)).expect_err("invalid");
            assert!(e.to_string().contains(expected), "{e}");
        }
    }

    #[test]
    fn quotes_are_doubled_in_the_lake_sql() {
        let (q, _) = parse(&params(&[("event", "it's")])).expect("valid");
        assert!(lake_sql(&q, "bronze.events").contains("event = 'it''s'"));
    }
}
