//! Running Weir for real: parallel pipelines in `depends_on` order, retries,
//! several runners on one metadata database, crash recovery, Ctrl-C, the
//! scheduler, the completion email (a real SMTP server) and the logs.

use std::time::{Duration, Instant};

use serde_json::Value;
use weir_testkit::mysql;
use weir_testkit::proxy::TcpProxy;
use weir_testkit::smtp::SmtpServer;

use crate::harness::{D1, Harness, finish, signal, write_orders};
use crate::mysql::{fill_big, oltp, pipeline as mysql_pipeline};

/// A Parquet → PostgreSQL pipeline into `bronze.<name>`, 100 orders, with `extra` columns.
async fn orders(h: &Harness, name: &str, extra: &[(&str, &str)]) {
    let dir = h.lake().join("orders");
    if !dir.exists() {
        write_orders(&dir, D1, 1, 100, 1);
    }
    let table = format!("'{name}'");
    let mut cols = vec![
        ("source_type", "'parquet'"),
        ("source_connection", "'lake'"),
        ("data_source", "'orders/'"),
        ("schema_name", "'bronze'"),
        ("destination_table", table.as_str()),
    ];
    cols.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    cols.extend(extra.iter().copied());
    h.pipeline(name, &cols).await;
}

/// A pipeline that fails at once (its folder does not exist).
const BROKEN: (&str, &str) = ("data_source", "'no_such_folder/'");

/// `big` (`rows` rows) in MariaDB, read through a proxy that can slow it down or cut it.
async fn slow_source(h: &mut Harness, label: &str, rows: i64) -> TcpProxy {
    let url = oltp(h, label, "").await;
    fill_big(&url, rows).await;
    let upstream = url::Url::parse(&mysql::server_url()).expect("server url");
    let addr = format!("{}:{}", upstream.host_str().unwrap_or("127.0.0.1"), upstream.port().unwrap_or(3306));
    let proxy = TcpProxy::start(addr.parse().expect("address")).await.expect("proxy");
    let mut via = url::Url::parse(&url).expect("url");
    via.set_port(Some(proxy.port())).expect("port");
    h.set_env("WEIR_CONN_OLTP", via.as_str());
    proxy
}

/// Pipeline `slow`: a full load of `big` (`rows` rows, read in one range in
/// batches of 1000) through a proxy slowed to `bytes_per_sec`.
async fn slow_pipeline(h: &mut Harness, label: &str, rows: i64, bytes_per_sec: u64, extra: &str) -> TcpProxy {
    let proxy = slow_source(h, label, rows).await;
    proxy.throttle(bytes_per_sec);
    let options = format!(r#"'{{"parallelism": 1, "batch_size": 1000{extra}}}'"#);
    mysql_pipeline(h, "slow", "big", &[("load_type", "'full'"), ("options", &options)]).await;
    proxy
}

async fn run_ids(h: &Harness, pipeline: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT run_id::text FROM audit WHERE pipeline_name = $1 AND status = 'success' ORDER BY audit_id",
    )
    .bind(pipeline)
    .fetch_all(&h.pool)
    .await
    .expect("run ids")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_order_the_run_and_a_failure_skips_what_depends_on_it() {
    let h = Harness::new("ops_deps").await;
    orders(&h, "a", &[]).await;
    orders(&h, "b", &[BROKEN, ("depends_on", "'{a}'")]).await;
    orders(&h, "c", &[("depends_on", "'{b}'")]).await;
    orders(&h, "d", &[("depends_on", "'{a}'")]).await;
    orders(&h, "e", &[("depends_on", "'{d, c}'")]).await;
    orders(&h, "free", &[]).await;

    let run = h.runner(&["--date", D1, "--concurrency", "3"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("3 succeeded, 1 failed, 2 skipped"), "{}", run.stdout);
    assert_eq!(h.last_audit("a").await.status, "success");
    assert_eq!(h.last_audit("b").await.status, "failed");
    let c = h.last_audit("c").await;
    assert_eq!(c.status, "skipped");
    assert!(c.error.contains("dependency `b` did not succeed (failed)"), "{}", c.error);
    let e = h.last_audit("e").await;
    assert_eq!(e.status, "skipped");
    assert!(e.error.contains("dependency `c` did not succeed (skipped)"), "{}", e.error);
    assert_eq!(h.last_audit("d").await.status, "success");
    assert_eq!(h.count("bronze.d").await, 100);
    assert!(!h.table_exists("bronze.c").await);

    // Every dependency finished before what depends on it started.
    let ordered = h
        .scalar_i64(
            "SELECT count(*) FROM audit dep JOIN audit x ON x.pipeline_name IN ('b', 'd') AND dep.pipeline_name = 'a'
             WHERE x.start_time >= dep.end_time",
        )
        .await;
    assert_eq!(ordered, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_run_in_parallel_up_to_the_concurrency() {
    let mut h = Harness::new("ops_par").await;
    let proxy = slow_source(&mut h, "par", 4_000).await;
    proxy.throttle(150_000);
    for name in ["p1", "p2", "p3"] {
        mysql_pipeline(&h, name, "big", &[("load_type", "'full'"), ("options", r#"'{"parallelism": 1}'"#)]).await;
    }
    let run = h.runner(&["--date", D1, "--concurrency", "2"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    for name in ["p1", "p2", "p3"] {
        assert_eq!(h.count(&format!("bronze.{name}")).await, 4_000);
    }
    // Two did overlap, never three.
    let two = h
        .scalar_i64(
            "SELECT count(*) FROM audit x JOIN audit y ON x.audit_id < y.audit_id
             WHERE x.start_time < y.end_time AND y.start_time < x.end_time",
        )
        .await;
    assert!(two >= 1, "two pipelines ran at once");
    let three = h
        .scalar_i64(
            "SELECT count(*) FROM audit x JOIN audit y ON x.audit_id < y.audit_id JOIN audit z ON y.audit_id < z.audit_id
             WHERE greatest(x.start_time, y.start_time, z.start_time) < least(x.end_time, y.end_time, z.end_time)",
        )
        .await;
    assert_eq!(three, 0, "never three at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dependency_fails_its_pipeline_and_the_run_goes_on() {
    let h = Harness::new("ops_unknown").await;
    orders(&h, "good", &[]).await;
    orders(&h, "orphan", &[("depends_on", "'{good, ghost}'")]).await;
    orders(&h, "inactive_dep", &[("active", "false")]).await;
    orders(&h, "after_inactive", &[("depends_on", "'{inactive_dep}'")]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let orphan = h.last_audit("orphan").await;
    assert_eq!(orphan.status, "failed");
    assert!(
        orphan.error.contains("depends_on names `ghost`, which is not a pipeline in the controller table"),
        "{}",
        orphan.error
    );
    assert_eq!(h.last_audit("good").await.status, "success");
    // A dependency that exists but is not part of this run orders nothing.
    assert_eq!(h.last_audit("after_inactive").await.status, "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_is_rejected_before_anything_runs() {
    let h = Harness::new("ops_cycle").await;
    orders(&h, "a", &[("depends_on", "'{c}'")]).await;
    orders(&h, "b", &[("depends_on", "'{a}'")]).await;
    orders(&h, "c", &[("depends_on", "'{b}'")]).await;
    orders(&h, "other", &[]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 2, "a configuration error: {}", run.all());
    assert!(run.stderr.contains("depends_on forms a cycle: `a` → `b` → `c` → `a`"), "{}", run.stderr);
    assert_eq!(h.scalar_i64("SELECT count(*) FROM audit").await, 0, "nothing ran");
    assert!(!h.table_exists("bronze.other").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_fails_twice_succeeds_on_the_third_attempt() {
    let mut h = Harness::new("ops_retry").await;
    let proxy = slow_source(&mut h, "retry", 6_000).await;
    // No options.retries: the default for all comes from --retries.
    let options = r#"'{"retry_backoff_ms": 10, "batch_size": 500, "parallelism": 1}'"#;
    mysql_pipeline(&h, "big", "big", &[("load_type", "'full'"), ("options", options)]).await;
    proxy.cut_after(100_000, 2);
    let run = h.runner(&["--date", D1, "--retries", "2"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let attempts: Vec<(String, i32)> = h.audits("big").await.into_iter().map(|a| (a.status, a.attempt)).collect();
    assert_eq!(attempts, vec![("failed".into(), 1), ("failed".into(), 2), ("success".into(), 3)]);
    let first = &h.audits("big").await[0];
    assert!(first.error.contains("big"), "the error names the pipeline: {}", first.error);
    assert_eq!(h.count("bronze.big").await, 6_000);
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT id) FROM bronze.big").await, 6_000);
    assert!(run.stderr.contains("attempt failed; retrying"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_started_together_split_the_pipelines() {
    let mut h = Harness::new("ops_two").await;
    let proxy = slow_source(&mut h, "two", 3_000).await;
    proxy.throttle(200_000);
    let names = ["t1", "t2", "t3", "t4"];
    for name in names {
        mysql_pipeline(&h, name, "big", &[("load_type", "'full'"), ("options", r#"'{"parallelism": 1}'"#)]).await;
    }
    let args = ["--date", D1, "--concurrency", "1", "--format", "json"];
    let (a, b) = (h.spawn(&args), h.spawn(&args));
    let (a, b) = (finish(a).await, finish(b).await);
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.all(), b.all());
    for name in names {
        assert_eq!(run_ids(&h, name).await.len(), 1, "{name} loaded once");
        assert_eq!(h.count(&format!("bronze.{name}")).await, 3_000);
    }
    // Both runners worked, and each reports the other's loads as its own pipelines' results.
    let runs = h.scalar_i64("SELECT count(DISTINCT run_id) FROM audit").await;
    assert_eq!(runs, 2, "the work was split");
    for out in [&a, &b] {
        let report: Value = serde_json::from_str(&out.stdout).expect("json report");
        let pipelines = report["pipelines"].as_array().expect("pipelines");
        assert_eq!(pipelines.len(), 4);
        assert!(pipelines.iter().all(|p| p["status"] == "success"), "{pipelines:?}");
        assert!(pipelines.iter().any(|p| p["ran_by"].as_str().is_some_and(|r| r.starts_with("run "))));
    }
    assert_eq!(h.scalar_i64("SELECT count(*) FROM pipeline_lease").await, 0, "every lease released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_is_abandoned_and_the_next_finishes_the_job_exactly_once() {
    let mut h = Harness::new("ops_kill").await;
    let proxy = slow_pipeline(&mut h, "kill", 20_000, 100_000, "").await;
    h.set_env("WEIR_LEASE_SECONDS", "2");

    let first = h.spawn(&["--date", D1]);
    h.wait_until("SELECT EXISTS (SELECT 1 FROM audit WHERE pipeline_name = 'slow' AND status = 'running')", 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&first, "-KILL");
    let killed = finish(first).await;
    assert_eq!(killed.code, -1, "killed");
    assert_eq!(h.last_audit("slow").await.status, "running", "a dead runner cannot say so");
    assert!(!h.table_exists("bronze.slow").await, "nothing half-written is visible");

    // The next runner, started at once, waits out the dead runner's lease and takes over.
    proxy.throttle(0);
    let second = h.run_date(D1).await;
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(second.stderr.contains("another runner is running this pipeline; waiting for it"), "{}", second.stderr);
    assert!(second.stderr.contains("took over from a runner that stopped heartbeating"), "{}", second.stderr);
    let audits = h.audits("slow").await;
    assert_eq!(audits.len(), 2, "{audits:?}");
    assert_eq!(audits[0].status, "abandoned");
    assert!(audits[0].error.contains("stopped heartbeating"), "{}", audits[0].error);
    assert_eq!((audits[1].status.as_str(), audits[1].records_processed), ("success", Some(20_000)));
    assert_eq!(h.count("bronze.slow").await, 20_000);
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT id) FROM bronze.slow").await, 20_000);

    // The dead run itself is marked by the next runner that starts after its lease.
    let third = h.runner(&["--date", D1, "--pipeline", "slow"]).await;
    assert_eq!(third.code, 0, "{}", third.all());
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM run ORDER BY started_at").fetch_all(&h.pool).await.expect("runs");
    assert_eq!(statuses, ["abandoned", "success", "success"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_rolls_back_the_running_load_and_records_it_cancelled() {
    let mut h = Harness::new("ops_cancel").await;
    let proxy = slow_pipeline(&mut h, "cancel", 20_000, 100_000, "").await;
    mysql_pipeline(&h, "later", "big", &[("load_type", "'full'"), ("depends_on", "'{slow}'")]).await;

    let runner = h.spawn(&["--date", D1]);
    h.wait_until("SELECT EXISTS (SELECT 1 FROM audit WHERE pipeline_name = 'slow' AND status = 'running')", 30).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let asked = Instant::now();
    signal(&runner, "-INT");
    let run = finish(runner).await;
    assert!(asked.elapsed() < Duration::from_secs(10), "stopped promptly");
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("(cancelled)"), "{}", run.stdout);
    let slow = h.last_audit("slow").await;
    assert_eq!(slow.status, "failed");
    assert!(slow.error.contains("cancelled"), "{}", slow.error);
    assert!(!h.table_exists("bronze.slow").await, "nothing partial committed");
    assert!(h.audits("later").await.is_empty(), "a pipeline that never started leaves no audit row");
    assert_eq!(h.scalar_i64("SELECT count(*) FROM pipeline_lease").await, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM run").fetch_one(&h.pool).await.expect("run");
    assert_eq!(status, "cancelled");

    // The next run loads everything.
    proxy.throttle(0);
    h.run_ok(D1).await;
    assert_eq!(h.count("bronze.slow").await, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_runs_each_interval_past_failures_and_stops_on_sigterm() {
    let h = Harness::new("ops_sched").await;
    orders(&h, "good", &[]).await;
    orders(&h, "bad", &[BROKEN]).await;
    let scheduler = h.spawn(&["schedule", "--every", "3s"]);
    h.wait_until("SELECT count(*) >= 2 FROM audit WHERE pipeline_name = 'good' AND status = 'success'", 30).await;
    // Between runs (a busy machine makes runs slow): a stop then cancels nothing.
    h.wait_until("SELECT count(*) = 0 FROM run WHERE finished_at IS NULL", 30).await;
    let asked = Instant::now();
    signal(&scheduler, "-TERM");
    let out = finish(scheduler).await;
    assert!(asked.elapsed() < Duration::from_secs(5), "stopped promptly");
    assert_eq!(out.code, 0, "a clean stop between runs: {}", out.all());
    assert!(out.stderr.contains("scheduler stopped"), "{}", out.stderr);
    assert!(out.stdout.matches("run ").count() >= 2, "a summary per run: {}", out.stdout);
    assert!(h.audits("bad").await.len() >= 2, "a failing pipeline does not stop the scheduler");
    let runs = h.scalar_i64("SELECT count(*) FROM run WHERE finished_at IS NOT NULL").await;
    assert!(runs >= 2, "{runs}");
    assert_eq!(h.count("bronze.good").await, 100);
}

fn mail_env(h: &mut Harness, url: &str, to: &str) {
    h.set_env("WEIR_SMTP_URL", url);
    h.set_env("WEIR_NOTIFY_FROM", "Weir <weir@example.com>");
    h.set_env("WEIR_NOTIFY_TO", to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_email_has_a_row_per_pipeline_in_text_and_html() {
    let mut h = Harness::new("ops_mail").await;
    let smtp = SmtpServer::start().expect("aiosmtpd");
    mail_env(&mut h, &smtp.url(), "ops@example.com, data@example.com");
    orders(&h, "orders_ok", &[("notify_emails", "'{owner@example.com, ops@example.com}'")]).await;
    orders(&h, "orders_bad", &[BROKEN]).await;
    orders(&h, "orders_after", &[("depends_on", "'{orders_bad}'")]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());

    let mail = smtp.wait_for(1, Duration::from_secs(10)).expect("messages");
    assert_eq!(mail.len(), 1, "one summary per run");
    let m = &mail[0];
    assert_eq!(m.subject, "[Weir] 2025-03-23: 1 succeeded, 1 failed, 1 skipped");
    assert_eq!(m.content_type, "multipart/alternative");
    let mut to = m.envelope_to.clone();
    to.sort();
    assert_eq!(to, ["data@example.com", "ops@example.com", "owner@example.com"]);
    assert_eq!(m.envelope_from, "weir@example.com");
    let text = m.text.as_deref().expect("a text part");
    let line = text.lines().find(|l| l.starts_with("orders_ok ")).expect("a row for orders_ok");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..4], ["success", "100", "100"], "{line}");
    let bad = text.lines().position(|l| l.starts_with("orders_bad ")).expect("a row for orders_bad");
    assert!(text.lines().nth(bad).is_some_and(|l| l.contains("failed")));
    assert!(text.lines().nth(bad + 1).is_some_and(|l| l.contains("no_such_folder")), "the error in short:\n{text}");
    assert!(text.contains("dependency `orders_bad` did not succeed"), "{text}");
    let html = m.html.as_deref().expect("an HTML part");
    assert!(html.contains("<td>orders_ok</td>") && html.contains("<b>success</b>"), "{html}");
    assert!(html.contains("<td>orders_bad</td>") && html.contains("<b>failed</b>") && html.contains("<b>skipped</b>"));

    let (status, recipients): (String, Vec<String>) =
        sqlx::query_as("SELECT status, recipients FROM notification").fetch_one(&h.pool).await.expect("recorded");
    assert_eq!((status.as_str(), recipients.len()), ("sent", 3));
    assert!(run.stderr.contains("completion email sent"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_failure_sends_nothing_when_all_succeeded() {
    let mut h = Harness::new("ops_mail_quiet").await;
    let smtp = SmtpServer::start().expect("aiosmtpd");
    mail_env(&mut h, &smtp.url(), "ops@example.com");
    h.set_env("WEIR_NOTIFY_ON", "failure");
    orders(&h, "ok", &[]).await;
    h.run_ok(D1).await;
    orders(&h, "bad", &[BROKEN]).await;
    assert_eq!(h.run_date(D1).await.code, 1);
    let mail = smtp.wait_for(1, Duration::from_secs(10)).expect("messages");
    assert_eq!(mail.len(), 1, "only the run with a failure mails");
    assert!(mail[0].subject.ends_with("1 succeeded, 1 failed"), "{}", mail[0].subject);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_is_down_changes_nothing_about_the_run() {
    let mut h = Harness::new("ops_mail_down").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    mail_env(&mut h, &format!("smtp://weir:smtp-s3cret@127.0.0.1:{closed}"), "ops@example.com");
    orders(&h, "ok", &[]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "the run's result stands: {}", run.all());
    assert!(run.stderr.contains("completion email not sent"), "{}", run.stderr);
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, error_message FROM notification").fetch_one(&h.pool).await.expect("recorded");
    assert_eq!(status, "failed");
    assert!(error.contains(&format!("127.0.0.1:{closed}")), "{error}");
    assert!(!error.contains("smtp-s3cret") && !run.all().contains("smtp-s3cret"), "the password never shows");

    // `runner check` tells before a run does.
    let check = h.runner(&["check"]).await;
    assert_eq!(check.code, 1, "{}", check.all());
    assert!(check.stdout.contains("ok      ok"), "{}", check.stdout);
    assert!(
        check.stdout.contains("FAILED  (completion email): the mail server smtp://weir:***@127.0.0.1:"),
        "{}",
        check.stdout
    );
    assert!(!check.all().contains("smtp-s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_recipient_is_logged_and_recorded() {
    let mut h = Harness::new("ops_mail_reject").await;
    let smtp = SmtpServer::start().expect("aiosmtpd");
    mail_env(&mut h, &smtp.url(), "reject-me@example.com");
    orders(&h, "ok", &[]).await;
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let error: String = sqlx::query_scalar("SELECT error_message FROM notification WHERE status = 'failed'")
        .fetch_one(&h.pool)
        .await
        .expect("recorded");
    assert!(error.contains("550") || error.to_lowercase().contains("rejected"), "{error}");
    assert!(smtp.messages().expect("messages").is_empty());
    let check = h.runner(&["check"]).await;
    assert_eq!(check.code, 0, "the server itself answers: {}", check.all());
    assert!(check.stdout.contains("ok      (completion email)"), "{}", check.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_as_json_to_a_daily_file_and_exit_codes_are_documented() {
    let mut h = Harness::new("ops_logs").await;
    orders(&h, "ok", &[]).await;
    let logs = h.dir.path().join("logs");
    let run = h.runner(&["--date", D1, "--log-format", "json", "--log-dir", logs.to_str().expect("path")]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let lines: Vec<Value> =
        run.stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let finished = lines.iter().find(|l| l["fields"]["message"] == "run finished").expect("run finished");
    assert_eq!(finished["fields"]["succeeded"], 1);
    assert!(finished["fields"]["metadata_queries"].as_u64().is_some_and(|n| n > 0));
    let file = std::fs::read_dir(&logs).expect("log dir").next().expect("a log file").expect("entry").path();
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    assert_eq!(name, format!("weir.log.{}", chrono::Utc::now().format("%Y-%m-%d")));
    assert!(std::fs::read_to_string(&file).expect("log file").contains("run finished"));

    // 2: usage or configuration errors.
    assert_eq!(h.runner(&["--date", D1, "--concurrency", "many"]).await.code, 2);
    h.set_env("WEIR_SMTP_URL", "smtp://127.0.0.1:25");
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("WEIR_NOTIFY_FROM"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_shows_progress_bars_with_rows_per_second_and_a_pipe_plain_lines() {
    let mut h = Harness::new("ops_progress").await;
    let _proxy = slow_pipeline(&mut h, "progress", 12_000, 250_000, "").await;
    // `script` runs the runner on a pseudo-terminal, as a person at a shell would.
    let command = format!("{} --date {D1}", env!("CARGO_BIN_EXE_runner"));
    let on_tty = h.command_named("script", &["-qec", &command, "/dev/null"]).output().await.expect("script");
    let screen = String::from_utf8_lossy(&on_tty.stdout).into_owned();
    assert!(on_tty.status.success(), "{screen}");
    assert!(screen.contains("slow") && screen.contains("rows/s"), "{screen}");
    assert!(screen.contains(" rows "), "{screen}");

    let piped = h.run_ok(D1).await;
    assert!(!piped.stderr.contains("rows/s") && !piped.stderr.contains('\u{1b}'), "{}", piped.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_lease_was_taken_over_stops_before_committing() {
    let mut h = Harness::new("ops_lost").await;
    let _proxy = slow_pipeline(&mut h, "lost", 20_000, 100_000, r#", "retries": 0"#).await;
    h.set_env("WEIR_LEASE_SECONDS", "3");
    let runner = h.spawn(&["--date", D1]);
    h.wait_until("SELECT EXISTS (SELECT 1 FROM pipeline_lease WHERE pipeline_name = 'slow')", 30).await;
    // What another runner does when this one looks dead: it takes the lease.
    sqlx::query("UPDATE pipeline_lease SET run_id = gen_random_uuid(), host = 'elsewhere'")
        .execute(&h.pool)
        .await
        .expect("take the lease");
    let run = finish(runner).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let slow = h.last_audit("slow").await;
    assert_eq!(slow.status, "failed");
    assert!(slow.error.contains("lease lost"), "{}", slow.error);
    assert!(!h.table_exists("bronze.slow").await, "it did not commit");
    let holder: String =
        sqlx::query_scalar("SELECT host FROM pipeline_lease").fetch_one(&h.pool).await.expect("the new holder's lease");
    assert_eq!(holder, "elsewhere", "the lease it lost is not released by it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_a_cron_schedule_runs_when_it_fires() {
    let h = Harness::new("ops_cron").await;
    orders(&h, "often", &[("schedule", "'*/2 * * * * *'")]).await;
    orders(&h, "nightly", &[("schedule", "'0 2 * * *'")]).await;
    orders(&h, "plain", &[]).await;
    orders(&h, "typo", &[("schedule", "'every day'")]).await;
    let scheduler = h.spawn(&["schedule", "--every", "1h"]);
    h.wait_until("SELECT count(*) >= 3 FROM audit WHERE pipeline_name = 'often' AND status = 'success'", 30).await;
    signal(&scheduler, "-TERM");
    let out = finish(scheduler).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(h.audits("plain").await.len(), 1, "without a schedule: now, then in an hour");
    assert!(h.audits("nightly").await.is_empty(), "its cron did not fire");
    assert!(h.audits("typo").await.is_empty());
    let warning = out.stderr.lines().filter(|l| l.contains("pipeline not scheduled")).collect::<Vec<_>>();
    assert_eq!(warning.len(), 1, "said once: {}", out.stderr);
    assert!(warning[0].contains("typo") && warning[0].contains("schedule `every day` is not a cron expression"));

    // A one-off run runs every active pipeline, whatever its schedule, and fails the typo.
    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(h.last_audit("nightly").await.status, "success");
    let typo = h.last_audit("typo").await;
    assert!(typo.status == "failed" && typo.error.contains("schedule `every day`"), "{typo:?}");
}
