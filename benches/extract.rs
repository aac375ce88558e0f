//! benches/extract.rs — extraction alone, in process, with no HTTP and no store: 200,000
//! records of the shape of benches/bench_api.rs (11 fields, pages of 500) made into
//! records by the source of benches/bench_jsonl.hmr, two ways:
//!   split   the page parsed with its records kept as text, each read where it lies
//!           (what a run does: record/raw.rs, record/direct.rs)
//!   tree    the page parsed into a serde_json tree, each record read from its item's
//!           tree (what a run did before)
//! Each way runs ROUNDS rounds (default 7); the best round is printed as ns/record and
//! records/s, with the ratio. CPU time of one thread: steadier than a whole run's wall
//! time on a shared machine.
//!
//! Usage: cargo bench --bench extract [-- ROUNDS] [--split-only]  (the latter for `perf`)

use hamstr::check::check;
use hamstr::nodes::extract::prepare;
use hamstr::nodes::record::raw::split;
use hamstr::nodes::record::Extractor;
use std::time::{Duration, Instant};

/// The allocator hamstr runs with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 200_000;
const PER_PAGE: usize = 500;

/// A page of records `first..first + n` as bench_api writes them.
fn page(first: usize, n: usize) -> Vec<u8> {
    const NAMES: [&str; 6] = ["Ada", "Grace", "Edsger", "Barbara", "Dennis", "Hedy"];
    const STATUSES: [&str; 3] = ["active", "pending", "closed"];
    const TIERS: [&str; 3] = ["bronze", "silver", "platinum"];
    const TAGS: [&str; 4] = ["new", "vip", "newsletter", "returning"];
    let mut body = String::from("{\"data\":[");
    for i in first..first + n {
        if i > first {
            body.push(',');
        }
        let name = NAMES[i % NAMES.len()];
        let tags: Vec<String> = (0..i % 4)
            .map(|t| format!("\"{}\"", TAGS[(i + t) % 4]))
            .collect();
        body.push_str(&format!(
            "{{\"id\":\"rec-{i:06}\",\"name\":\"{name} Lamarr\",\"email\":\"{}.lamarr{i}@example.com\",\
             \"status\":\"{}\",\"seq\":{i},\"created_at\":\"2024-01-{:02}T00:{:02}:05Z\",\
             \"updated_at\":\"2024-02-{:02}T10:27:{:02}Z\",\"amount\":\"{}.{:02}\",\"currency\":\"USD\",\
             \"customer\":{{\"id\":{},\"tier\":\"{}\"}},\"tags\":[{}]}}",
            name.to_ascii_lowercase(),
            STATUSES[i % 3],
            1 + i % 28,
            i % 60,
            1 + i % 28,
            i % 60,
            i * 7 % 100_000,
            i % 100,
            10_000 + i * 13 % 90_000,
            TIERS[i % 3],
            tags.join(",")
        ));
    }
    body.push_str(&format!(
        "],\"page\":{},\"total_pages\":400}}",
        first / PER_PAGE + 1
    ));
    body.into_bytes()
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/bench_jsonl.hmr");
    let text = std::fs::read_to_string(path).expect("benches/bench_jsonl.hmr");
    let checked = check("bench_jsonl.hmr", &text, &|_| None);
    let source = &checked
        .pipeline
        .expect("the benchmark's pipeline checks")
        .sources["records"];
    let ex = Extractor::new(source);
    let at = ex.split_at().expect("records = $.data[*] splits");
    let pages: Vec<Vec<u8>> = (0..RECORDS / PER_PAGE)
        .map(|p| page(p * PER_PAGE + 1, PER_PAGE))
        .collect();

    let run = |split_page: bool| -> (Duration, usize) {
        let mut best = Duration::MAX;
        let mut made = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            made = 0;
            for p in &pages {
                let items = if split_page {
                    let (body, raw) = split(p.clone(), &at).expect("a page");
                    ex.items(body, raw)
                } else {
                    ex.items(serde_json::from_slice(p).expect("a page"), None)
                }
                .expect("items");
                made += prepare(&ex, &items, None).len();
            }
            best = best.min(start.elapsed());
        }
        (best, made)
    };
    let split_only = std::env::args().any(|a| a == "--split-only");
    let (by_text, n_text) = run(true);
    let (tree, n_tree) = if split_only {
        (by_text, RECORDS)
    } else {
        run(false)
    };
    assert_eq!((n_tree, n_text), (RECORDS, RECORDS), "every record made");
    let per = |d: Duration| d.as_nanos() as f64 / RECORDS as f64;
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    println!("extraction of {RECORDS} records, best of {rounds} rounds");
    println!(
        "  tree    {:7.0} ns/record  {:9.0} records/s",
        per(tree),
        rate(tree)
    );
    println!(
        "  split   {:7.0} ns/record  {:9.0} records/s",
        per(by_text),
        rate(by_text)
    );
    println!(
        "  split / tree  {:.2}x",
        tree.as_secs_f64() / by_text.as_secs_f64()
    );
}
