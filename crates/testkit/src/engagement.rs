//! The fifth system's source: an application's PostgreSQL with a `content`
//! catalog (podcasts, videos, newsletters, with their lengths) and
//! `engagement_events` (who played what, for how long), then live changes
//! between runs: new events, edited content, deleted events. Deterministic for
//! a `--date`: the server's random generator is seeded from it.

use sqlx::{Connection, PgConnection};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS content (
    content_id     bigint PRIMARY KEY,
    content_type   text NOT NULL CHECK (content_type IN ('podcast', 'video', 'newsletter')),
    title          text NOT NULL,
    length_seconds integer NOT NULL,
    tags           text[] NOT NULL DEFAULT '{}',
    published_at   timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS engagement_events (
    event_id           bigint PRIMARY KEY,
    content_id         bigint NOT NULL REFERENCES content ON DELETE CASCADE,
    user_id            bigint NOT NULL,
    event_type         text NOT NULL CHECK (event_type IN ('play', 'pause', 'finish', 'click')),
    engagement_seconds integer,
    device             text NOT NULL,
    event_ts           timestamptz NOT NULL,
    properties         jsonb
);";

/// What one call changed.
#[derive(Debug, Default)]
pub struct Report {
    pub content_inserted: u64,
    pub content_updated: u64,
    pub events_inserted: u64,
    pub events_updated: u64,
    pub events_deleted: u64,
}

/// The first day (`first_day`): 500 content items and 20 000 events; later
/// days: 40 new items, 60 retitled or re-cut, 5 000 new events, 300 corrected,
/// 200 deleted (spam), each kind in its own transaction.
pub async fn simulate_day(url: &str, date: chrono::NaiveDate, first_day: bool) -> anyhow::Result<Report> {
    let mut db = PgConnection::connect(url).await?;
    sqlx::raw_sql(SCHEMA).execute(&mut db).await?;
    let day = date.format("%Y-%m-%d").to_string();
    let seed = f64::from(date.format("%j").to_string().parse::<u32>()?) / 1000.0;
    let (new_content, new_events) = if first_day { (500, 20_000) } else { (40, 5_000) };
    let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    let mut report = Report::default();
    run(format!("SELECT setseed({seed})")).execute(&mut db).await?;
    report.content_inserted = run(format!(
        "INSERT INTO content
         SELECT coalesce((SELECT max(content_id) FROM content), 0) + i,
                (ARRAY['podcast', 'video', 'newsletter'])[1 + floor(random() * 3)::int],
                'Episode ' || i || ' of ' || (ARRAY['Data Today', 'Stream Hour', 'The Lakehouse', 'CDC Weekly'])[1 + floor(random() * 4)::int],
                60 + (random() * 5400)::int,
                ARRAY[(ARRAY['tech', 'news', 'deep dive', 'interview'])[1 + floor(random() * 4)::int]],
                '{day}'::timestamptz - (random() * interval '30 days'),
                '{day}'::timestamptz
         FROM generate_series(1, {new_content}) i"
    ))
    .execute(&mut db)
    .await?
    .rows_affected();
    report.events_inserted = run(format!(
        "INSERT INTO engagement_events
         SELECT coalesce((SELECT max(event_id) FROM engagement_events), 0) + i,
                1 + floor(random() * n.content)::bigint,
                1 + (random() * 4999)::int,
                (ARRAY['play', 'pause', 'finish', 'click'])[1 + floor(random() * 4)::int],
                CASE WHEN random() < 0.9 THEN (random() * 3600)::int END,
                (ARRAY['ios', 'android', 'web', 'tv'])[1 + floor(random() * 4)::int],
                '{day}'::timestamptz + (random() * interval '1 day'),
                CASE WHEN random() < 0.5 THEN jsonb_build_object('campaign', 'c' || (random() * 9)::int, 'position', (random() * 100)::int) END
         FROM generate_series(1, {new_events}) i, (SELECT max(content_id) AS content FROM content) n"
    ))
    .execute(&mut db)
    .await?
    .rows_affected();
    if first_day {
        return Ok(report);
    }
    report.content_updated = run(format!(
        "UPDATE content SET title = title || ' (updated)', length_seconds = length_seconds + 30,
                            updated_at = '{day}'::timestamptz + interval '12 hours'
         WHERE content_id IN (SELECT content_id FROM content ORDER BY random() LIMIT 60)"
    ))
    .execute(&mut db)
    .await?
    .rows_affected();
    report.events_updated =
        run("UPDATE engagement_events SET engagement_seconds = coalesce(engagement_seconds, 0) + 15
         WHERE event_id IN (SELECT event_id FROM engagement_events ORDER BY random() LIMIT 300)"
            .to_owned())
        .execute(&mut db)
        .await?
        .rows_affected();
    report.events_deleted = run("DELETE FROM engagement_events
         WHERE event_id IN (SELECT event_id FROM engagement_events ORDER BY random() LIMIT 200)"
        .to_owned())
    .execute(&mut db)
    .await?
    .rows_affected();
    Ok(report)
}
