//! Scheduler mode (`runner schedule`): run pipelines when they are due, until
//! cancelled. A pipeline with a `schedule` (a cron expression, UTC) is due when
//! its cron fires; the others at each `--every` interval.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use weir_core::{Error, Result, RunDate, RunReport};

use crate::{Engine, RunConfig};

/// The scheduler reads the controller table at least this often, so that new
/// or changed schedules take effect.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// A `controller.schedule` cron expression.
#[derive(Debug, Clone)]
pub struct Cron(cron::Schedule);

impl Cron {
    /// Five fields (minute hour day-of-month month day-of-week, as crontab), or
    /// six or seven with seconds first (and a year last).
    pub fn parse(expr: &str) -> Result<Self> {
        let expr = expr.trim();
        let full = match expr.split_whitespace().count() {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            _ => return Err(Self::invalid(expr, "it has neither 5 fields nor 6 or 7")),
        };
        cron::Schedule::from_str(&full).map(Cron).map_err(|e| Self::invalid(expr, &e.to_string()))
    }

    fn invalid(expr: &str, why: &str) -> Error {
        Error::user(format!(
            "schedule `{expr}` is not a cron expression ({why}); write minute hour day month weekday, as \
             `0 2 * * *` (every day at 02:00 UTC), or six fields with seconds first"
        ))
    }

    /// The first time it fires after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.after(&t).next()
    }
}

impl Engine {
    /// Run what is due until `cancel`: pipelines with a `schedule` when their
    /// cron fires (once, if several firings passed during a long run), the
    /// others now and at each `every` (none without it; missed intervals are
    /// not made up). Each run is for the current date (UTC) and goes to
    /// `on_run`. A failing pipeline, or a run that could not start, fails that
    /// run only. Returns `true` if it stopped between runs, `false` if it had
    /// to cancel one.
    pub async fn schedule(
        &self,
        every: Option<Duration>,
        template: &RunConfig,
        cancel: CancellationToken,
        mut on_run: impl FnMut(&RunReport),
    ) -> bool {
        let mut next_tick = every.map(|_| Instant::now());
        let mut since = Utc::now();
        let mut reported: BTreeSet<String> = BTreeSet::new();
        info!(every = every.map(|e| humantime::format_duration(e).to_string()), "scheduler started");
        loop {
            let now = Utc::now();
            let tick = next_tick.is_some_and(|t| t <= Instant::now());
            let (due, next_cron) = match self.due(template, tick, since, now, &mut reported).await {
                Ok(due) => due,
                Err(e) => {
                    error!(error = %self.redactor().redact(e.message()), "could not read the controller table; trying again");
                    (Vec::new(), None)
                }
            };
            since = now;
            if let (Some(t), Some(every)) = (next_tick.as_mut(), every) {
                let now = Instant::now();
                while *t <= now {
                    *t += every;
                }
            }
            if !due.is_empty() {
                let config = RunConfig { run_date: RunDate::today_utc(), pipelines: due, ..template.clone() };
                match self.run(&config, cancel.clone()).await {
                    Ok(report) => {
                        on_run(&report);
                        if report.cancelled {
                            return false;
                        }
                    }
                    Err(e) => error!(error = %self.redactor().redact(e.message()), "run not started"),
                }
            }
            let mut wake = Instant::now() + RELOAD_EVERY;
            if let Some(t) = next_tick {
                wake = wake.min(t);
            }
            if let Some(at) = next_cron {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                wake = wake.min(Instant::now() + wait);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = cancel.cancelled() => {
                    info!("scheduler stopped");
                    return true;
                }
            }
        }
    }

    /// The pipelines due now, and when the next cron fires.
    async fn due(
        &self,
        template: &RunConfig,
        tick: bool,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        reported: &mut BTreeSet<String>,
    ) -> Result<(Vec<String>, Option<DateTime<Utc>>)> {
        let named = !template.pipelines.is_empty();
        let rows = self.meta().pipelines(&template.pipelines, false).await?;
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for row in rows.iter().filter(|r| r.active || named) {
            match row.schedule.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None if tick => due.push(row.name.clone()),
                None => {}
                Some(expr) => match Cron::parse(expr) {
                    Ok(cron) => {
                        if cron.next_after(since).is_some_and(|t| t <= now) {
                            due.push(row.name.clone());
                        }
                        next = match (next, cron.next_after(now)) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    // Once per pipeline and expression: `runner run` fails the pipeline with it.
                    Err(e) if reported.insert(format!("{}\n{expr}", row.name)) => {
                        warn!(pipeline = %row.name, error = %e, "pipeline not scheduled");
                    }
                    Err(_) => {}
                },
            }
        }
        Ok((due, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_are_crontab_six_have_seconds() {
        let t = DateTime::parse_from_rfc3339("2025-03-23T01:59:30Z").unwrap().with_timezone(&Utc);
        let daily = Cron::parse("0 2 * * *").unwrap();
        assert_eq!(daily.next_after(t).unwrap().to_rfc3339(), "2025-03-23T02:00:00+00:00");
        let often = Cron::parse("*/20 * * * * *").unwrap();
        assert_eq!(often.next_after(t).unwrap().to_rfc3339(), "2025-03-23T01:59:40+00:00");
        let err = Cron::parse("every day").unwrap_err().to_string();
        assert!(err.starts_with("schedule `every day` is not a cron expression"), "{err}");
        assert!(Cron::parse("61 * * * *").is_err());
    }
}
