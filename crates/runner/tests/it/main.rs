//! End-to-end tests: the real `runner` binary against real PostgreSQL (a fresh
//! database per test) and a real S3 server, asserting the loaded rows (Delta
//! tables read back by an independent reader, Python `deltalake`) and real
//! MariaDB (a fresh database per test), and Elasticsearch (the test kit's
//! server, or a real cluster from `WEIR_TEST_ES_URL`), and a real SMTP server
//! (aiosmtpd) for the completion email.

mod bad_input;
mod delta;
mod elasticsearch;
mod harness;
mod loads;
mod mysql;
mod ops;
mod s3;
