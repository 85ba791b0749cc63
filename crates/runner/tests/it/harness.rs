use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::NaiveDate;
use sqlx::{PgPool, Row};
use tempfile::TempDir;

pub const D1: &str = "20250323";
pub const D2: &str = "20250324";

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y%m%d").expect("test date")
}

/// One test's world: its own metadata database, data folder and environment.
pub struct Harness {
    pub db_url: String,
    pub dir: TempDir,
    pub pool: PgPool,
    env: Vec<(String, String)>,
}

/// What a `runner` invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Harness {
    /// A fresh database with the metadata tables, and `WEIR_CONN_LAKE` on a local folder.
    pub async fn new(label: &str) -> Self {
        let db_url = weir_testkit::pg::fresh_database(label).await.expect("create test database");
        let pool = PgPool::connect(&db_url).await.expect("connect test database");
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = dir.path().join("lake");
        std::fs::create_dir_all(&lake).expect("lake dir");
        let h = Self { db_url, dir, pool, env: vec![("WEIR_CONN_LAKE".into(), format!("file://{}", lake.display()))] };
        let init = h.runner(&["init"]).await;
        assert_eq!(init.code, 0, "runner init: {}", init.all());
        assert!(init.stdout.contains("applied migration 0001"), "{}", init.stdout);
        h
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// The local folder behind connection `lake`.
    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        self.command_named(env!("CARGO_BIN_EXE_runner"), args)
    }

    /// `program` in this test's folder and environment.
    pub fn command_named(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("WEIR_DATABASE_URL", &self.db_url)
            .env_remove("DATABASE_URL")
            .env_remove("WEIR_LAKE_URI")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    pub async fn runner(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().await.expect("run the runner binary"))
    }

    /// Start `runner` without waiting for it; [`finish`] collects what it printed.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the runner binary")
    }

    pub async fn run_date(&self, date: &str) -> Run {
        self.runner(&["--date", date]).await
    }

    /// Run a date and require every pipeline to succeed.
    pub async fn run_ok(&self, date: &str) -> Run {
        let run = self.run_date(date).await;
        assert_eq!(run.code, 0, "{}", run.all());
        run
    }

    /// Insert a controller row from `column = value` SQL fragments.
    pub async fn pipeline(&self, name: &str, columns: &[(&str, &str)]) {
        let mut cols = vec!["name".to_owned()];
        let mut vals = vec![format!("'{name}'")];
        for (c, v) in columns {
            cols.push((*c).to_owned());
            vals.push((*v).to_owned());
        }
        let sql = format!("INSERT INTO controller ({}) VALUES ({})", cols.join(", "), vals.join(", "));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await.expect("insert controller row");
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar_i64(&format!("SELECT count(*) FROM {table}")).await
    }

    pub async fn table_exists(&self, table: &str) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&self.pool)
            .await
            .expect("to_regclass")
    }

    /// The rows of `sql`, every column read as text (cast it in the query); `NULL` as "".
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<Option<String>, _>(i).unwrap_or_default()).collect())
            .collect()
    }

    /// Every audit row of a pipeline, oldest first.
    pub async fn audits(&self, pipeline: &str) -> Vec<Audit> {
        sqlx::query(
            "SELECT status, records_read, records_processed, error_message, attempt, watermark_after
             FROM audit WHERE pipeline_name = $1 ORDER BY audit_id",
        )
        .bind(pipeline)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("audit rows of {pipeline}: {e}"))
        .iter()
        .map(|r| Audit {
            status: r.get("status"),
            records_read: r.get("records_read"),
            records_processed: r.get("records_processed"),
            error: r.get::<Option<String>, _>("error_message").unwrap_or_default(),
            attempt: r.get("attempt"),
            watermark_after: r.get("watermark_after"),
        })
        .collect()
    }

    /// Wait until `sql` returns true (up to `secs` seconds).
    pub async fn wait_until(&self, sql: &str, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let ok: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            if ok {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "not within {secs} s: {sql}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The newest audit row of a pipeline.
    pub async fn last_audit(&self, pipeline: &str) -> Audit {
        self.audits(pipeline).await.pop().unwrap_or_else(|| panic!("no audit row of {pipeline}"))
    }
}

/// Wait for a runner started with [`Harness::spawn`].
pub async fn finish(child: tokio::process::Child) -> Run {
    Run::from(child.wait_with_output().await.expect("wait for the runner"))
}

/// Send `signal` (`-INT`, `-TERM`, `-KILL`) to a running process.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the runner is running").to_string();
    let status = std::process::Command::new("kill").args([signal, &pid]).status().expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[derive(Debug)]
pub struct Audit {
    pub status: String,
    pub records_read: Option<i64>,
    pub records_processed: Option<i64>,
    pub error: String,
    pub attempt: i32,
    pub watermark_after: Option<String>,
}

/// Write orders `first..first+rows` of `date` as Parquet under `dir`.
pub fn write_orders(dir: &Path, date: &str, first: i64, rows: usize, files: usize) {
    weir_testkit::data::write_orders(dir, day(date), first, rows, files).expect("write orders");
}

/// Write a Parquet file with pyarrow: `columns` is a Python dict expression.
pub async fn parquet_file(path: &std::path::Path, columns: &str) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
    let script =
        format!("import pyarrow as pa, pyarrow.parquet as pq, sys\npq.write_table(pa.table({columns}), sys.argv[1])");
    let done = tokio::process::Command::new("python3").args(["-c", &script]).arg(path).output().await.expect("python3");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
}

/// A port nothing listens on now, for a server a test starts.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a port")
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`), made with openssl in `dir`: for the TLS tests,
/// which put socat in front of a server to speak TLS for it.
pub fn tls_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let subject = ["-days", "2", "-nodes", "-newkey", "rsa:2048"];
    openssl(
        &[&["req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=weir test CA"][..], &subject].concat(),
    );
    openssl(
        &[&["req", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"][..], &subject[2..]]
            .concat(),
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// socat speaking TLS on a spare port (the certificates of [`tls_certificates`]
/// in `dir`) for the plain server on `upstream`; killed on drop.
pub struct TlsFront {
    pub port: u16,
    child: std::process::Child,
}

impl TlsFront {
    pub fn start(dir: &Path, port: u16, upstream: u16) -> Self {
        let child = std::process::Command::new("socat")
            .arg(format!("OPENSSL-LISTEN:{port},reuseaddr,fork,cert=server.pem,key=server.key,verify=0"))
            .arg(format!("TCP:127.0.0.1:{upstream}"))
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { port, child }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
