//! Progress of bulk jobs: a bar with rate, ETA and failures on a terminal; a line every few seconds in a log.

use crate::dispatch::bulk::{BulkProgress, BulkReporter, ItemStatus};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Chooses the display by whether stderr is a terminal.
pub struct StderrReporter;

/// The bar of the job running now, if any: a pause is shown on it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);
/// When a log last got a line about a pause.
static LAST_PAUSE_LINE: Mutex<Option<Instant>> = Mutex::new(None);

impl BulkReporter for StderrReporter {
    fn paused(&self, profile: &str, wait: Duration, why: &str) {
        let what = format!("{profile}: waiting {:.0} s, as the service asked ({why})", wait.as_secs_f64().ceil());
        tracing::info!("{what}");
        match ACTIVE.lock().as_ref() {
            Some(bar) => bar.set_prefix(what),
            None => {
                // In a log, a storm of 429s is a line every few seconds, not a line each.
                let mut last = LAST_PAUSE_LINE.lock();
                if last.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                    *last = Some(Instant::now());
                    super::note(&what);
                }
            }
        }
    }

    fn note(&self, text: &str) {
        super::note(text);
    }

    fn begin(&self, label: &str, total: usize) -> Box<dyn BulkProgress> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {rate} ETA {eta} {prefix}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    })
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            *ACTIVE.lock() = Some(bar.clone());
            bar
        });
        Box::new(Progress {
            label: label.to_string(),
            total,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            bar,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        })
    }
}

struct Progress {
    label: String,
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Mutex<Instant>,
}

/// How often a log gets a progress line.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl BulkProgress for Progress {
    fn advance(&self, status: ItemStatus) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = self.failed.fetch_add(usize::from(status == ItemStatus::Failed), Ordering::Relaxed)
            + usize::from(status == ItemStatus::Failed);
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                // Work goes on: a pause shown there is over.
                bar.set_prefix(if failed > 0 { format!("failed: {failed}") } else { String::new() });
            }
            None => {
                let mut last = self.last_line.lock();
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
                    super::note(&format!("{}: {done}/{} done, {rate:.0}/s, {failed} failed", self.label, self.total));
                }
            }
        }
    }

    fn finish(&self, label: &str, counts: &[(ItemStatus, usize)], elapsed: Duration) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            *ACTIVE.lock() = None;
            // On a terminal the summary is a small table; in a log, the one line below says the same.
            let rows: Vec<serde_json::Value> =
                counts.iter().map(|(s, n)| serde_json::json!({"status": s.as_str(), "items": n})).collect();
            super::note(&super::table::render(&serde_json::Value::Array(rows)));
        }
        let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{} {n}", s.as_str())).collect();
        let items = if self.total == 1 { "item" } else { "items" };
        super::note(&format!(
            "{label}: {} {items} in {:.1} s: {}",
            self.total,
            elapsed.as_secs_f64(),
            parts.join(", ")
        ));
    }
}

/// No display at all (tests of the library, benchmarks).
pub struct SilentReporter;

impl BulkReporter for SilentReporter {
    fn begin(&self, _label: &str, _total: usize) -> Box<dyn BulkProgress> {
        Box::new(Silent)
    }
}

struct Silent;

impl BulkProgress for Silent {
    fn advance(&self, _status: ItemStatus) {}
    fn finish(&self, _label: &str, _counts: &[(ItemStatus, usize)], _elapsed: Duration) {}
}
