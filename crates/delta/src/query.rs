//! SQL over the catalog's Delta tables with DataFusion: `SELECT city, count(*)
//! FROM bronze.person_sabt GROUP BY city`. Only the tables a statement names are
//! opened; each is read at its latest version, with DataFusion's pruning by
//! partition values and file statistics.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use deltalake::datafusion;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use weir_core::{Error, Result};

use crate::error::delta_error;
use crate::location::TableLocation;

/// A table a query may name, as `schema_name.table_name`.
#[derive(Debug, Clone)]
pub struct QueryTable {
    pub schema_name: String,
    pub table_name: String,
    /// Where it is, or why it cannot be reached (reported only if a query names it).
    pub location: Result<TableLocation>,
}

/// A query's answer: its schema, then its rows as they are computed.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch>>,
}

/// Run `sql` over `tables` and stream the result. Bad SQL and unknown tables
/// are the user's errors; an unreachable table is an external one.
/// Only reading statements run: a statement that would create, change or
/// write anything (DDL, `INSERT`, `COPY … TO`, `SET`) is refused.
pub async fn query(tables: &[QueryTable], sql: &str) -> Result<QueryResult> {
    let ctx = SessionContext::new();
    for f in crate::json::functions() {
        ctx.register_udf(f);
    }
    let state = ctx.state();
    let statement = state
        .sql_to_statement(sql, &Dialect::Generic)
        .map_err(|e| Error::user(format!("the SQL is not valid: {e}")))?;
    let named =
        state.resolve_table_references(&statement).map_err(|e| Error::user(format!("the SQL is not valid: {e}")))?;

    let by_name: HashMap<(&str, &str), &QueryTable> =
        tables.iter().map(|t| ((t.schema_name.as_str(), t.table_name.as_str()), t)).collect();
    let catalog = ctx
        .catalog(&state.config().options().catalog.default_catalog)
        .ok_or_else(|| Error::internal("DataFusion has no default catalog"))?;
    for reference in named {
        let (schema, table) = match &reference {
            TableReference::Partial { schema, table } => (schema.as_ref(), table.as_ref()),
            TableReference::Full { schema, table, .. } => (schema.as_ref(), table.as_ref()),
            TableReference::Bare { table } => {
                // A CTE's name is a bare reference too; only complain if it is a catalog table's name.
                if tables.iter().any(|t| t.table_name == table.as_ref()) {
                    return Err(Error::user(format!(
                        "name the table with its schema: `<schema>.{table}` (`runner catalog` lists them)"
                    )));
                }
                continue;
            }
        };
        let Some(entry) = by_name.get(&(schema, table)) else {
            return Err(Error::user(format!(
                "table `{schema}.{table}` is not in the catalog; `runner catalog` lists the tables Weir has written"
            )));
        };
        let location = entry.location.as_ref().map_err(Clone::clone)?;
        let delta = location.open().await?;
        delta.update_datafusion_session(&ctx.state()).map_err(|e| delta_error(e, "preparing the query"))?;
        let provider = delta.table_provider().await.map_err(|e| {
            Error::external(format!("reading the Delta table `{schema}.{table}` at {}: {e}", location.display()))
        })?;
        let schema_provider = match catalog.schema(schema) {
            Some(s) => s,
            None => {
                let created = Arc::new(MemorySchemaProvider::new());
                catalog
                    .register_schema(schema, created.clone())
                    .map_err(|e| Error::internal(format!("registering schema `{schema}`: {e}")))?;
                created
            }
        };
        schema_provider
            .register_table(table.to_owned(), provider)
            .map_err(|e| Error::internal(format!("registering `{schema}.{table}`: {e}")))?;
    }

    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let df = ctx.sql_with_options(sql, read_only).await.map_err(|e| {
        let text = e.to_string();
        if ["DDL not supported", "DML not supported", "Statement not supported"].iter().any(|m| text.contains(m)) {
            Error::user(format!("only queries that read run here (SELECT, WITH, VALUES): {e}"))
        } else {
            Error::user(format!("the query cannot run: {e}"))
        }
    })?;
    let stream = df.execute_stream().await.map_err(|e| Error::user(format!("the query failed: {e}")))?;
    Ok(QueryResult {
        schema: stream.schema(),
        batches: stream.map_err(|e| Error::external(format!("the query failed: {e}"))).boxed(),
    })
}

/// One commit of a Delta table, newest first in [`history`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Commit {
    pub version: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub operation: Option<String>,
    pub parameters: Option<serde_json::Value>,
    /// `operationMetrics`: rows and files written.
    pub metrics: Option<serde_json::Value>,
}

/// The last `limit` commits of a table, newest first.
pub async fn history(location: &TableLocation, limit: usize) -> Result<Vec<Commit>> {
    let table = location.open().await?;
    let current = table.version().map_or(0, |v| v as i64);
    let infos: Vec<_> =
        table.history(Some(limit)).try_collect().await.map_err(|e| delta_error(e, "reading the table's history"))?;
    Ok(infos
        .into_iter()
        .enumerate()
        .map(|(i, info)| Commit {
            version: current - i as i64,
            timestamp: info.timestamp,
            operation: info.operation,
            parameters: info.operation_parameters.and_then(|p| serde_json::to_value(p).ok()),
            metrics: info.info.get("operationMetrics").cloned(),
        })
        .collect())
}
