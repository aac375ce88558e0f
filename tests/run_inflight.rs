//! Pages in flight (issue 11): where the paginator names the next requests without
//! their bodies (`page` with `total_pages`, `offset` with `total`), up to the service's
//! `concurrency` pages are requested together, and the records are still committed in
//! page order, each once. A page failing mid-run, a stop, a 429 and `max_pages` leave
//! what a run fetching one page at a time would. Against `SlowPages`, which holds every
//! page for a while and counts the requests it holds at once.

mod support;

use std::time::Duration;

use support::cli::{assert_contains, id_range, ids, service, Pipeline, FIELDS};
use support::slow_pages::SlowPages;
use support::wait_until;

/// One source `src` of service `api` (with `concurrency` and quick retries) reading
/// `get` with `paginate`, into `out/src.jsonl`.
fn pipeline(url: &str, concurrency: u32, get: &str, paginate: &str) -> Pipeline {
    let svc = service(url, &format!("  concurrency = {concurrency}"));
    Pipeline::new(&format!(
        "{svc}\nsource src from api {{\n  schedule = once\n  get = \"{get}\"\n  paginate = {paginate}\n  records = $.data[*]\n{FIELDS}\n}}\n\nsink lines = jsonl(\"out/src.jsonl\")\nflow src -> lines\n"
    ))
}

const PAGES: &str = "page(size_param = \"per_page\", size = 5, total_pages = $.total_pages)";
const OFFSETS: &str = "offset(limit_param = \"limit\", limit = 5, total = $.total)";

/// The page numbers asked for, sorted, each once.
fn distinct(mut asked: Vec<u64>) -> Vec<u64> {
    asked.sort_unstable();
    asked.dedup();
    asked
}

#[test]
fn pages_are_in_flight_together_and_committed_in_order() {
    let api = SlowPages::start(60, Duration::from_millis(150));
    let p = pipeline(&api.url(), 4, "/pages", PAGES);
    p.run_ok();
    let most = api.most_at_once();
    assert!(
        (2..=4).contains(&most),
        "up to `concurrency` = 4 pages in flight, more than one: {most}"
    );
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 60));
    // No page asked for twice, none past the last.
    let asked = api.asked();
    assert_eq!(asked.len(), 12, "{asked:?}");
    assert_eq!(distinct(asked), (1..=12).collect::<Vec<_>>());
    // A second run finds nothing new.
    p.run_ok();
    assert_eq!(p.jsonl("out/src.jsonl").len(), 60);
}

#[test]
fn offsets_with_a_total_are_in_flight_together() {
    let api = SlowPages::start(42, Duration::from_millis(150));
    let p = pipeline(&api.url(), 3, "/offsets", OFFSETS);
    p.run_ok();
    let most = api.most_at_once();
    assert!((2..=3).contains(&most), "{most}");
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 42));
    assert_eq!(
        distinct(api.asked()),
        (0..9).map(|k| k * 5).collect::<Vec<_>>()
    );
}

#[test]
fn concurrency_one_asks_for_one_page_at_a_time() {
    let api = SlowPages::start(30, Duration::from_millis(50));
    let p = pipeline(&api.url(), 1, "/pages", PAGES);
    p.run_ok();
    assert_eq!(api.most_at_once(), 1);
    assert_eq!(api.asked(), (1..=6).collect::<Vec<_>>());
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 30));
}

/// Page 3 of 6 answers 500 past every retry while pages 4 and 5 are in flight and fine:
/// the run fails at page 3 as a sequential one would, with pages 1 and 2 committed and
/// nothing after them; the next run collects the rest, every record exactly once.
#[test]
fn a_page_failing_mid_run_commits_nothing_after_it() {
    let api = SlowPages::start(30, Duration::from_millis(100));
    api.fail_page(3, 500, usize::MAX);
    let p = pipeline(&api.url(), 4, "/pages", PAGES);
    let stderr = p.run_failing();
    assert_contains(&stderr, "HTTP 500");
    assert_contains(&stderr, "page=3");
    let asked = api.asked();
    assert!(
        asked.contains(&4),
        "page 4 was in flight beside page 3: {asked:?}"
    );
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 10));
    assert_contains(&p.state(), "HTTP 500");

    api.heal();
    p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 30));
}

/// A 429 with `Retry-After` on page 2 while pages 3 to 5 are in flight: page 2 is asked
/// again after the pause and the records still arrive in order, once each.
#[test]
fn a_429_in_flight_is_waited_out_in_order() {
    let api = SlowPages::start(40, Duration::from_millis(50));
    api.fail_page(2, 429, 1);
    let p = pipeline(&api.url(), 4, "/pages", PAGES);
    p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 40));
    let asked = api.asked();
    assert_eq!(asked.iter().filter(|&&n| n == 2).count(), 2, "{asked:?}");
    assert!(api.most_at_once() > 1);
}

/// Page 3 comes back cut short (not JSON) while it waits its turn in flight: it is asked
/// for again when its turn comes, and every record arrives once, in order.
#[test]
fn a_page_in_flight_that_is_not_json_is_asked_for_again() {
    let api = SlowPages::start(40, Duration::from_millis(50));
    api.fail_page(3, 200, 1);
    let p = pipeline(&api.url(), 4, "/pages", PAGES);
    p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 40));
    let asked = api.asked();
    assert_eq!(asked.iter().filter(|&&n| n == 3).count(), 2, "{asked:?}");
    assert!(api.most_at_once() > 1);
}

#[test]
fn max_pages_bounds_the_pages_in_flight() {
    let api = SlowPages::start(60, Duration::from_millis(150));
    let paginate =
        "page(size_param = \"per_page\", size = 5, total_pages = $.total_pages, max_pages = 3)";
    let p = pipeline(&api.url(), 4, "/pages", paginate);
    let stderr = p.run_ok();
    assert_contains(&stderr, "max_pages");
    assert_eq!(distinct(api.asked()), [1, 2, 3]);
    // Pages 2 and 3 together, nothing after them.
    assert_eq!(api.most_at_once(), 2);
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 15));
}

/// SIGTERM while pages are in flight: what was committed is a prefix of the listing in
/// page order; the next run collects the rest, every record exactly once.
#[test]
fn a_stop_with_pages_in_flight_leaves_a_prefix() {
    let api = SlowPages::start(100, Duration::from_millis(200));
    let p = pipeline(&api.url(), 4, "/pages", PAGES);
    let mut run = p.spawn_run(&["--once"]);
    assert!(wait_until(
        || api.asked().len() >= 6,
        Duration::from_secs(30)
    ));
    assert!(run.terminate(Duration::from_secs(30)).is_some());
    assert!(api.most_at_once() > 1);
    let got = ids(&p.jsonl("out/src.jsonl"));
    assert!(got.len() < 100, "stopped before the end: {}", got.len());
    assert_eq!(got, id_range(1, got.len() as u64));
    p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 100));
}

#[test]
fn records_made_as_their_pages_arrive_are_those_made_in_turn() {
    // Pages in flight are made into records as they arrive, in their own tasks; one
    // page at a time, each in the poller's turn. The files must be the same, byte for
    // byte, and so must the state's counts.
    let api = SlowPages::start(57, Duration::from_millis(20));
    let ahead = pipeline(&api.url(), 4, "/pages", PAGES);
    let in_turn = pipeline(&api.url(), 1, "/pages", PAGES);
    ahead.run_ok();
    in_turn.run_ok();
    let text = |p: &Pipeline| std::fs::read_to_string(p.path("out/src.jsonl")).unwrap();
    assert_eq!(ahead.jsonl("out/src.jsonl").len(), 57);
    assert_eq!(text(&ahead), text(&in_turn));
    let counts = |p: &Pipeline| {
        let state = p.state();
        state
            .lines()
            .filter(|l| l.contains("records") || l.contains("emitted"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&ahead), counts(&in_turn));
}
