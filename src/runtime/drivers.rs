//! What drives a source: its schedule (`every`, `cron`, `once`) or, for a child source,
//! the wake-ups of its parent; and the per-run report.

use super::{schedule, Report};
use crate::nodes::extract::{Outputs, Wakes};
use crate::nodes::source::{Poller, RunOutcome};
use crate::stop::Stop;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// The most distinct warnings a source's report keeps.
const MAX_WARNINGS: usize = 20;

/// How many scheduled runs go at once, over every source: thousands of tenants due in
/// the same second queue here instead of opening thousands of connections.
const RUNS_AT_ONCE: usize = 128;

static RUNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RUNS_AT_ONCE);

fn record(report: &Mutex<Report>, name: &str, outcome: &RunOutcome) -> super::SourceTotals {
    let s = &outcome.summary;
    match &outcome.error {
        Some(e) => {
            tracing::error!(source = %name, pages = s.pages, records = s.records, emitted = s.emitted, rejected = s.rejected, error = %e, "run failed")
        }
        None => {
            tracing::info!(source = %name, pages = s.pages, records = s.records, emitted = s.emitted, rejected = s.rejected, "run finished")
        }
    }
    if let Ok(mut r) = report.lock() {
        let t = r.sources.entry(name.to_string()).or_default();
        t.runs += 1;
        t.pages += s.pages;
        t.records += s.records;
        t.emitted += s.emitted;
        t.rejected += s.rejected;
        // A long run repeats the same warnings run after run: each is kept once, and
        // only the first few, so the report does not grow for as long as it runs.
        for w in &outcome.warnings {
            if t.warnings.len() < MAX_WARNINGS && !t.warnings.contains(w) {
                t.warnings.push(w.clone());
            }
        }
        if outcome.error.is_some() {
            t.failed_runs += 1;
            t.last_error = outcome.error.clone();
        }
        return t.clone();
    }
    super::SourceTotals::default()
}

/// A run in the metrics (when they are on): its counts, and the watermark's lag read
/// back from the store.
fn count(poller: &Poller, outcome: &RunOutcome) {
    if !crate::metrics::enabled() {
        return;
    }
    let s = &outcome.summary;
    let name = &poller.src.name;
    let lag = match outcome.error {
        None => poller
            .store
            .meta(name)
            .ok()
            .and_then(|m| crate::metrics::lag_of(m.watermark.as_ref())),
        Some(_) => None,
    };
    let counts = crate::metrics::RunCounts {
        pages: s.pages,
        records: s.records,
        emitted: s.emitted,
        rejected: s.rejected,
    };
    crate::metrics::source_run(name, counts, outcome.error.is_some(), lag);
}

fn children_of(outputs: &watch::Receiver<Arc<Outputs>>) -> Vec<String> {
    outputs.borrow().children.clone()
}

/// Waits until every child (and their children) has worked through its queue.
async fn drain_children(children: &[String], wakes: &Wakes) {
    for child in children {
        let wake = wakes.lock().ok().and_then(|w| w.get(child).cloned());
        if let Some(wake) = wake {
            let (tx, rx) = oneshot::channel();
            if wake.send(Some(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

pub async fn scheduled_driver(
    poller: Arc<Poller>,
    outputs: watch::Receiver<Arc<Outputs>>,
    wakes: Wakes,
    report: Arc<Mutex<Report>>,
    stop: Stop,
    once: bool,
) {
    let name = poller.src.name.clone();
    let mut next_start = tokio::time::Instant::now();
    // `every` and `once` run at start; `cron` only at its times (but `--once` runs
    // every source one time, now).
    if !once && matches!(poller.src.schedule, crate::check::Schedule::Cron(_)) {
        let Some(first) = schedule::next_after(&poller.src.schedule, next_start) else {
            return;
        };
        super::progress::waiting(&name, first.saturating_duration_since(next_start));
        tokio::select! {
            _ = tokio::time::sleep_until(first) => {}
            _ = stop.stopped() => return,
        }
        if stop.is_stopping() {
            return;
        }
        next_start = first;
    }
    let mut first = true;
    loop {
        let started = tokio::time::Instant::now();
        super::progress::running(&name);
        let outcome = {
            let _turn = tokio::select! {
                t = RUNS.acquire() => t.ok(),
                _ = stop.stopped() => break,
            };
            // Boxed: a run's future is large, and an idle unit between its runs
            // need not hold room for it (thousands of tenants each hold a driver).
            Box::pin(poller.run(None)).await
        };
        let totals = record(&report, &name, &outcome);
        count(&poller, &outcome);
        let children = children_of(&outputs);
        if once {
            drain_children(&children, &wakes).await;
            break;
        }
        // Children retry their failed requests after every parent run.
        if let Ok(w) = wakes.lock() {
            for c in &children {
                if let Some(wake) = w.get(c) {
                    let _ = wake.try_send(None);
                }
            }
        }
        // The tenants of an `every` source run at start (at most RUNS_AT_ONCE at a
        // time), then each waits an extra offset of its own within the interval, so
        // that from the second round on they are spread over it (spec §13) instead of
        // all due in the same second.
        let spread = match (&poller.src.schedule, &poller.src.tenant, first) {
            (crate::check::Schedule::Every { ms }, Some(_), true) => schedule::spread(&name, *ms),
            _ => std::time::Duration::ZERO,
        };
        first = false;
        next_start = match schedule::next_after(&poller.src.schedule, started.max(next_start)) {
            Some(t) => t + spread,
            None => {
                super::progress::finished(&name, &totals, None);
                break;
            }
        };
        super::progress::finished(
            &name,
            &totals,
            Some(next_start.saturating_duration_since(tokio::time::Instant::now())),
        );
        tokio::select! {
            _ = tokio::time::sleep_until(next_start) => {}
            _ = stop.stopped() => break,
        }
        if stop.is_stopping() {
            break;
        }
    }
    // A source that also receives keeps taking events after its last poll (`once`).
    if !once && poller.src.receive.is_some() {
        stop.stopped().await;
    }
}

pub async fn child_driver(
    poller: Arc<Poller>,
    outputs: watch::Receiver<Arc<Outputs>>,
    wakes: Wakes,
    mut wake: mpsc::Receiver<Option<oneshot::Sender<()>>>,
    report: Arc<Mutex<Report>>,
    stop: Stop,
) {
    let name = poller.src.name.clone();
    loop {
        let reply = tokio::select! {
            r = wake.recv() => match r {
                Some(r) => r,
                None => break,
            },
            _ = stop.stopped() => break,
        };
        // Coalesce wake-ups that piled up while a queue was being worked.
        let mut replies: Vec<oneshot::Sender<()>> = reply.into_iter().collect();
        while let Ok(more) = wake.try_recv() {
            replies.extend(more);
        }
        let queue = match poller.store.child_queue(&name) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(source = %name, error = %e, "cannot read child requests");
                Vec::new()
            }
        };
        for (key, parent) in queue {
            if stop.is_stopping() {
                break;
            }
            super::progress::running(&name);
            let outcome = Box::pin(poller.run(Some((key, parent)))).await;
            let totals = record(&report, &name, &outcome);
            count(&poller, &outcome);
            super::progress::finished(&name, &totals, None);
        }
        if !replies.is_empty() {
            drain_children(&children_of(&outputs), &wakes).await;
        }
        for r in replies {
            let _ = r.send(());
        }
    }
}

/// A source that only receives events: nothing to poll. It keeps the poller (the
/// extract node's input) until the unit stops, so events can reach the extract node.
pub async fn push_driver(poller: Arc<Poller>, stop: Stop, once: bool) {
    if !once {
        stop.stopped().await;
    }
    drop(poller);
}
