//! How fast `hamstr check` is on big pipelines: generates files of 500 and 5,000
//! realistic sources (about 23 lines each: query, paginator, incremental, filter and
//! eight mapped fields, plus child sources, aggregates, sinks and flows) and times
//! `hamstr::check::check` on each, printing the median of several runs.
//!
//! Run with `cargo bench --bench check_bench` (or `benches/check_bench.sh`). The ratio
//! of the two sizes should stay near 10: checking is meant to be linear in the file.

use std::time::{Duration, Instant};

#[path = "common/big_pipeline.rs"]
mod big_pipeline;
use big_pipeline::pipeline;

/// Time spent on the CPU by this thread, from `/proc/thread-self/schedstat` (Linux): a
/// figure that other work on a busy machine disturbs much less than the wall clock.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Median wall-clock and CPU times of `runs` calls of `f`.
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

fn median(runs: usize, mut f: impl FnMut()) -> Timing {
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (started, cpu_started) = (Instant::now(), thread_cpu());
        f();
        wall.push(started.elapsed());
        if let (Some(a), Some(b)) = (cpu_started, thread_cpu()) {
            cpu.push(b.saturating_sub(a));
        }
    }
    wall.sort();
    cpu.sort();
    Timing {
        wall: wall[runs / 2],
        cpu: (cpu.len() == runs).then(|| cpu[runs / 2]),
    }
}

/// Checks `text` once, failing unless it is clean.
fn check_clean(text: &str) {
    let checked = hamstr::check::check("bench.hmr", text, &|_| None);
    assert!(
        checked.report.diagnostics.is_empty(),
        "the generated pipeline should check clean:\n{}",
        checked
            .report
            .diagnostics
            .iter()
            .take(5)
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(checked.pipeline.is_some());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // For profilers (`perf record`, `valgrind --tool=callgrind`): one check of a file
    // of that many sources (5,000 when not a number), and nothing else.
    if let Some(n) = std::env::var_os("CHECK_BENCH_PROFILE") {
        let sources = n.to_str().and_then(|n| n.parse().ok()).unwrap_or(5_000);
        check_clean(&pipeline(sources));
        return;
    }
    let mut results = Vec::new();
    for (sources, runs) in [(500, 15), (5_000, 9)] {
        let text = pipeline(sources);
        let lines = text.lines().count();
        check_clean(&text);
        let whole = median(runs, || check_clean(&text));
        // The share of that spent reading the text into a syntax tree.
        let parse = median(runs, || {
            let (tree, errors) = hamstr::syntax::parse(&text);
            assert!(tree.is_some() && errors.is_empty());
        });
        println!(
            "check {sources:>5} sources: {lines:>6} lines, {:.1} MB: {:>6.1} ms/run wall, {} ({:>5.1} ms of it parsing), {:>7.0} lines/s [median of {runs}]",
            text.len() as f64 / 1e6,
            ms(whole.wall),
            whole
                .cpu
                .map_or("cpu n/a".to_string(), |c| format!("{:>6.1} ms cpu", ms(c))),
            ms(parse.cpu.unwrap_or(parse.wall)),
            lines as f64 / whole.cpu.unwrap_or(whole.wall).as_secs_f64()
        );
        results.push(whole.cpu.unwrap_or(whole.wall));
    }
    println!(
        "ratio 5000/500: {:.1} (linear is about 10)",
        results[1].as_secs_f64() / results[0].as_secs_f64()
    );
}
