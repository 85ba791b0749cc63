//! `runner serve` end to end: the real binary on a spare port, called over
//! HTTP, its answers checked against what the metadata database holds (read
//! with an independent client). Tokens and scopes, cross-site forgery, pipeline
//! edits checked as `runner check` does, runs triggered through the engine,
//! event ingestion (duplicates, bad input, limits, a database that goes down, a
//! `kill -9` during a burst), the analytics query from PostgreSQL and from the
//! lake, the SQL box's limits; and the pages in Debian's Chromium.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{D1, Harness, finish, signal, spare_port, write_orders};

const READ: &str = "read-token-1";
const ADMIN: &str = "admin-token-1";
const INGEST: &str = "ingest-token-1";

/// A `runner serve` on a spare port.
struct Server {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

/// An answer: status, body, headers.
struct Answer {
    status: u16,
    body: String,
    headers: HeaderMap,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Self { status, body: response.text().await.expect("body"), headers }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn with_tokens(h: &mut Harness) {
    h.set_env("WEIR_READ_TOKENS", &format!("{READ},read-token-old"));
    h.set_env("WEIR_ADMIN_TOKENS", ADMIN);
    h.set_env("WEIR_INGEST_TOKENS", INGEST);
}

impl Server {
    async fn start(h: &Harness, extra: &[&str]) -> Self {
        let port = spare_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", listen.as_str()];
        args.extend_from_slice(extra);
        let child = h.spawn(&args);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let server = Self { child, base: format!("http://{listen}"), http };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.http.get(format!("{}/healthz", server.base)).send().await.is_ok() {
                return server;
            }
            assert!(Instant::now() < deadline, "runner serve did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method.parse().expect("method"), format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.header("content-type", "application/json").body(b.to_string());
        }
        Answer::read(request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))).await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// POST a form as a browser does, with a session cookie and these extra headers.
    async fn form(&self, path: &str, cookie: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Answer::read(request.send().await.expect("form post")).await
    }

    /// Log in with a token; the session cookie (`name=value`).
    async fn login(&self, token: &str) -> String {
        let answer = self.form("/login", "", &[("token", token), ("next", "/pipelines")], &[]).await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        let set = answer.headers.get("set-cookie").expect("a session cookie").to_str().expect("ascii").to_owned();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        set.split(';').next().expect("name=value").to_owned()
    }

    async fn page(&self, path: &str, cookie: &str) -> Answer {
        Answer::read(self.http.get(format!("{}{path}", self.base)).header("cookie", cookie).send().await.expect("page"))
            .await
    }
}

/// A small pipeline from Parquet into PostgreSQL, run once.
async fn orders(h: &Harness, name: &str, rows: usize) {
    write_orders(&h.lake().join(format!("{name}/dt=20250323")), D1, 1, rows, 2);
    let source = format!("'{name}/dt={{date}}/'");
    let dest = format!("'{name}'");
    h.pipeline(
        name,
        &[
            ("source_type", "'parquet'"),
            ("source_connection", "'lake'"),
            ("data_source", source.as_str()),
            ("schema_name", "'bronze'"),
            ("destination_table", dest.as_str()),
            ("load_type", "'full'"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_runs_and_pipelines_and_edits_them_only_with_the_admin_scope() {
    let mut h = Harness::new("serve_api").await;
    with_tokens(&mut h);
    // A connection whose password must appear nowhere.
    h.set_env("WEIR_CONN_SECRETDB", "postgres://weir:hunter2-secret@127.0.0.1:1/nowhere");
    orders(&h, "orders", 500).await;
    h.run_ok(D1).await;
    let s = Server::start(&h, &[]).await;

    // Who may read.
    assert_eq!(s.call("GET", "/api/runs", None, None).await.status, 401);
    assert_eq!(s.get("/api/runs", "not-a-token").await.status, 401);
    let wrong = s.get("/api/runs", INGEST).await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert!(wrong.body.contains("read scope"), "{}", wrong.body);
    let runs = s.get("/api/runs", READ).await.json();
    let run_id = runs["runs"][0]["run_id"].as_str().expect("the run").to_owned();
    assert_eq!(runs["runs"][0]["status"], "success");
    // A rotated-in second read token works as well.
    assert_eq!(s.get("/api/runs", "read-token-old").await.status, 200);
    let run = s.get(&format!("/api/runs/{run_id}"), READ).await.json();
    assert_eq!(run["attempts"][0]["pipeline_name"], "orders");
    assert_eq!(run["attempts"][0]["records_read"], 500);
    let pipelines = s.get("/api/pipelines", READ).await.json();
    assert_eq!(pipelines["pipelines"][0]["name"], "orders");
    assert_eq!(pipelines["pipelines"][0]["last_status"], "success");

    // Who may change.
    assert_eq!(s.call("POST", "/api/pipelines/orders/pause", Some(READ), None).await.status, 403);
    assert_eq!(s.call("POST", "/api/pipelines/orders/pause", Some(INGEST), None).await.status, 403);
    let paused = s.call("POST", "/api/pipelines/orders/pause", Some(ADMIN), None).await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(h.rows("SELECT active::text FROM controller WHERE name = 'orders'").await, [["false"]]);
    assert_eq!(s.call("POST", "/api/pipelines/orders/resume", Some(ADMIN), None).await.status, 200);
    assert_eq!(h.rows("SELECT active::text FROM controller WHERE name = 'orders'").await, [["true"]]);
    assert_eq!(s.call("POST", "/api/pipelines/nope/pause", Some(ADMIN), None).await.status, 404);

    // A new pipeline is checked as `runner check` checks it, before anything is stored.
    let typo = json!({"name": "more", "source_type": "parquet", "source_connection": "lake",
                      "data_source": "orders/dt={date}/", "schema_name": "bronze", "destination_table": "more",
                      "options": {"retires": 3}});
    let refused = s.post("/api/pipelines", ADMIN, typo).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.json()["error"].as_str().expect("error").contains("retires"), "{}", refused.body);
    let unknown = s
        .post("/api/pipelines", ADMIN, json!({"name": "more", "source_type": "oracle", "destination_table": "x"}))
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("oracle"), "{}", unknown.body);
    let unreachable = s
        .post(
            "/api/pipelines",
            ADMIN,
            json!({"name": "remote", "source_type": "postgres", "source_connection": "secretdb",
                   "source_table": "public.t", "destination_table": "remote"}),
        )
        .await;
    assert_eq!(unreachable.status, 503, "{}", unreachable.body);
    assert!(!unreachable.body.contains("hunter2"), "a password in an answer: {}", unreachable.body);
    assert_eq!(h.count("controller").await, 1, "nothing refused was stored");
    let good = json!({"name": "more", "source_type": "parquet", "source_connection": "lake",
                      "data_source": "orders/dt={date}/", "schema_name": "bronze", "destination_table": "more",
                      "primary_key": null, "schedule": "0 2 * * *"});
    let created = s.post("/api/pipelines", ADMIN, good.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(s.post("/api/pipelines", ADMIN, good).await.status, 400, "a second pipeline of that name");
    let listed = s.get("/api/pipelines/more", READ).await.json();
    assert!(listed["pipeline"]["next_run"].as_str().expect("next scheduled").ends_with("02:00:00Z"), "{listed}");
    // An edit `runner check` rejects leaves the row as it was.
    let bad_edit = s
        .call(
            "PUT",
            "/api/pipelines/more",
            Some(ADMIN),
            Some(json!({"source_type": "parquet", "source_connection": "lake", "data_source": "orders/dt={date}/",
                        "destination_table": "more", "load_type": "sometimes"})),
        )
        .await;
    assert_eq!(bad_edit.status, 400, "{}", bad_edit.body);
    assert!(bad_edit.body.contains("sometimes"), "{}", bad_edit.body);
    assert_eq!(h.rows("SELECT load_type FROM controller WHERE name = 'more'").await, [["full"]]);

    // Run now: through the engine, recorded like any run.
    let started = s.post("/api/pipelines/orders/trigger", ADMIN, json!({"date": "2025-03-23"})).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let triggered = started.json()["run_id"].as_str().expect("run id").to_owned();
    h.wait_until(&format!("SELECT status = 'success' FROM run WHERE run_id = '{triggered}'"), 60).await;
    assert_eq!(h.rows(&format!("SELECT records_read::text FROM audit WHERE run_id = '{triggered}'")).await, [["500"]]);

    // Audit, as JSON and as CSV.
    let audit = s.get("/api/audit?pipeline=orders", READ).await.json();
    assert_eq!(audit["rows"].as_array().expect("rows").len(), 2);
    let csv = s.get("/audit.csv?pipeline=orders", READ).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.body.lines().count(), 3, "{}", csv.body);
    assert!(csv.body.starts_with("audit_id,pipeline_name,"), "{}", csv.body);

    // The pages render, and say nothing secret.
    for path in [
        "/runs",
        &format!("/runs/{triggered}"),
        "/pipelines",
        "/pipelines/orders",
        "/audit",
        "/lake",
        "/streams",
        "/events",
    ] {
        let page = s.get(path, READ).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(!page.body.contains("hunter2"), "{path} shows a password");
    }
    let openapi = s.call("GET", "/api/openapi.json", None, None).await.json();
    for path in ["/api/runs", "/api/pipelines/{name}/trigger", "/events", "/analytics/query", "/api/query"] {
        assert!(openapi["paths"][path].is_object(), "{path} is not in the OpenAPI document");
    }

    signal(&s.child, "-TERM");
    let stopped = finish(s.child).await;
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    assert!(!stopped.all().contains("hunter2"), "a password in the log: {}", stopped.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_keep_a_session_and_refuse_cross_site_posts() {
    let mut h = Harness::new("serve_csrf").await;
    with_tokens(&mut h);
    orders(&h, "orders", 10).await;
    let s = Server::start(&h, &[]).await;

    // A page without a session goes to the login; an ingest token cannot log in.
    let anonymous = s.page("/pipelines", "").await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.headers["location"], "/login?next=%2Fpipelines");
    let refused = s.form("/login", "", &[("token", INGEST)], &[]).await;
    assert_eq!(refused.status, 401);

    let cookie = s.login(ADMIN).await;
    let page = s.page("/pipelines/orders", &cookie).await;
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();
    assert_eq!(csrf.len(), 64);
    let origin = s.base.clone();
    let same = [("origin", origin.as_str())];

    // Forged: no token, a wrong token, another site's origin, a cross-site fetch.
    fn pause(token: &str) -> Vec<(&str, &str)> {
        vec![("active", "false"), ("csrf", token)]
    }
    assert_eq!(s.form("/pipelines/orders/active", &cookie, &[("active", "false")], &same).await.status, 403);
    assert_eq!(s.form("/pipelines/orders/active", &cookie, &pause("0000"), &same).await.status, 403);
    let evil = [("origin", "http://evil.example")];
    assert_eq!(s.form("/pipelines/orders/active", &cookie, &pause(&csrf), &evil).await.status, 403);
    let cross = [("sec-fetch-site", "cross-site")];
    assert_eq!(s.form("/pipelines/orders/active", &cookie, &pause(&csrf), &cross).await.status, 403);
    assert_eq!(h.rows("SELECT active::text FROM controller WHERE name = 'orders'").await, [["true"]]);

    // The page's own form.
    let done = s.form("/pipelines/orders/active", &cookie, &pause(&csrf), &same).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(h.rows("SELECT active::text FROM controller WHERE name = 'orders'").await, [["false"]]);

    // An edit the check rejects is shown with its reason; nothing changes.
    let edit = s
        .form(
            "/pipelines/orders/edit",
            &cookie,
            &[
                ("csrf", &csrf),
                ("name", "orders"),
                ("source_type", "parquet"),
                ("source_connection", "lake"),
                ("data_source", "orders/dt={date}/"),
                ("schema_name", "bronze"),
                ("destination_table", "orders"),
                ("load_type", "sometimes"),
                ("options", "{}"),
            ],
            &same,
        )
        .await;
    assert_eq!(edit.status, 400);
    assert!(edit.body.contains("sometimes"), "{}", edit.body);
    assert_eq!(h.rows("SELECT load_type FROM controller WHERE name = 'orders'").await, [["full"]]);

    // A read session sees pages but cannot act.
    let reader = s.login(READ).await;
    assert_eq!(s.page("/runs", &reader).await.status, 200);
    let page = s.page("/pipelines/orders", &reader).await;
    assert!(!page.body.contains("Run now"), "a read session is offered Run now");
    assert_eq!(s.form("/pipelines/orders/active", &reader, &pause(&csrf), &same).await.status, 403);

    // Logged out, the cookie is worth nothing.
    let out = s.form("/logout", &cookie, &[], &same).await;
    assert_eq!(out.status, 303);
    assert_eq!(s.page("/runs", &cookie).await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_box_only_reads_and_stops_a_query_that_runs_forever() {
    let mut h = Harness::new("serve_sql").await;
    with_tokens(&mut h);
    let s = Server::start(&h, &["--query-timeout", "2s", "--query-rows", "5"]).await;
    assert_eq!(s.post("/api/query", READ, json!({"sql": "SELECT 1"})).await.status, 403, "the SQL box is admin's");
    let ok = s.post("/api/query", ADMIN, json!({"sql": "SELECT 41 + 1 AS answer"})).await.json();
    assert_eq!(ok["rows"], json!([[42]]));
    let capped = s.post("/api/query", ADMIN, json!({"sql": "SELECT * FROM generate_series(1, 100)"})).await.json();
    assert_eq!(capped["rows"].as_array().expect("rows").len(), 5);
    assert_eq!(capped["truncated"], true);
    for writes in [
        "CREATE TABLE t AS SELECT 1",
        "COPY (SELECT 1) TO '/tmp/weir-serve-sql.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let refused = s.post("/api/query", ADMIN, json!({ "sql": writes })).await;
        assert_eq!(refused.status, 400, "{writes}: {}", refused.body);
        assert!(refused.body.contains("only queries that read"), "{writes}: {}", refused.body);
    }
    assert!(!std::path::Path::new("/tmp/weir-serve-sql.csv").exists());
    let started = Instant::now();
    let forever =
        s.post("/api/query", ADMIN, json!({"sql": "SELECT count(*) FROM generate_series(1, 1000000000000)"})).await;
    assert_eq!(forever.status, 400, "{}", forever.body);
    assert!(forever.body.contains("longer than 2 s"), "{}", forever.body);
    assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
    // The server is still there.
    assert_eq!(s.post("/api/query", ADMIN, json!({"sql": "SELECT 1"})).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_server_listens_only_on_loopback() {
    let h = Harness::new("serve_open").await;
    let port = spare_port().to_string();
    let wide = h.runner(&["serve", "--listen", &format!("0.0.0.0:{port}")]).await;
    assert_eq!(wide.code, 2, "{}", wide.all());
    assert!(wide.stderr.contains("refusing to listen on 0.0.0.0"), "{}", wide.stderr);
    assert!(wide.stderr.contains("WEIR_ADMIN_TOKENS"), "{}", wide.stderr);
    // On loopback it is open, and still refuses a cross-site POST.
    let s = Server::start(&h, &[]).await;
    assert_eq!(s.call("GET", "/api/runs", None, None).await.status, 200);
    let forged = s
        .http
        .post(format!("{}/events", s.base))
        .header("origin", "http://evil.example")
        .body(r#"{"event":"x","timestamp":"2025-03-23T00:00:00Z","user_id":"u"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(h.count("events").await, 0);
}

/// `n` events: purchases and views by 7 users over 3 days, plans pro and free.
fn sample_events(n: usize, prefix: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let day = 23 + i % 3;
            let event = if i % 4 == 0 { "purchase" } else { "view" };
            json!({
                "event": event,
                "timestamp": format!("2025-03-{day}T{:02}:{:02}:00Z", i % 24, i % 60),
                "user_id": format!("u{}", i % 7),
                "properties": { "amount": (i % 10) as i64 * 5, "plan": if i % 3 == 0 { "pro" } else { "free" }, "i": i },
                "message_id": format!("{prefix}-{i}"),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_once_and_answered_from_postgres_and_from_the_lake() {
    let mut h = Harness::new("serve_events").await;
    with_tokens(&mut h);
    let s = Server::start(&h, &[]).await;
    let events = sample_events(1_500, "m");

    // One event, then batches; a batch sent twice stores nothing new.
    let one = s.post("/events", INGEST, events[0].clone()).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json(), json!({"stored": 1, "duplicates": 0}));
    for chunk in events[1..].chunks(1000) {
        let answer = s.post("/events", INGEST, Value::Array(chunk.to_vec())).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let again = s.post("/events", INGEST, Value::Array(events[..1000].to_vec())).await.json();
    assert_eq!(again, json!({"stored": 0, "duplicates": 1000}));
    assert_eq!(h.count("events").await, 1_500);
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT message_id) FROM events").await, 1_500);
    let stored = h
        .rows("SELECT event, user_id, \"timestamp\"::text, properties::text FROM events WHERE message_id = 'm-5'")
        .await;
    assert_eq!(stored, [["view", "u5", "2025-03-25 05:05:00+00", r#"{"i": 5, "plan": "free", "amount": 25}"#]]);

    // Bad input: 400 naming the field, 413 for too much, 403 for a read token; nothing stored.
    let bad =
        s.post("/events", INGEST, json!([events[0], {"event": "x", "user_id": "u", "timestamp": "23/03/2025"}])).await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().expect("error").starts_with("[1].timestamp:"), "{}", bad.body);
    let typo =
        s.post("/events", INGEST, json!({"evnt": "x", "user_id": "u", "timestamp": "2025-03-23T00:00:00Z"})).await;
    assert!(typo.body.contains("evnt: not a field"), "{}", typo.body);
    let many = s.post("/events", INGEST, Value::Array(sample_events(1001, "too-many"))).await;
    assert_eq!(many.status, 413, "{}", many.body);
    let huge = s
        .post(
            "/events",
            INGEST,
            json!({"event": "x", "user_id": "u", "timestamp": "2025-03-23T00:00:00Z",
                                        "properties": {"blob": "x".repeat(5 << 20)}}),
        )
        .await;
    assert_eq!(huge.status, 413);
    assert_eq!(s.post("/events", READ, events[0].clone()).await.status, 403);
    assert_eq!(h.count("events").await, 1_500);

    // The analytics query, against what the test computes from the events it sent.
    let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
    let mut pro_purchases = 0;
    let mut amount_by_plan: BTreeMap<String, i64> = BTreeMap::new();
    let mut users = HashSet::new();
    for e in &events {
        let day = e["timestamp"].as_str().expect("ts")[..10].to_owned();
        let plan = e["properties"]["plan"].as_str().expect("plan").to_owned();
        if e["event"] == "purchase" {
            *by_day.entry(day).or_default() += 1;
            users.insert(e["user_id"].as_str().expect("user").to_owned());
            *amount_by_plan.entry(plan.clone()).or_default() += e["properties"]["amount"].as_i64().expect("amount");
            if plan == "pro" {
                pro_purchases += 1;
            }
        }
    }
    let expected_days: Vec<Value> = by_day.iter().map(|(d, n)| json!({"group": d, "value": n})).collect();
    let mut plans: Vec<(&String, &i64)> = amount_by_plan.iter().collect();
    plans.sort_by(|a, b| b.1.cmp(a.1));
    let expected_plans: Vec<Value> = plans.iter().map(|(p, v)| json!({"group": p, "value": **v as f64})).collect();
    let questions = [
        ("metric=count&event=purchase&group_by=day", json!(expected_days)),
        (
            r#"metric=count&event=purchase&filters=%7B%22plan%22%3A%22pro%22%7D"#,
            json!([{"group": null, "value": pro_purchases}]),
        ),
        ("metric=unique_users&event=purchase", json!([{"group": null, "value": users.len()}])),
        ("metric=sum&property=amount&event=purchase&group_by=property:plan", json!(expected_plans)),
        ("metric=count&from=2025-03-24&to=2025-03-25", json!([{"group": null, "value": 500}])),
    ];
    for (q, expected) in &questions {
        let answer = s.get(&format!("/analytics/query?{q}"), READ).await;
        assert_eq!(answer.status, 200, "{q}: {}", answer.body);
        assert_eq!(answer.json()["rows"], *expected, "{q}");
    }
    let wrong = s.get("/analytics/query?metric=median", READ).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("metric `median`"), "{}", wrong.body);

    // The events table is a table like any other: a pipeline copies it to the lake,
    // and the same questions get the same answers from there.
    h.set_env("WEIR_CONN_META", &h.db_url.clone());
    h.pipeline(
        "events_to_lake",
        &[
            ("source_type", "'postgres'"),
            ("source_connection", "'meta'"),
            ("source_table", "'public.events'"),
            ("destination_type", "'delta'"),
            ("destination_connection", "'lake'"),
            ("schema_name", "'bronze'"),
            ("destination_table", "'events'"),
            ("load_type", "'incremental'"),
            ("watermark_column", "'event_id'"),
            ("primary_key", "'{message_id}'"),
        ],
    )
    .await;
    h.run_ok(D1).await;
    for (q, expected) in &questions {
        let answer = s.get(&format!("/analytics/query?{q}&source=lake"), READ).await;
        assert_eq!(answer.status, 200, "{q}: {}", answer.body);
        assert_eq!(answer.json()["rows"], *expected, "{q} from the lake");
    }
    let events_page = s.get("/events?metric=count&event=purchase&group_by=day&source=lake", READ).await;
    assert!(events_page.body.contains("2025-03-23"), "{}", events_page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_database_that_goes_down_gives_503_and_the_server_recovers_on_its_own() {
    let mut h = Harness::new("serve_down").await;
    with_tokens(&mut h);
    // The server reaches its database through a proxy the test can take down.
    let url = url::Url::parse(&h.db_url).expect("url");
    let upstream = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432));
    let proxy = weir_testkit::proxy::TcpProxy::start(upstream.parse().expect("addr")).await.expect("proxy");
    let mut via = url.clone();
    via.set_port(Some(proxy.port())).expect("port");
    h.set_env("WEIR_DATABASE_URL", via.as_str());
    let s = Server::start(&h, &[]).await;
    let event = |id: &str| json!({"event": "e", "user_id": "u", "timestamp": "2025-03-23T00:00:00Z", "message_id": id});
    assert_eq!(s.post("/events", INGEST, event("before")).await.status, 200);

    proxy.set_down(true);
    let page = s.get("/runs", READ).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("The metadata database cannot be reached"), "{}", page.body);
    assert!(!page.body.contains(&h.db_url), "the page shows the database URL");
    let refused = s.post("/events", INGEST, event("during")).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(s.call("GET", "/healthz", None, None).await.status, 503);

    proxy.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (page, ingest) =
            (s.get("/runs", READ).await.status, s.post("/events", INGEST, event("after")).await.status);
        if page == 200 && ingest == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered within 30 s: page {page}, ingest {ingest}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(h.rows("SELECT message_id FROM events ORDER BY event_id").await, [["before"], ["after"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_acknowledged_before_a_kill_9_is_stored_once() {
    let mut h = Harness::new("serve_kill").await;
    with_tokens(&mut h);
    let s = Server::start(&h, &[]).await;
    let base = s.base.clone();
    // Eight clients send batches of 20 as fast as they can; each keeps the ids the server acknowledged.
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8 {
        let (base, http) = (base.clone(), s.http.clone());
        clients.spawn(async move {
            let mut acked = Vec::new();
            for b in 0.. {
                let batch: Vec<Value> = sample_events(20, &format!("c{c}-b{b}"));
                let sent = http
                    .post(format!("{base}/events"))
                    .bearer_auth(INGEST)
                    .header("content-type", "application/json")
                    .body(Value::Array(batch.clone()).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 200 => {
                        acked.extend(batch.iter().map(|e| e["message_id"].as_str().expect("id").to_owned()))
                    }
                    Ok(r) => panic!("an answer other than 200 before the kill: {}", r.status()),
                    Err(_) => return (c, acked, b),
                }
            }
            unreachable!()
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&s.child, "-KILL");
    let mut acked = Vec::new();
    let mut last_batch = BTreeMap::new();
    while let Some(done) = clients.join_next().await {
        let (c, ids, b) = done.expect("client");
        acked.extend(ids);
        last_batch.insert(c, b);
    }
    assert!(acked.len() > 200, "the burst was under way: {} acknowledged", acked.len());
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE message_id = ANY($1)")
        .bind(&acked)
        .fetch_one(&h.pool)
        .await
        .expect("count");
    assert_eq!(found, acked.len() as i64, "every acknowledged event is stored");
    assert_eq!(h.scalar_i64("SELECT count(*) - count(DISTINCT message_id) FROM events").await, 0);

    // The clients send what got no answer again, to a new server: each event once in the end.
    let s = Server::start(&h, &[]).await;
    for (c, last) in last_batch {
        for b in 0..=last {
            let batch = sample_events(20, &format!("c{c}-b{b}"));
            if h.scalar_i64(&format!("SELECT count(*) FROM events WHERE message_id = 'c{c}-b{b}-0'")).await == 0 {
                let answer = s.post("/events", INGEST, Value::Array(batch)).await;
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
        }
    }
    let total = h.count("events").await;
    assert_eq!(h.scalar_i64("SELECT count(DISTINCT message_id) FROM events").await, total, "no event twice");
    assert_eq!(total % 20, 0, "whole batches: a batch is one statement, stored entirely or not at all");
}

/// The dashboard in Debian's Chromium, driven by Playwright (`tests/browser/dashboard.mjs`):
/// log in, watch a run another runner starts appear and finish, pause a
/// pipeline, trigger a run, run a SQL query, read the events page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let chromium = std::env::var("WEIR_TEST_CHROMIUM")
        .expect("WEIR_TEST_CHROMIUM: Debian's chromium (scripts/services.sh browser installs it)");
    let mut h = Harness::new("serve_browser").await;
    with_tokens(&mut h);
    orders(&h, "orders", 200_000).await;
    orders(&h, "customers", 1_000).await;
    let s = Server::start(&h, &[]).await;
    for e in sample_events(300, "b").chunks(100) {
        assert_eq!(s.post("/events", INGEST, Value::Array(e.to_vec())).await.status, 200);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/browser/dashboard.mjs");
    let mut browser = h.command_named("node", &[script]);
    browser
        .env("WEIR_URL", &s.base)
        .env("WEIR_TOKEN", ADMIN)
        .env("CHROMIUM", &chromium)
        .env("RUNNER", env!("CARGO_BIN_EXE_runner"))
        .env("SCREENSHOTS", std::env::var("WEIR_SCREENSHOTS").unwrap_or_default());
    // Its steps show as they happen (with --nocapture), and a hung step fails the test.
    browser.stdout(std::process::Stdio::inherit()).stderr(std::process::Stdio::inherit()).kill_on_drop(true);
    let done = tokio::time::timeout(Duration::from_secs(300), browser.status()).await;
    let done = done.expect("the browser test took more than 5 minutes").expect("node");
    assert!(done.success(), "the browser test failed: see its steps above");
    let out = "";
    // What the clicks did, read back from the database.
    assert_eq!(h.rows("SELECT active::text FROM controller WHERE name = 'customers'").await, [["false"]]);
    assert_eq!(h.scalar_i64("SELECT count(*) FROM run WHERE status = 'success'").await, 2, "{out}");
    assert_eq!(h.count("bronze.orders").await, 200_000);
}
