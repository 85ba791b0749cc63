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
//! prints).
//!
//! Rows come out in the order they came in. A hash join emits rows in the
//! order of whichever side it probes, so the order is not the plan's to
//! keep: the statement is rewritten to carry each input row's number
//! (`input._weir_row`) to the output, and the output is sorted by it. That
//! order matters: a change stream is applied in order (a truncate marker
//! first, then the rows after it), and the destinations that resume a killed
//! load by counting rows need the same rows in the same place on every read.
//! A statement whose shape has no row order (GROUP BY, DISTINCT, a set
//! operation, its own ORDER BY or LIMIT) runs as written, and its rows are
//! ordered by the change columns when it keeps them.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::{SortColumn, lexsort_to_indices, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, GroupByExpr, Ident, SelectItem, SetExpr, Statement, TableFactor};
use deltalake::datafusion;
use weir_core::{Error, Result, changes};

/// The name a statement reads each batch by.
pub const INPUT: &str = "input";
/// Each input row's number, a column of `input` the statement need not name.
const ROW: &str = "_weir_row";
/// The input row number the rewritten statement carries to the output.
const ORDER: &str = "_weir_order";

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
    /// What runs: the statement rewritten to carry the row order, or as written.
    sql: String,
    /// The rewritten statement runs: sort by [`ORDER`].
    ordered: bool,
    ctx: SessionContext,
    input: SchemaRef,
    /// `input` as DataFusion sees it: with [`ROW`].
    numbered: SchemaRef,
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
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        if fields.iter().any(|f| f.name() == ROW || f.name() == ORDER) {
            return Err(Error::user(format!(
                "the source has a column named `{ROW}` or `{ORDER}`, which Weir's transform uses"
            )));
        }
        fields.push(Field::new(ROW, DataType::UInt64, false));
        let numbered: SchemaRef = Arc::new(Schema::new(fields));
        ctx.register_batch(INPUT, RecordBatch::new_empty(numbered.clone()))
            .map_err(|e| Error::internal(format!("registering the input: {e}")))?;
        let planned = |sql: String| {
            let ctx = &ctx;
            async move {
                let df = ctx.sql_with_options(&sql, read_only()).await?;
                Ok::<_, datafusion::error::DataFusionError>((sql, Arc::new(df.schema().as_arrow().clone())))
            }
        };
        let as_written = planned(sql.to_owned())
            .await
            .map_err(|e| Error::user(format!("options.transform cannot run: {}", plain(&e.to_string()))))?;
        // The rewrite plans wherever the statement as written does, but for an aggregate without GROUP BY.
        let ((sql, schema), ordered) = match keep_order(&statement) {
            Some(rewritten) => match planned(rewritten).await {
                Ok(p) => (p, true),
                Err(_) => (as_written, false),
            },
            None => (as_written, false),
        };
        let output: SchemaRef = Arc::new(Schema::new(
            schema.fields().iter().filter(|f| f.name() != ROW && f.name() != ORDER).cloned().collect::<Vec<_>>(),
        ));
        let mut seen = std::collections::HashSet::new();
        for f in output.fields() {
            if !seen.insert(f.name().as_str()) {
                return Err(Error::user(format!(
                    "options.transform gives two columns named `{}`: name one of them otherwise (AS …)",
                    f.name()
                )));
            }
        }
        Ok(Self { sql, ordered, ctx, input, numbered, output, running: tokio::sync::Mutex::new(()) })
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
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from_iter_values(0..rows as u64)) as ArrayRef);
        let numbered =
            RecordBatch::try_new(self.numbered.clone(), columns).map_err(|e| Error::internal(e.to_string()))?;
        let _one = self.running.lock().await;
        self.ctx.deregister_table(INPUT).map_err(|e| Error::internal(e.to_string()))?;
        self.ctx.register_batch(INPUT, numbered).map_err(|e| Error::internal(e.to_string()))?;
        let fail = |e: datafusion::error::DataFusionError| {
            Error::user(format!("options.transform failed on a batch: {}", plain(&e.to_string())))
        };
        let df = self.ctx.sql_with_options(&self.sql, read_only()).await.map_err(fail)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(fail)?;
        let internal = |e: arrow::error::ArrowError| Error::internal(format!("the transform's output: {e}"));
        let joined = arrow::compute::concat_batches(&schema, &batches).map_err(internal)?;
        let joined = match self.order(&joined).map_err(internal)? {
            Some(indices) => take_record_batch(&joined, &indices).map_err(internal)?,
            None => joined,
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(joined.columns())
            .filter(|(f, _)| f.name() != ROW && f.name() != ORDER)
            .map(|(_, c)| c.clone())
            .collect();
        // The same columns as planned, under the planned schema's field names and nullability.
        RecordBatch::try_new(self.output.clone(), columns)
            .map_err(|e| Error::user(format!("options.transform gave a batch that does not fit its plan: {e}")))
    }

    /// The order to put the output rows in: the input's, or the change stream's.
    fn order(
        &self,
        out: &RecordBatch,
    ) -> std::result::Result<Option<arrow::array::UInt32Array>, arrow::error::ArrowError> {
        if self.ordered {
            let Some(order) = out.column_by_name(ORDER) else { return Ok(None) };
            return sort_to_indices(order, None, None).map(Some);
        }
        let (Some(commit), Some(lsn)) = (out.column_by_name(changes::COMMIT_LSN), out.column_by_name(changes::LSN))
        else {
            return Ok(None);
        };
        // A truncate marker before the rows that share its position (a snapshot's).
        let not_truncate: ArrayRef = match out.column_by_name(changes::OP) {
            Some(op) => Arc::new(arrow::compute::kernels::cmp::neq(
                op,
                &arrow::array::Scalar::new(arrow::array::StringArray::from(vec![changes::op::TRUNCATE])),
            )?),
            None => Arc::new(arrow::array::BooleanArray::from(vec![true; out.num_rows()])),
        };
        let keys = [commit, lsn, &not_truncate].map(|c| SortColumn { values: c.clone(), options: None });
        lexsort_to_indices(&keys, None).map(Some)
    }
}

/// The statement rewritten to carry each input row's number to the output as
/// [`ORDER`]; `None` when its shape gives rows no order to keep.
fn keep_order(statement: &DfStatement) -> Option<String> {
    let DfStatement::Statement(statement) = statement else { return None };
    let mut statement = statement.as_ref().clone();
    let Statement::Query(query) = &mut statement else { return None };
    if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if grouped || select.distinct.is_some() || select.having.is_some() {
        return None;
    }
    let mut input = None;
    for from in &select.from {
        for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, alias, .. } = factor
                && name.to_string().eq_ignore_ascii_case(INPUT)
            {
                input = Some(alias.as_ref().map_or_else(|| INPUT.to_owned(), |a| a.name.value.clone()));
            }
        }
    }
    select.projection.push(SelectItem::ExprWithAlias {
        expr: Expr::CompoundIdentifier(vec![Ident::new(input?), Ident::new(ROW)]),
        alias: Ident::new(ORDER),
    });
    Some(statement.to_string())
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

    /// A hash join probes the larger side: here the lookup, whose order is
    /// not the input's. The rows still come out in the input's order.
    #[tokio::test]
    async fn rows_come_out_in_the_order_they_came_in() {
        let schema = Arc::new(Schema::new(vec![Field::new("content_id", DataType::Int64, true)]));
        let ids: Vec<Option<i64>> = vec![Some(11), None, Some(10), Some(11), Some(99), Some(10)];
        let input = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids.clone()))]).unwrap();
        let mut big = content();
        let n = 5000;
        let lookup_schema = big.schema.clone();
        big.batches = vec![
            RecordBatch::try_new(
                lookup_schema,
                vec![
                    Arc::new(Int64Array::from_iter_values((0..n).rev())),
                    Arc::new(StringArray::from_iter_values((0..n).rev().map(|i| format!("t{i}")))),
                    Arc::new(Int64Array::from_iter_values(0..n)),
                ],
            )
            .unwrap(),
        ];
        for sql in [
            "SELECT i.content_id, c.title FROM input i LEFT JOIN content c ON c.id = i.content_id",
            "SELECT * FROM content c RIGHT JOIN input ON c.id = input.content_id",
        ] {
            let e = Enrich::plan(sql, schema.clone(), std::slice::from_ref(&big)).await.unwrap();
            let out = e.apply(input.clone()).await.unwrap();
            let got = out.column_by_name("content_id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!(got.iter().collect::<Vec<_>>(), ids, "{sql}");
            assert!(out.schema().fields().iter().all(|f| !f.name().starts_with("_weir")), "{sql}");
        }
        // A statement with no row order runs as written.
        let e = Enrich::plan("SELECT count(*) AS n FROM input", schema.clone(), &[]).await.unwrap();
        assert_eq!(e.apply(input).await.unwrap().num_rows(), 1);
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
