//! A change stream: what a `cdc` source yields and a sink applies.
//!
//! Each row is one change: the table's columns (the new row; for a delete,
//! the old row's identifying columns) and five metadata columns. A sink
//! applies the rows in stream order to a mirror of the source table, keyed by
//! the stream's primary key, or, with `options.history = true`, appends them
//! as they are: the changelog.
//!
//! | column | Arrow | meaning |
//! | --- | --- | --- |
//! | `_weir_op` | Utf8 | `r` read by the snapshot, `c` insert, `u` update, `d` delete, `t` truncate (Debezium's letters) |
//! | `_weir_lsn` | Int64 | the change's own position in the source's log |
//! | `_weir_commit_lsn` | Int64 | the position of its transaction's commit: changes order by (`_weir_commit_lsn`, `_weir_lsn`) |
//! | `_weir_commit_time` | Timestamp(µs, UTC) | when its transaction committed (for a snapshot row: when the snapshot was taken) |
//! | `_weir_unchanged` | List(Utf8) | columns the source did not send because the change left them as they were (PostgreSQL's TOAST); NULL when none |
//!
//! A `t` row carries no values: everything before it in the stream is gone. A
//! snapshot starts with one, so that a re-snapshot replaces what the mirror held.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

pub const OP: &str = "_weir_op";
pub const LSN: &str = "_weir_lsn";
pub const COMMIT_LSN: &str = "_weir_commit_lsn";
pub const COMMIT_TIME: &str = "_weir_commit_time";
pub const UNCHANGED: &str = "_weir_unchanged";

/// Every metadata column's name, in stream order.
pub const COLUMNS: [&str; 5] = [OP, LSN, COMMIT_LSN, COMMIT_TIME, UNCHANGED];

/// The operations, as `_weir_op` spells them.
pub mod op {
    pub const READ: &str = "r";
    pub const INSERT: &str = "c";
    pub const UPDATE: &str = "u";
    pub const DELETE: &str = "d";
    pub const TRUNCATE: &str = "t";
}

/// The metadata columns' fields, appended after the table's.
pub fn fields() -> Vec<Field> {
    vec![
        Field::new(OP, DataType::Utf8, false),
        Field::new(LSN, DataType::Int64, false),
        Field::new(COMMIT_LSN, DataType::Int64, false),
        Field::new(COMMIT_TIME, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new(UNCHANGED, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
    ]
}

/// A change stream's schema without the metadata columns: the table's.
pub fn without_meta(schema: &arrow::datatypes::Schema) -> arrow::datatypes::SchemaRef {
    let fields: Vec<_> = schema.fields().iter().filter(|f| !is_meta(f.name())).cloned().collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Whether `name` is one of the metadata columns.
pub fn is_meta(name: &str) -> bool {
    COLUMNS.contains(&name)
}
