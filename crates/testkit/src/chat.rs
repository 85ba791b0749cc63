//! The chat demo's OLTP database (MySQL/MariaDB): users, chats, chat members
//! and messages with edits, and a day-by-day simulation of new and changed rows.
//!
//! Every row is generated from the date and its id, so a day can be told
//! apart in the loaded data: a day's new rows have `created_at` on that day,
//! and its changes (profile edits, message edits) have `updated_at` on it.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use sqlx::{Connection, MySqlConnection, Row};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
  id BIGINT UNSIGNED PRIMARY KEY, username VARCHAR(40) NOT NULL UNIQUE, display_name VARCHAR(80) NOT NULL,
  country CHAR(2) NOT NULL, created_at DATETIME(3) NOT NULL, updated_at DATETIME(3) NOT NULL,
  KEY ix_users_updated (updated_at)
) CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS chats (
  id BIGINT UNSIGNED PRIMARY KEY, title VARCHAR(120) NOT NULL, is_group BOOL NOT NULL,
  created_by BIGINT UNSIGNED NOT NULL, created_at DATETIME(3) NOT NULL, updated_at DATETIME(3) NOT NULL,
  KEY ix_chats_updated (updated_at)
) CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS chat_members (
  chat_id BIGINT UNSIGNED NOT NULL, user_id BIGINT UNSIGNED NOT NULL,
  role ENUM('owner','admin','member') NOT NULL, joined_at DATETIME(3) NOT NULL, updated_at DATETIME(3) NOT NULL,
  PRIMARY KEY (chat_id, user_id), KEY ix_members_updated (updated_at)
) CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS messages (
  id BIGINT UNSIGNED PRIMARY KEY, chat_id BIGINT UNSIGNED NOT NULL, user_id BIGINT UNSIGNED NOT NULL,
  body TEXT NOT NULL, sent_at DATETIME(3) NOT NULL, edited_at DATETIME(3) NULL, edit_count INT NOT NULL DEFAULT 0,
  updated_at DATETIME(3) NOT NULL, KEY ix_messages_updated (updated_at), KEY ix_messages_chat (chat_id)
) CHARACTER SET utf8mb4;
";

/// How much one simulated day brings.
#[derive(Debug, Clone, Copy)]
pub struct Volume {
    pub users: u64,
    pub chats: u64,
    pub messages: u64,
    /// Existing users who change their display name.
    pub profile_edits: u64,
    /// Existing messages edited.
    pub message_edits: u64,
}

impl Volume {
    /// The first day: a product with some history.
    pub const FIRST_DAY: Volume = Volume { users: 200, chats: 40, messages: 3000, profile_edits: 0, message_edits: 0 };
    /// Every later day.
    pub const NEXT_DAY: Volume = Volume { users: 30, chats: 8, messages: 1200, profile_edits: 12, message_edits: 90 };
}

/// What a day did to each table: rows inserted and rows updated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DayReport {
    pub users: (u64, u64),
    pub chats: (u64, u64),
    pub chat_members: (u64, u64),
    pub messages: (u64, u64),
}

/// A deterministic pseudo-random number from a seed (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const NAMES: &[&str] =
    &["Ada", "Bahar", "Chen", "Dara", "Emil", "Farah", "Goli", "Hugo", "Iris", "Jalal", "Kian", "Lena"];
const COUNTRIES: &[&str] = &["IR", "DE", "US", "FR", "JP", "BR", "IN", "NG"];
const WORDS: &[&str] = &["hi", "lunch?", "see you", "👍", "on my way", "done", "thanks!", "meeting at 3", "🎉", "ok"];

/// A time on `day`, `n` steps of `step_ms` after 08:00, wrapped within the day.
fn at(day: NaiveDate, n: u64, step_ms: u64) -> String {
    let ms = (8 * 3_600_000 + n * step_ms) % 86_400_000;
    let t = NaiveDateTime::new(day, NaiveTime::MIN) + chrono::Duration::milliseconds(ms as i64);
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.3f"))
}

/// Insert `rows` (value tuples) into `table`, 500 per statement.
async fn insert(conn: &mut MySqlConnection, table: &str, rows: &[String]) -> anyhow::Result<()> {
    for chunk in rows.chunks(500) {
        let sql = format!("INSERT INTO {table} VALUES {}", chunk.join(","));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn max_id(conn: &mut MySqlConnection, table: &str) -> anyhow::Result<u64> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM {table}")))
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<i64, _>(0)? as u64)
}

/// Create the tables (if missing) and simulate `day` at `volume` on the database at `url`.
pub async fn simulate_day(url: &str, day: NaiveDate, volume: Volume) -> anyhow::Result<DayReport> {
    let mut conn = MySqlConnection::connect(url).await?;
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await?;
    let seed = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp() as u64).unwrap_or_default();
    let mut report = DayReport::default();

    // New users, and some existing ones changing their display name.
    let first_user = max_id(&mut conn, "users").await? + 1;
    let users: Vec<String> = (first_user..first_user + volume.users)
        .map(|id| {
            let r = mix(id);
            let name = NAMES[(r % NAMES.len() as u64) as usize];
            let when = at(day, id, 7_000);
            format!(
                "({id}, 'user{id}', '{name} {id}', '{}', {when}, {when})",
                COUNTRIES[(r >> 8) as usize % COUNTRIES.len()]
            )
        })
        .collect();
    insert(&mut conn, "users", &users).await?;
    report.users.0 = volume.users;
    let last_user = first_user + volume.users - 1;
    if first_user > 1 {
        let ids: BTreeSet<u64> =
            (0..volume.profile_edits).map(|i| 1 + mix(seed ^ (i << 20)) % (first_user - 1)).collect();
        for (i, id) in ids.into_iter().enumerate() {
            let sql = format!(
                "UPDATE users SET display_name = CONCAT(display_name, ' ✎'), updated_at = {} WHERE id = {id}",
                at(day, 5_000 + i as u64, 60_000)
            );
            report.users.1 += sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?.rows_affected();
        }
    }

    // New chats, each with an owner and two to four members.
    let first_chat = max_id(&mut conn, "chats").await? + 1;
    let mut chats = Vec::new();
    let mut members = Vec::new();
    for id in first_chat..first_chat + volume.chats {
        let r = mix(id ^ 0xC4A7);
        let owner = 1 + r % last_user;
        let size = 2 + (r >> 16) % 3;
        let when = at(day, id, 113_000);
        chats.push(format!("({id}, 'chat {id}', {}, {owner}, {when}, {when})", (size > 2) as u8));
        let mut seen = vec![owner];
        members.push(format!("({id}, {owner}, 'owner', {when}, {when})"));
        for k in 1..size {
            let user = 1 + mix(r ^ k) % last_user;
            if !seen.contains(&user) {
                seen.push(user);
                members.push(format!("({id}, {user}, '{}', {when}, {when})", if k == 1 { "admin" } else { "member" }));
            }
        }
    }
    insert(&mut conn, "chats", &chats).await?;
    insert(&mut conn, "chat_members", &members).await?;
    report.chats.0 = chats.len() as u64;
    report.chat_members.0 = members.len() as u64;

    // New messages in random chats, from their members' ids (any user for simplicity).
    let last_chat = first_chat + volume.chats - 1;
    let first_message = max_id(&mut conn, "messages").await? + 1;
    let messages: Vec<String> = (first_message..first_message + volume.messages)
        .map(|id| {
            let r = mix(id ^ 0x5E55);
            let when = at(day, id, 2_500);
            format!(
                "({id}, {}, {}, '{} #{id}', {when}, NULL, 0, {when})",
                1 + r % last_chat,
                1 + (r >> 12) % last_user,
                WORDS[(r >> 24) as usize % WORDS.len()]
            )
        })
        .collect();
    insert(&mut conn, "messages", &messages).await?;
    report.messages.0 = volume.messages;

    // Edits of earlier messages.
    if first_message > 1 {
        let ids: BTreeSet<u64> =
            (0..volume.message_edits).map(|i| 1 + mix(seed ^ (i << 32) ^ 0xED17) % (first_message - 1)).collect();
        for (i, id) in ids.into_iter().enumerate() {
            let when = at(day, 9_000 + i as u64, 30_000);
            let sql = format!(
                "UPDATE messages SET body = CONCAT(body, ' (edited)'), edited_at = {when}, edit_count = edit_count + 1,
                 updated_at = {when} WHERE id = {id} AND updated_at < {when}"
            );
            report.messages.1 += sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?.rows_affected();
        }
    }
    Ok(report)
}
