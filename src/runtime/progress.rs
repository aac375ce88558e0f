//! A live line per source on a terminal (indicatif): runs, pages, records, new,
//! rejected, and when the next run starts. Off unless the command line turns it on.

use super::SourceTotals;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

struct Lines {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

static LINES: OnceLock<Lines> = OnceLock::new();

/// Turns the live lines on (for a terminal).
pub fn enable() {
    let _ = LINES.set(Lines {
        multi: MultiProgress::new(),
        bars: Mutex::new(BTreeMap::new()),
    });
}

pub fn enabled() -> bool {
    LINES.get().is_some()
}

fn bar(name: &str) -> Option<ProgressBar> {
    let lines = LINES.get()?;
    let mut bars = lines.bars.lock().ok()?;
    Some(
        bars.entry(name.to_string())
            .or_insert_with(|| {
                let bar = lines.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            })
            .clone(),
    )
}

pub fn running(name: &str) {
    if let Some(bar) = bar(name) {
        bar.set_message(format!("{name}: fetching…"));
    }
}

/// A source that has not run yet and waits for its first time.
pub fn waiting(name: &str, first: Duration) {
    if let Some(bar) = bar(name) {
        bar.set_message(format!("{name}: first run in {}s", first.as_secs()));
    }
}

pub fn finished(name: &str, t: &SourceTotals, next: Option<Duration>) {
    let Some(bar) = bar(name) else { return };
    let next = match next {
        Some(d) if d.as_secs() >= 1 => format!(" · next run in {}s", d.as_secs()),
        Some(_) => " · next run now".to_string(),
        None => String::new(),
    };
    let failed = t
        .last_error
        .as_ref()
        .map(|e| format!(" · last error: {}", crate::nodes::net::api_text(e, 80)))
        .unwrap_or_default();
    bar.set_message(format!(
        "{name}: {} runs · {} pages · {} records · {} new · {} rejected{next}{failed}",
        t.runs, t.pages, t.records, t.emitted, t.rejected
    ));
}
