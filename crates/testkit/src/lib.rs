//! Weir's test kit: real services for tests and generated data.
//!
//! - [`pg`]: a fresh PostgreSQL database per test, on the server the services
//!   script started (`WEIR_TEST_PG_URL`).
//! - [`s3`]: a real S3 server (s3s-fs, with signature checks) over a temporary
//!   folder, inside the test process.
//! - [`data`]: the demo `orders` dataset as Arrow batches and Parquet files.
//! - [`chat`]: the chat demo's OLTP database in MySQL/MariaDB, simulated day by day.
//! - [`delta`]: an independent Delta reader (Python `deltalake`) for assertions.
//! - [`es`]: an Elasticsearch test server (the REST protocol Weir uses, with
//!   faults), or a real cluster from `WEIR_TEST_ES_URL`.
//! - [`people`]: the civil registry indices (`person_sabt` and two more) for Elasticsearch.
//! - [`mysql`]: a fresh MariaDB/MySQL database per test (`WEIR_TEST_MYSQL_URL`).
//! - [`proxy`]: a TCP proxy that cuts connections, for servers that drop mid-read.
//! - [`smtp`]: a real SMTP server (aiosmtpd) per test, its messages read back.

pub mod chat;
pub mod data;
pub mod delta;
pub mod es;
pub mod mysql;
pub mod people;
pub mod pg;
pub mod proxy;
pub mod s3;
pub mod smtp;
