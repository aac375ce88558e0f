//! The background-run harness does what the other tests rely on: `RunningHamstr` kills
//! its process on drop (also when a test panics), stops it with SIGTERM within a limit,
//! and finds stderr lines in order; `wait_until` polls until its condition holds. Plain
//! `sh` and `sleep` stand in for hamstr, so each behaviour is shown on its own.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{wait_until, RunningHamstr};

fn sh(script: &str) -> RunningHamstr {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    RunningHamstr::start(c)
}

/// Whether a process with this id still exists (a zombie counts: it was not reaped).
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn dropping_the_handle_kills_and_reaps_the_process() {
    let run = sh("exec sleep 60");
    let pid = run.id();
    assert!(exists(pid));
    drop(run);
    assert!(!exists(pid), "process {pid} outlived its handle");
}

#[test]
fn a_panicking_test_leaves_no_process_behind() {
    let mut pid = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let run = sh("exec sleep 60");
        pid = Some(run.id());
        panic!("a failing assertion");
    }));
    assert!(result.is_err());
    let pid = pid.expect("started");
    assert!(!exists(pid), "process {pid} outlived a panicking test");
}

#[test]
fn terminate_returns_the_exit_status_or_kills_after_the_limit() {
    let ready = |l: &str| l == "ready";
    let limit = Duration::from_secs(20);
    // Each says "ready" once its trap is set: a SIGTERM before that would kill it.
    let mut polite = sh("trap 'exit 7' TERM; echo ready >&2; while :; do sleep 0.05; done");
    polite.wait_for_stderr_line("the trap", ready, limit);
    let status = polite.terminate(limit);
    assert_eq!(status.and_then(|s| s.code()), Some(7));

    // SIGTERM ignored (and kept ignored across `exec`): killed once the limit passes.
    let mut stubborn = sh("trap '' TERM; echo ready >&2; exec sleep 60");
    stubborn.wait_for_stderr_line("the trap", ready, limit);
    let pid = stubborn.id();
    assert_eq!(stubborn.terminate(Duration::from_millis(300)), None);
    assert!(!exists(pid), "still running after the limit");
}

#[test]
fn stderr_lines_are_found_in_order_and_kept() {
    let mut run = sh(
        "echo 'starting' >&2; echo 'reloaded: one' >&2; echo 'reloaded: two' >&2; exec sleep 60",
    );
    let is_reload = |l: &str| l.starts_with("reloaded:");
    let limit = Duration::from_secs(20);
    assert_eq!(
        run.wait_for_stderr_line("a reload", is_reload, limit),
        "reloaded: one"
    );
    assert_eq!(
        run.wait_for_stderr_line("a second reload", is_reload, limit),
        "reloaded: two"
    );
    assert_eq!(run.stderr(), "starting\nreloaded: one\nreloaded: two");

    // No third one: a timeout, saying what it waited for and showing the stderr.
    let third = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run.wait_for_stderr_line("a third reload", is_reload, Duration::from_millis(200))
    }));
    let message = *third
        .expect_err("no third line")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains("a third reload"), "{message}");
    assert!(message.contains("reloaded: two"), "{message}");
}

#[test]
fn waiting_for_a_line_ends_when_the_process_closes_stderr() {
    let mut run = sh("echo 'bye' >&2");
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run.wait_for_stderr_line(
            "a reload",
            |l| l.contains("reloaded"),
            Duration::from_secs(60),
        )
    }));
    let message = *waited
        .expect_err("never printed")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("closed stderr"), "{message}");
    assert!(message.contains("bye"), "{message}");
}

#[test]
fn wait_until_polls_until_the_condition_holds_or_the_limit_passes() {
    let mut calls = 0;
    assert!(wait_until(
        || {
            calls += 1;
            calls == 3
        },
        Duration::from_secs(20)
    ));
    assert_eq!(calls, 3);
    assert!(!wait_until(|| false, Duration::from_millis(50)));
}
