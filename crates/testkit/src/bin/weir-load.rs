//! `weir-load`: a load generator for `runner serve`'s `POST /events`.
//!
//! Closed loop (`--connections N`, no `--rate`): N clients each send a request,
//! wait for its answer, and send the next, for `--seconds`: the most the server
//! takes. Open loop (`--rate R` events per second): requests leave on a fixed
//! schedule whatever the answers do, and each latency counts from the moment
//! its request was due, so a server that falls behind shows it (no coordinated
//! omission). Every event has a unique `message_id` (`<prefix>-<n>`), so the
//! caller can count what the server stored against what it acknowledged.
//! Prints one JSON object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load POST /events of runner serve; prints throughput and latency as JSON")]
struct Args {
    /// The server, as http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// An ingest token.
    #[arg(long, default_value = "")]
    token: String,
    /// Events per request (1: one event object; more: an array).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Clients at once (closed loop), or the most requests in flight (open loop).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Events per second on a fixed schedule (open loop); none: as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// message_id prefix: unique per run.
    #[arg(long, default_value = "load")]
    prefix: String,
}

struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<String, u64>,
    acked_events: u64,
}

fn body(args: &Args, first: u64) -> String {
    let event = |n: u64| {
        json!({
            "event": if n.is_multiple_of(4) { "purchase" } else { "view" },
            "timestamp": "2025-03-23T10:00:00Z",
            "user_id": format!("u{}", n % 1000),
            "properties": { "amount": n % 100, "plan": if n.is_multiple_of(3) { "pro" } else { "free" } },
            "message_id": format!("{}-{n}", args.prefix),
        })
    };
    if args.batch == 1 {
        event(first).to_string()
    } else {
        serde_json::Value::Array((first..first + args.batch as u64).map(event).collect()).to_string()
    }
}

async fn send(client: &reqwest::Client, args: &Args, first: u64, due: Instant, tally: &Mutex<Tally>) {
    let request = client
        .post(format!("{}/events", args.url))
        .header("content-type", "application/json")
        .bearer_auth(&args.token)
        .body(body(args, first));
    let status = match request.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s.to_string()
        }
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "connection error".to_owned(),
    };
    let latency = due.elapsed().as_micros() as u64;
    let mut t = tally.lock().await;
    if status == "200" {
        t.acked_events += args.batch as u64;
        t.latencies_us.push(latency);
    }
    *t.statuses.entry(status).or_default() += 1;
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let tally = Arc::new(Mutex::new(Tally { latencies_us: Vec::new(), statuses: BTreeMap::new(), acked_events: 0 }));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    match args.rate {
        None => {
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..args.connections {
                let (client, args, tally, next) = (client.clone(), args.clone(), tally.clone(), next.clone());
                clients.spawn(async move {
                    while Instant::now() < until {
                        let first = next.fetch_add(args.batch as u64, Ordering::Relaxed);
                        send(&client, &args, first, Instant::now(), &tally).await;
                    }
                });
            }
            clients.join_all().await;
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(args.batch as f64 / rate);
            let permits = Arc::new(tokio::sync::Semaphore::new(args.connections));
            let mut tasks = tokio::task::JoinSet::new();
            let mut i = 0u64;
            loop {
                let due = started + interval.mul_f64(i as f64);
                if due >= until {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let permit = permits.clone().acquire_owned().await.expect("semaphore");
                let (client, args, tally) = (client.clone(), args.clone(), tally.clone());
                let first = i * args.batch as u64;
                tasks.spawn(async move {
                    send(&client, &args, first, due, &tally).await;
                    drop(permit);
                });
                i += 1;
                while tasks.try_join_next().is_some() {}
            }
            tasks.join_all().await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = tally.lock().await;
    t.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let l = &t.latencies_us;
        if l.is_empty() { 0.0 } else { l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1000.0 }
    };
    let out = json!({
        "batch": args.batch,
        "connections": args.connections,
        "rate_target": args.rate,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "requests": t.statuses.values().sum::<u64>(),
        "statuses": t.statuses,
        "events_acked": t.acked_events,
        "events_per_s": (t.acked_events as f64 / elapsed).round(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    });
    println!("{out}");
}
