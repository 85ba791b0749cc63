//! dbt as a pipeline, end to end: Weir loads bronze (Parquet orders and
//! customers, the chat OLTP tables from MariaDB), then runs real dbt on the
//! repository's `dbt_project/` against the test's PostgreSQL database, and the
//! gold tables are checked against values computed here, independently: the
//! orders and customers from the generator's own functions, the chat figures
//! by SQL against MariaDB, the source itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use weir_testkit::chat::{Volume, simulate_day};
use weir_testkit::data::{self, Customer, customer, customers_changed_on, write_customers};
use weir_testkit::mysql;
use weir_testkit::smtp::SmtpServer;

use crate::harness::{D1, D2, Harness, day, write_orders};
use crate::mysql::oltp;

/// The repository's dbt project.
const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dbt_project");

/// Orders per day in these tests: (first id, rows).
const ORDERS: [(&str, i64, usize); 2] = [(D1, 1, 3000), (D2, 3001, 1500)];

/// The demo's load pipelines: orders and customers into `bronze`, the chat
/// tables into `bronze_chat`, and `warehouse`, dbt over all of them.
async fn pipelines(h: &Harness, project: &str, options: &str) {
    for (name, folder, table) in [("orders", "orders", "orders_daily"), ("customers", "customers", "customers")] {
        let data_source = format!("'{folder}/dt={{date}}/'");
        let table = format!("'{table}'");
        h.pipeline(
            name,
            &[
                ("source_type", "'parquet'"),
                ("source_connection", "'lake'"),
                ("data_source", &data_source),
                ("schema_name", "'bronze'"),
                ("destination_table", &table),
                ("load_type", "'incremental'"),
            ],
        )
        .await;
    }
    for (table, key) in
        [("users", "{id}"), ("chats", "{id}"), ("chat_members", "{chat_id,user_id}"), ("messages", "{id}")]
    {
        let (source, key) = (format!("'{table}'"), format!("'{key}'"));
        h.pipeline(
            &format!("chat_{table}"),
            &[
                ("source_type", "'mysql'"),
                ("source_connection", "'oltp'"),
                ("source_table", &source),
                ("schema_name", "'bronze_chat'"),
                ("destination_table", &source),
                ("load_type", "'incremental'"),
                ("watermark_column", "'updated_at'"),
                ("primary_key", &key),
            ],
        )
        .await;
    }
    let (project, options) = (format!("'{project}'"), format!("'{options}'"));
    h.pipeline(
        "warehouse",
        &[
            ("source_type", "'dbt'"),
            ("data_source", &project),
            ("schema_name", "'analytics'"),
            ("load_type", "'incremental'"),
            ("options", &options),
            ("depends_on", "'{orders,customers,chat_users,chat_chats,chat_chat_members,chat_messages}'"),
        ],
    )
    .await;
}

/// One simulated day of every source: orders and customers files, the chat database's changes.
async fn source_day(h: &Harness, chat: &str, date: &str, first_day: bool) {
    let (_, first, rows) = ORDERS.iter().copied().find(|(d, _, _)| *d == date).expect("a test date");
    write_orders(&h.lake().join(format!("orders/dt={date}")), date, first, rows, 1);
    write_customers(&h.lake().join(format!("customers/dt={date}")), day(date), first_day).expect("customers");
    let volume = if first_day { Volume::FIRST_DAY } else { Volume::NEXT_DAY };
    simulate_day(chat, day(date), volume).await.expect("chat day");
}

/// `gold.daily_sales` and `gold.customer_segments` as the generated data says they must be,
/// after the days in `days`.
fn expected_sales(days: &[&str]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let mut customers: BTreeMap<i32, Customer> = (1..=data::CUSTOMERS).map(|id| (id, customer(id, None))).collect();
    for date in days.iter().skip(1) {
        for id in customers_changed_on(day(date)) {
            customers.insert(id, customer(id, Some(day(date))));
        }
    }
    let mut sales: BTreeMap<(NaiveDate, &str), (i64, i64, i128)> = BTreeMap::new();
    let mut segments: BTreeMap<(String, String), (BTreeSet<i32>, i64, i128)> = BTreeMap::new();
    for (date, first, rows) in ORDERS.iter().filter(|(d, _, _)| days.contains(d)) {
        for id in *first..*first + *rows as i64 {
            let o = data::order(id, day(date));
            let order_date = DateTime::from_timestamp_micros(o.created_at).expect("timestamp").date_naive();
            let s = sales.entry((order_date, o.status)).or_default();
            (s.0, s.1, s.2) = (s.0 + 1, s.1 + o.quantity as i64, s.2 + o.total_cents);
            let c = &customers[&o.customer_id];
            let g = segments.entry((c.clean_segment(), c.clean_country())).or_default();
            g.0.insert(o.customer_id);
            (g.1, g.2) = (g.1 + 1, g.2 + o.total_cents);
        }
    }
    let sales = sales
        .into_iter()
        .map(|((d, status), (n, units, cents))| {
            vec![d.to_string(), status.to_owned(), n.to_string(), units.to_string(), cents.to_string()]
        })
        .collect();
    let segments = segments
        .into_iter()
        .map(|((segment, country), (who, n, cents))| {
            vec![segment, country, who.len().to_string(), n.to_string(), cents.to_string()]
        })
        .collect();
    (sales, segments)
}

/// Check every gold table against the sources.
async fn check_gold(h: &Harness, chat: &str, days: &[&str]) {
    let (sales, segments) = expected_sales(days);
    let got = h
        .rows(
            "SELECT order_date::text, status, orders::text, units::text, (revenue * 100)::bigint::text
             FROM gold.daily_sales ORDER BY 1, 2",
        )
        .await;
    assert_eq!(got, sales, "gold.daily_sales");
    let got = h
        .rows(
            "SELECT segment, country, customers::text, orders::text, (revenue * 100)::bigint::text
             FROM gold.customer_segments ORDER BY 1, 2",
        )
        .await;
    assert_eq!(got, segments, "gold.customer_segments");

    // Daily activity, from MariaDB itself.
    let per_day = |sql: &'static str| async move {
        mysql::query_text(chat, sql)
            .await
            .expect(sql)
            .into_iter()
            .map(|r| (r[0].clone(), r[1..].to_vec()))
            .collect::<BTreeMap<_, _>>()
    };
    let messages = per_day(
        "SELECT DATE_FORMAT(sent_at, '%Y%m%d'), CAST(COUNT(DISTINCT user_id) AS CHAR), CAST(COUNT(*) AS CHAR)
         FROM messages GROUP BY 1",
    )
    .await;
    let users = per_day("SELECT DATE_FORMAT(created_at, '%Y%m%d'), CAST(COUNT(*) AS CHAR) FROM users GROUP BY 1").await;
    let chats = per_day("SELECT DATE_FORMAT(created_at, '%Y%m%d'), CAST(COUNT(*) AS CHAR) FROM chats GROUP BY 1").await;
    let expected: Vec<Vec<String>> = days
        .iter()
        .map(|d| {
            let (dau, sent) =
                messages.get(*d).map(|m| (m[0].clone(), m[1].clone())).unwrap_or(("0".into(), "0".into()));
            let new_users = users.get(*d).map(|u| u[0].clone()).unwrap_or("0".into());
            let new_chats = chats.get(*d).map(|c| c[0].clone()).unwrap_or("0".into());
            vec![d.to_string(), dau, sent, new_users, new_chats]
        })
        .collect();
    let got = h
        .rows(
            "SELECT date_key::text, daily_active_users::text, messages_sent::text, new_users::text, new_chats::text
             FROM gold.fact_activity ORDER BY 1",
        )
        .await;
    assert_eq!(got, expected, "gold.fact_activity");

    let expected = mysql::query_text(
        chat,
        "SELECT CAST(c.id AS CHAR),
                CAST((SELECT COUNT(*) FROM chat_members m WHERE m.chat_id = c.id) AS CHAR),
                CAST((SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id) AS CHAR),
                CAST((SELECT COUNT(DISTINCT user_id) FROM messages m WHERE m.chat_id = c.id) AS CHAR)
         FROM chats c ORDER BY c.id",
    )
    .await
    .expect("chats");
    let got = h
        .rows("SELECT chat_id::text, members::text, messages::text, senders::text FROM gold.fact_chats ORDER BY fact_chats.chat_id")
        .await;
    assert_eq!(got, expected, "gold.fact_chats");

    let expected =
        mysql::query_text(chat, "SELECT CAST(id AS CHAR), display_name FROM users ORDER BY id").await.expect("users");
    let got = h.rows("SELECT user_key::text, display_name FROM gold.dim_user ORDER BY dim_user.user_key").await;
    assert_eq!(got, expected, "gold.dim_user: every user, with the current display name");

    let expected = mysql::query_text(
        chat,
        "SELECT CAST(COUNT(*) AS CHAR), CAST(SUM(edit_count) AS CHAR), CAST(SUM(edit_count > 0) AS CHAR) FROM messages",
    )
    .await
    .expect("messages");
    let got = h
        .rows("SELECT count(*)::text, sum(edit_count)::text, count(*) FILTER (WHERE is_edited)::text FROM gold.fact_messages")
        .await;
    assert_eq!(got, expected, "gold.fact_messages: every message, edits included");

    let got = h.rows("SELECT min(date_key)::text, max(date_key)::text, count(*)::text FROM gold.dim_time").await;
    assert_eq!(got, [vec![days[0].to_owned(), days[days.len() - 1].to_owned(), days.len().to_string()]]);
}

/// The rows dbt reported for a model in the warehouse pipeline's audit row of `date`.
async fn model_rows(h: &Harness, date: &str, model: &str) -> i64 {
    h.scalar_i64(&format!(
        "SELECT (n->>'rows_affected')::bigint FROM audit, jsonb_array_elements(details->'nodes') n
         WHERE pipeline_name = 'warehouse' AND status = 'success' AND run_date = '{}' AND NOT skip_load
           AND n->>'node' = 'model.weir_demo.{model}'
         ORDER BY audit_id DESC LIMIT 1",
        day(date)
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_builds_silver_and_gold_from_what_weir_loaded_over_two_days() {
    let mut h = Harness::new("dbt_layers").await;
    let chat = oltp(&mut h, "dbt_chat", "").await;
    pipelines(&h, PROJECT, r#"{"target": "test"}"#).await;

    source_day(&h, &chat, D1, true).await;
    let run = h.run_ok(D1).await;
    assert!(run.stdout.contains("dbt build: 13 models built, 39 tests passed"), "{}", run.stdout);
    check_gold(&h, &chat, &[D1]).await;

    source_day(&h, &chat, D2, false).await;
    h.run_ok(D2).await;
    check_gold(&h, &chat, &[D1, D2]).await;

    // Audited like a load: rows affected from run_results.json, nothing read.
    let audits = h.audits("warehouse").await;
    assert_eq!(audits.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(), ["success", "success"]);
    assert!(audits.iter().all(|a| a.records_read.is_none() && a.records_processed.unwrap_or(0) > 0));
    let built = h
        .scalar_i64(&format!(
            "SELECT (details->'nodes_by_status'->'model'->>'success')::bigint FROM audit
             WHERE pipeline_name = 'warehouse' AND run_date = '{}'",
            day(D2)
        ))
        .await;
    assert_eq!(built, 13);
    // The incremental models read only what changed: day two's 1200 new and 90
    // edited messages (and the rows at the last build's timestamp), not all 4200.
    assert_eq!(model_rows(&h, D1, "fact_messages").await, 3000);
    let second = model_rows(&h, D2, "fact_messages").await;
    assert!((1290..1300).contains(&second), "fact_messages on day two: {second} rows");
    let users = model_rows(&h, D2, "dim_user").await;
    assert!((41..50).contains(&users), "dim_user on day two: {users} rows (30 new, 11 renamed)");

    // --skip-load compiles the project and changes nothing.
    let run = h.runner(&["--date", D2, "--skip-load", "--pipeline", "warehouse"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("dbt compile: 13 models compiled"), "{}", run.stdout);
    // load_type = 'full': --full-refresh rebuilds the incremental models from scratch, to the same values.
    sqlx::query("UPDATE controller SET load_type = 'full' WHERE name = 'warehouse'")
        .execute(&h.pool)
        .await
        .expect("full");
    let run = h.runner(&["--date", D2, "--pipeline", "warehouse"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(model_rows(&h, D2, "fact_messages").await, 4200, "a full refresh rebuilds every message");
    check_gold(&h, &chat, &[D1, D2]).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            if entry.file_name() != "target" && entry.file_name() != "logs" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dbt_model_fails_its_pipeline_and_names_the_model_in_audit_and_email() {
    let mut h = Harness::new("dbt_broken").await;
    let chat = oltp(&mut h, "dbt_broken_chat", "").await;
    let smtp = SmtpServer::start().expect("aiosmtpd");
    h.set_env("WEIR_SMTP_URL", &smtp.url());
    h.set_env("WEIR_NOTIFY_FROM", "weir@example.com");
    h.set_env("WEIR_NOTIFY_TO", "data@example.com");
    // The warehouse by a password the logs, audit and email must never show.
    let mut dw = url::Url::parse(&h.db_url).expect("url");
    dw.set_password(Some("Dw-Pa55word")).expect("password");
    h.set_env("WEIR_CONN_DW", dw.as_str());

    let project = h.dir.path().join("dbt_broken");
    copy_dir(Path::new(PROJECT), &project);
    std::fs::write(
        project.join("models/gold/broken_revenue.sql"),
        "select order_id, no_such_column from {{ ref('orders') }}\n",
    )
    .expect("broken model");
    pipelines(&h, &project.display().to_string(), r#"{"select": "+broken_revenue customers"}"#).await;
    sqlx::query("UPDATE controller SET destination_connection = 'dw' WHERE name = 'warehouse'")
        .execute(&h.pool)
        .await
        .expect("update");
    h.pipeline(
        "after_warehouse",
        &[
            ("source_type", "'parquet'"),
            ("source_connection", "'lake'"),
            ("data_source", "'orders/'"),
            ("destination_table", "'after'"),
            ("depends_on", "'{warehouse}'"),
        ],
    )
    .await;
    source_day(&h, &chat, D1, true).await;

    let run = h.run_date(D1).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let audit = h.last_audit("warehouse").await;
    assert_eq!(audit.status, "failed");
    assert_eq!(audit.attempt, 1, "a broken model is not retried");
    assert!(
        audit.error.starts_with("pipeline `warehouse`: dbt build failed: model `broken_revenue` errored: Database Error in model broken_revenue"),
        "{}",
        audit.error
    );
    assert!(audit.error.contains("no_such_column"), "{}", audit.error);
    assert!(!audit.error.contains("weir-dbt-"), "no path into the run's removed folder: {}", audit.error);
    assert_eq!(h.last_audit("after_warehouse").await.status, "skipped");
    // Every model before the broken one was committed; the broken one left nothing.
    assert_eq!(h.count("silver.orders").await, 3000);
    assert!(!h.table_exists("gold.broken_revenue").await);
    for load in ["orders", "customers", "chat_messages"] {
        assert_eq!(h.last_audit(load).await.status, "success", "{load}");
    }

    let mail = smtp.wait_for(1, Duration::from_secs(10)).expect("the summary");
    let m = &mail[0];
    assert!(m.subject.contains("1 failed"), "{}", m.subject);
    let (text, html) = (m.text.clone().unwrap_or_default(), m.html.clone().unwrap_or_default());
    let line = text.lines().find(|l| l.trim_start().starts_with("pipeline `warehouse`")).unwrap_or_default();
    assert!(line.contains("model `broken_revenue` errored"), "{text}");
    assert!(html.contains("model `broken_revenue` errored"), "{html}");

    // A failing dbt test fails the pipeline too, named, with dbt's count.
    std::fs::remove_file(project.join("models/gold/broken_revenue.sql")).expect("rm");
    std::fs::create_dir_all(project.join("tests")).expect("mkdir");
    std::fs::write(
        project.join("tests/orders_are_never_returned.sql"),
        "select * from {{ ref('orders') }} where status = 'returned'\n",
    )
    .expect("singular test");
    sqlx::query(
        r#"UPDATE controller SET options = '{"select": "orders customers orders_are_never_returned"}'
                   WHERE name = 'warehouse'"#,
    )
    .execute(&h.pool)
    .await
    .expect("select");
    let again = h.runner(&["--date", D1, "--pipeline", "warehouse"]).await;
    assert_eq!(again.code, 1, "{}", again.all());
    let returned = (1..=3000).filter(|id| data::order(*id, day(D1)).status == "returned").count();
    let audit = h.last_audit("warehouse").await;
    assert_eq!(
        audit.error,
        format!(
            "pipeline `warehouse`: dbt build failed: test `orders_are_never_returned` failed: Got {returned} results, \
             configured to fail if != 0"
        )
    );

    let everything = format!(
        "{}{}{:?}{}",
        run.all(),
        text,
        h.rows("SELECT coalesce(error_message, '') || coalesce(details::text, '') FROM audit").await,
        html
    );
    assert!(!everything.contains("Dw-Pa55word"), "the warehouse password leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_dbt_pipeline_says_what_to_fix() {
    let mut h = Harness::new("dbt_bad").await;
    for (name, columns, expected) in [
        (
            "no_project",
            vec![("data_source", "'no/such/folder'")],
            "data_source `no/such/folder` holds no dbt_project.yml",
        ),
        (
            "reads_a_table",
            vec![("source_table", "'orders'")],
            "a dbt pipeline reads nothing itself: leave source_connection, source_table",
        ),
        ("bad_command", vec![("options", r#"'{"command": "seedd"}'"#)], "options.command `seedd` is not a dbt command"),
        (
            "into_delta",
            vec![("destination_type", "'delta'")],
            "destination_type `delta`: a dbt pipeline runs in a postgres destination",
        ),
    ] {
        let project = format!("'{PROJECT}'");
        let mut cols = vec![("source_type", "'dbt'"), ("data_source", project.as_str())];
        cols.retain(|(k, _)| !columns.iter().any(|(c, _)| c == k));
        cols.extend(columns);
        h.pipeline(name, &cols).await;
        let run = h.runner(&["--date", D1, "--pipeline", name]).await;
        assert_eq!(run.code, 1, "{}", run.all());
        let audit = h.last_audit(name).await;
        assert_eq!(audit.status, "failed");
        assert!(audit.error.starts_with(&format!("pipeline `{name}`: {expected}")), "{}", audit.error);
    }

    // `runner check` runs `dbt debug`: the project parses and the warehouse answers, or says why not.
    let project = format!("'{PROJECT}'");
    h.pipeline("good", &[("source_type", "'dbt'"), ("data_source", &project)]).await;
    h.pipeline(
        "unreachable",
        &[("source_type", "'dbt'"), ("data_source", &project), ("destination_connection", "'dw'")],
    )
    .await;
    h.set_env("WEIR_CONN_DW", "postgres://loader:Sekret-42@127.0.0.1:1/dw");
    let check = h.runner(&["check", "--pipeline", "good", "--pipeline", "unreachable"]).await;
    assert_eq!(check.code, 1, "{}", check.all());
    assert!(check.stdout.contains("ok      good"), "{}", check.stdout);
    let line = check.stdout.lines().find(|l| l.contains("unreachable")).unwrap_or_default();
    assert!(line.starts_with("FAILED  unreachable: dbt debug did not finish"), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    assert!(!check.all().contains("Sekret-42"), "{}", check.all());
}
