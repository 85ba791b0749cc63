//! End-to-end tests: the real `runner` binary against real PostgreSQL (a fresh
//! database per test) and a real S3 server, asserting the loaded rows (Delta
//! tables read back by an independent reader, Python `deltalake`) and real
//! MariaDB (a fresh database per test).

mod bad_input;
mod delta;
mod harness;
mod loads;
mod mysql;
mod s3;
