//! Feedback while a run goes: a progress line per running pipeline (rows and
//! rows/s) on a terminal, and log lines that print above the bars.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use weir_engine::{Observer, RunEvent};

/// The bars of the pipelines running now. Hidden when stderr is no terminal.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
    style: ProgressStyle,
}

impl Progress {
    pub fn new(visible: bool) -> Self {
        let target = if visible { ProgressDrawTarget::stderr_with_hz(4) } else { ProgressDrawTarget::hidden() };
        let style = ProgressStyle::with_template("{spinner} {prefix:<24} {human_pos:>12} rows  {rate:>14}  {elapsed}")
            .map(|s| {
                s.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} rows/s", HumanCount(state.per_sec() as u64));
                })
            })
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Self { multi: MultiProgress::with_draw_target(target), bars: Arc::default(), style }
    }

    pub fn observer(&self) -> Observer {
        let this = self.clone();
        Arc::new(move |event| this.on(event))
    }

    fn on(&self, event: RunEvent<'_>) {
        let Ok(mut bars) = self.bars.lock() else { return };
        match event {
            RunEvent::Started { pipeline, attempt } => {
                let bar = bars.entry(pipeline.to_owned()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::no_length().with_style(self.style.clone()));
                    bar.enable_steady_tick(Duration::from_millis(250));
                    bar
                });
                let prefix = if attempt > 1 { format!("{pipeline} (attempt {attempt})") } else { pipeline.to_owned() };
                bar.set_prefix(prefix);
                bar.reset();
            }
            RunEvent::Rows { pipeline, rows_read } => {
                if let Some(bar) = bars.get(pipeline) {
                    bar.set_position(rows_read);
                }
            }
            RunEvent::Finished { report } => {
                if let Some(bar) = bars.remove(&report.name) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
        }
    }

    /// A writer for log lines that keeps them above the bars.
    pub fn writer(&self) -> LogWriter {
        LogWriter { multi: self.multi.clone() }
    }
}

/// Writes to stderr, pausing the bars while it does.
pub struct LogWriter {
    multi: MultiProgress,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.multi.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
