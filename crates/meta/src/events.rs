//! The `events` table (`migrations/0006_server.sql`): events posted to
//! `runner serve`, stored in batches, and the aggregate questions asked of them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder, Row};
use weir_core::{Error, Result};

use crate::MetaStore;
use crate::store::db_error;

/// An event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub message_id: String,
    pub event: String,
    pub user_id: String,
    pub timestamp: DateTime<Utc>,
    /// A JSON object.
    pub properties: serde_json::Value,
}

/// What to compute over the events.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Count,
    UniqueUsers,
    /// The sum of a numeric property (events without it, or with a value that
    /// is not a number, do not count).
    Sum(String),
    Avg(String),
}

/// How to split the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// `2025-03-23`, in UTC.
    Day,
    /// `2025-03-23T14:00Z`.
    Hour,
    /// A property's value, as text.
    Property(String),
}

/// An aggregate question: `metric` of the events named `event` whose
/// properties equal `filters` (compared as text), from `from` (included) to
/// `to` (excluded), split by `group_by`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsQuery {
    pub metric: Metric,
    pub event: Option<String>,
    pub filters: Vec<(String, String)>,
    pub group_by: Option<GroupBy>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One group of an answer (`group` is `None` without `group_by`, or for
/// events that lack the grouping property).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyticsRow {
    pub group: Option<String>,
    pub value: Option<f64>,
}

/// The most groups an answer holds.
pub const MAX_GROUPS: i64 = 1000;

impl MetaStore {
    /// Store events in one statement; an event whose `message_id` is already
    /// stored is left out. Returns the `message_id`s stored now.
    pub async fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(events.len());
        let mut names = Vec::with_capacity(events.len());
        let mut users = Vec::with_capacity(events.len());
        let mut times = Vec::with_capacity(events.len());
        let mut properties = Vec::with_capacity(events.len());
        for e in events {
            ids.push(e.message_id.as_str());
            names.push(e.event.as_str());
            users.push(e.user_id.as_str());
            times.push(e.timestamp);
            properties.push(&e.properties);
        }
        sqlx::query_scalar(
            "INSERT INTO events (message_id, event, user_id, \"timestamp\", properties)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[])
             ON CONFLICT (message_id) DO NOTHING
             RETURNING message_id",
        )
        .bind(ids)
        .bind(names)
        .bind(users)
        .bind(times)
        .bind(properties)
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(e, "storing the events"))
    }

    /// Answer an aggregate question from the `events` table.
    pub async fn analytics(&self, q: &AnalyticsQuery) -> Result<Vec<AnalyticsRow>> {
        let mut sql = QueryBuilder::<Postgres>::new("SELECT ");
        match &q.group_by {
            None => sql.push("NULL::text"),
            Some(GroupBy::Day) => sql.push("to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
            Some(GroupBy::Hour) => sql.push("to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00\"Z\"')"),
            Some(GroupBy::Property(p)) => sql.push("properties->>").push_bind(p.clone()),
        };
        sql.push(" AS grp, ");
        let number = |sql: &mut QueryBuilder<Postgres>, p: &str| {
            sql.push("CASE WHEN jsonb_typeof(properties->")
                .push_bind(p.to_owned())
                .push(") = 'number' THEN (properties->>")
                .push_bind(p.to_owned())
                .push(")::float8 END");
        };
        match &q.metric {
            Metric::Count => {
                sql.push("count(*)::float8");
            }
            Metric::UniqueUsers => {
                sql.push("count(DISTINCT user_id)::float8");
            }
            Metric::Sum(p) => {
                sql.push("sum(");
                number(&mut sql, p);
                sql.push(")");
            }
            Metric::Avg(p) => {
                sql.push("avg(");
                number(&mut sql, p);
                sql.push(")");
            }
        }
        sql.push(" AS value FROM events WHERE true");
        if let Some(event) = &q.event {
            sql.push(" AND event = ").push_bind(event.clone());
        }
        for (key, value) in &q.filters {
            sql.push(" AND properties->>").push_bind(key.clone()).push(" = ").push_bind(value.clone());
        }
        if let Some(from) = q.from {
            sql.push(" AND \"timestamp\" >= ").push_bind(from);
        }
        if let Some(to) = q.to {
            sql.push(" AND \"timestamp\" < ").push_bind(to);
        }
        match &q.group_by {
            None => sql.push(""),
            Some(GroupBy::Property(_)) => sql.push(" GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1"),
            Some(_) => sql.push(" GROUP BY 1 ORDER BY 1"),
        };
        sql.push(" LIMIT ").push_bind(MAX_GROUPS);
        let rows = sql.build().fetch_all(self.db()).await.map_err(|e| match e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                Error::user("the events table is missing: run `runner init` (it creates it)")
            }
            e => db_error(e, "answering the analytics query"),
        })?;
        rows.iter()
            .map(|r| Ok(AnalyticsRow { group: r.try_get("grp")?, value: r.try_get("value")? }))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| db_error(e, "reading the analytics answer"))
    }
}
