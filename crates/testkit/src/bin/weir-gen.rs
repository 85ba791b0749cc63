//! `weir-gen`: writes the demo and benchmark datasets.
//!
//! `weir-gen orders --out demo-data/orders/dt=20250323 --date 20250323 --rows 1000`
//! writes Parquet; `--csv FILE` writes the same rows as CSV (for `psql \copy`).
//! `weir-gen chat --mysql mysql://root@127.0.0.1/chat --date 20250323 --first-day`
//! creates the chat OLTP tables and fills a first day; later dates add new and
//! changed rows.
//! `weir-gen people --es http://127.0.0.1:9200 --people 10000` creates and fills
//! the civil registry indices `person_sabt`, `vehicle_sabt` and `company_sabt`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, NaiveDate};
use clap::{Parser, Subcommand};
use weir_testkit::chat::{Volume, simulate_day};
use weir_testkit::data::{order, write_customers, write_orders};

#[derive(Parser)]
#[command(about = "Generate Weir's demo and benchmark data")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The `orders` dataset (10 columns).
    Orders {
        /// Folder for the Parquet files.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write CSV (with a header) to this file instead of Parquet.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// The day the orders belong to.
        #[arg(long, default_value = "20250323")]
        date: String,
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        /// The first order id.
        #[arg(long, default_value_t = 1)]
        first: i64,
        #[arg(long, default_value_t = 1)]
        files: usize,
    },
    /// The `customers` extract of a day: every customer on the first day, else those that changed.
    Customers {
        /// Folder for the Parquet file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "20250323")]
        date: String,
        /// The full first extract.
        #[arg(long)]
        first_day: bool,
    },
    /// The chat OLTP database in MySQL/MariaDB: one simulated day of new and changed rows.
    Chat {
        /// The database, `mysql://user@host:3306/chat` (created tables if missing).
        #[arg(long)]
        mysql: String,
        #[arg(long, default_value = "20250323")]
        date: String,
        /// The first day's larger volume, without edits.
        #[arg(long)]
        first_day: bool,
    },
    /// The engagement source in PostgreSQL: a `content` catalog and
    /// `engagement_events`; one simulated day of new, edited and deleted rows.
    Engagement {
        /// The database, `postgres://user@host:5432/app` (tables created if missing).
        #[arg(long)]
        postgres: String,
        #[arg(long, default_value = "20250323")]
        date: String,
        /// The first day's catalog and events, without edits.
        #[arg(long)]
        first_day: bool,
    },
    /// The civil registry in Elasticsearch: people, their vehicles and companies.
    People {
        /// The cluster, `http://127.0.0.1:9200`.
        #[arg(long)]
        es: String,
        #[arg(long, default_value_t = 10_000)]
        people: u64,
        /// Primary shards of `person_sabt`.
        #[arg(long, default_value_t = 2)]
        shards: u32,
        /// Put this in front of the index names.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Orders { out, csv, date, rows, first, files } => {
            let day = parse_day(&date)?;
            match (out, csv) {
                (Some(dir), None) => write_orders(&dir, day, first, rows, files),
                (None, Some(path)) => write_csv(&path, day, first, rows),
                _ => anyhow::bail!("give exactly one of --out DIR or --csv FILE"),
            }
        }
        Cmd::Customers { out, date, first_day } => {
            let rows = write_customers(&out, parse_day(&date)?, first_day)?;
            println!("customers {date}: {rows} rows");
            Ok(())
        }
        Cmd::Chat { mysql, date, first_day } => {
            let volume = if first_day { Volume::FIRST_DAY } else { Volume::NEXT_DAY };
            let day = parse_day(&date)?;
            let report = tokio::runtime::Runtime::new()?.block_on(simulate_day(&mysql, day, volume))?;
            println!("chat day {date}: rows inserted / updated");
            for (table, (inserted, updated)) in [
                ("users", report.users),
                ("chats", report.chats),
                ("chat_members", report.chat_members),
                ("messages", report.messages),
            ] {
                println!("  {table:<13} +{inserted:<5} ~{updated}");
            }
            Ok(())
        }
        Cmd::Engagement { postgres, date, first_day } => {
            let r = tokio::runtime::Runtime::new()?.block_on(weir_testkit::engagement::simulate_day(
                &postgres,
                parse_day(&date)?,
                first_day,
            ))?;
            println!("engagement day {date}: rows inserted / updated / deleted");
            println!("  content            +{:<6} ~{:<4} -0", r.content_inserted, r.content_updated);
            println!("  engagement_events  +{:<6} ~{:<4} -{}", r.events_inserted, r.events_updated, r.events_deleted);
            Ok(())
        }
        Cmd::People { es, people, shards, prefix } => {
            let client = weir_testkit::es::EsClient::new(&es);
            let counts = tokio::runtime::Runtime::new()?
                .block_on(weir_testkit::people::load(&client, &prefix, people, shards))?;
            for (index, n) in counts {
                println!("  {index:<14} {n} documents");
            }
            Ok(())
        }
    }
}

fn parse_day(date: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(date, "%Y%m%d")
        .or_else(|_| NaiveDate::parse_from_str(date, "%Y-%m-%d"))
        .with_context(|| format!("--date {date}"))
}

fn write_csv(path: &PathBuf, day: NaiveDate, first: i64, rows: usize) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "order_id,customer_id,status,quantity,unit_price,discount,total,created_at,updated_at,note")?;
    let ts = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default().naive_utc();
    let cents = |c: i128| format!("{}.{:02}", c / 100, c % 100);
    for id in first..first + rows as i64 {
        let o = order(id, day);
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{}+00,{}",
            o.order_id,
            o.customer_id,
            o.status,
            o.quantity,
            cents(o.unit_price_cents),
            o.discount,
            cents(o.total_cents),
            ts(o.created_at).format("%Y-%m-%d %H:%M:%S%.6f"),
            ts(o.updated_at).format("%Y-%m-%d %H:%M:%S%.6f"),
            o.note.map(|n| format!("\"{n}\"")).unwrap_or_default()
        )?;
    }
    w.flush()?;
    Ok(())
}
