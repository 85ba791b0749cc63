//! Weir's test kit: real services for tests and generated data.
//!
//! - [`pg`]: a fresh PostgreSQL database per test, on the server the services
//!   script started (`WEIR_TEST_PG_URL`).
//! - [`s3`]: a real S3 server (s3s-fs, with signature checks) over a temporary
//!   folder, inside the test process.
//! - [`data`]: the demo `orders` dataset as Arrow batches and Parquet files.
//! - [`delta`]: an independent Delta reader (Python `deltalake`) for assertions.

pub mod data;
pub mod delta;
pub mod pg;
pub mod s3;
