//! Supervision of a unit: an attempt whose task panicked or failed is a reported failure
//! of the unit (log, `state`, the `--once` exit code) and, in a long run, the unit starts
//! again after a backoff — never a silently dead source.

use super::Report;
use crate::stop::Stop;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The text of a panic's payload.
pub(super) fn panic_text(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "the task was cancelled".into();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `attempt` until it ends well or `stop` fires; an attempt that fails is counted
/// against unit `name` and, unless `once`, tried again after a growing backoff. Returns
/// how many attempts failed.
pub(super) async fn supervise<F, Fut>(
    name: &str,
    stop: &Stop,
    once: bool,
    report: &Mutex<Report>,
    mut attempt: F,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0;
    loop {
        let Err(e) = attempt().await else {
            return failures;
        };
        failures += 1;
        let error = format!("internal error, the unit was stopped: {e}");
        tracing::error!(source = %name, error = %error, retry_in_s = backoff.as_secs(), "unit failed");
        if let Ok(mut r) = report.lock() {
            let t = r.sources.entry(name.to_string()).or_default();
            t.failed_runs += 1;
            t.last_error = Some(error);
        }
        if once || stop.is_stopping() {
            return failures;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.stopped() => return failures,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_unit_is_reported_and_started_again() {
        let report = Mutex::new(Report::default());
        let stop = Stop::new();
        let mut calls = 0;
        let failures = supervise("s", &stop, false, &report, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    // A task of the attempt panicked: what the join handle reports.
                    let e = tokio::spawn(async { panic!("boom {}", 7) })
                        .await
                        .unwrap_err();
                    Err(panic_text(e))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!((failures, calls), (2, 3));
        let r = report.lock().unwrap();
        assert_eq!(r.sources["s"].failed_runs, 2);
        assert!(r.sources["s"]
            .last_error
            .as_deref()
            .unwrap()
            .contains("boom 7"));
        assert!(r.failed());
    }

    #[tokio::test(start_paused = true)]
    async fn with_once_a_failure_ends_the_unit() {
        let report = Mutex::new(Report::default());
        let mut calls = 0;
        let failures = supervise("s", &Stop::new(), true, &report, || {
            calls += 1;
            async { Err("x".to_string()) }
        })
        .await;
        assert_eq!((failures, calls), (1, 1));
    }
}
