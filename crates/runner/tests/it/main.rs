//! End-to-end tests: the real `runner` binary against real PostgreSQL (a fresh
//! database per test) and a real S3 server, asserting the loaded rows (Delta
//! tables read back by an independent reader, Python `deltalake`) and real
//! MariaDB (a fresh database per test), and Elasticsearch (the test kit's
//! server, or a real cluster from `WEIR_TEST_ES_URL`), and a real SMTP server
//! (aiosmtpd) for the completion email, and real dbt (`WEIR_DBT`, else `dbt` on
//! the PATH) building the demo project in PostgreSQL.

mod bad_input;
mod dbt;
mod delta;
mod elasticsearch;
mod harness;
mod loads;
mod mysql;
mod ops;
mod s3;
