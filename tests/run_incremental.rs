//! Incremental collection across runs of `hamstr run --once` (spec §5.2): only new or
//! changed keys are emitted, the watermark `param` and `start`, ties on the cursor,
//! newest-first early stop and interrupted runs, `where`, and rejected records.

mod support;

use serde_json::{json, Value};
use support::cli::{assert_contains, id_range, ids, one_source, sorted_ids, Pipeline};
use support::{records, wait_until, Fault, Order, Paging, TestApi};

const PATH: &str = "/items";
const LINES: &str = "out/src.jsonl";

fn api_with(recs: Vec<Value>, paging: Paging) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records(PATH, recs);
    api.serve(PATH, paging);
    api
}

/// The lines a run added to the jsonl sink, given how many there were before.
fn new_lines(p: &Pipeline, before: usize) -> Vec<Value> {
    p.jsonl(LINES)[before..].to_vec()
}

/// The `since` query value of each request to `/items`.
fn since_values(api: &TestApi) -> Vec<Option<String>> {
    api.requests_to(PATH)
        .iter()
        .map(|r| r.query_value("since").map(str::to_string))
        .collect()
}

const PAGED: &str = "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 5)\n  records = $.data[*]";

#[test]
fn an_unchanged_api_emits_nothing_the_second_time() {
    let api = api_with(records::make(12), Paging::page(5));
    let p = Pipeline::new(&one_source(&api.url(), PAGED));
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 12));
    let summary = p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 12, "no new lines");
    assert_contains(&summary, "0 new");
    assert_eq!(api.hits(PATH), 6, "both runs still read every page");
}

#[test]
fn only_added_and_changed_records_are_emitted() {
    let api = api_with(records::make(12), Paging::page(5));
    let p = Pipeline::new(&one_source(&api.url(), PAGED));
    p.run_ok();
    api.push_records(PATH, records::range(13, 5));
    let third = records::record(3);
    api.upsert_record(
        PATH,
        "id",
        records::changed(&third, "amount", json!("99.99")),
    );
    p.run_ok();
    let added = new_lines(&p, 12);
    let mut expected = vec!["r00003".to_string()];
    expected.extend(id_range(13, 5));
    assert_eq!(sorted_ids(&added), expected);
    let changed = added.iter().find(|r| r["id"] == "r00003").unwrap();
    assert_eq!(changed["amount"], json!("99.99"));
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 18, "a third run emits nothing");
}

#[test]
fn the_watermark_param_is_absent_first_then_rfc3339() {
    let api = api_with(records::make(12), Paging::page(5));
    let p = Pipeline::new(&one_source(
        &api.url(),
        &format!("{PAGED}\n  incremental {{ cursor = created_at  param = \"since\" }}"),
    ));
    p.run_ok();
    assert_eq!(
        since_values(&api),
        vec![None, None, None],
        "no watermark, no start"
    );
    api.clear_requests();
    p.run_ok();
    let sent = since_values(&api);
    assert!(!sent.is_empty());
    let expected = records::created_at(12);
    for s in &sent {
        let s = s
            .as_deref()
            .expect("every built page carries the watermark");
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(s, expected);
    }
    assert_contains(&p.state(), &expected);
}

#[test]
fn the_watermark_param_starts_at_start() {
    let api = api_with(records::make(4), Paging::page(5));
    let p = Pipeline::new(&one_source(
        &api.url(),
        &format!("{PAGED}\n  incremental {{ cursor = created_at  param = \"since\"  start = \"2025-06-01T00:00:00Z\" }}"),
    ));
    p.run_ok();
    assert_eq!(
        since_values(&api),
        vec![Some("2025-06-01T00:00:00Z".to_string())]
    );
    assert_eq!(p.jsonl(LINES).len(), 4);
}

#[test]
fn state_shows_start_while_nothing_newer_was_collected() {
    let api = api_with(records::make(3), Paging::none());
    let start = records::created_at(9);
    let p = Pipeline::new(&one_source(
        &api.url(),
        &format!("get = \"/items\"\n  incremental {{ cursor = created_at  start = \"{start}\" }}"),
    ));
    p.run_ok();
    assert!(p.jsonl(LINES).is_empty());
    assert_contains(
        &p.state(),
        &format!("watermark:    \"{start}\" (its start)"),
    );
}

#[test]
fn records_older_than_start_are_not_new() {
    // the API ignores the parameter: `start` is still the initial watermark
    let api = api_with(records::make(9), Paging::none());
    let start = records::created_at(7);
    let p = Pipeline::new(&one_source(
        &api.url(),
        &format!("get = \"/items\"\n  incremental {{ cursor = created_at  start = \"{start}\" }}"),
    ));
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(7, 3));
}

#[test]
fn ties_on_the_watermark_are_collected_once_across_pages() {
    let stamp = records::created_at(1);
    let tie = |seq: u64| {
        let mut r = records::record(seq);
        r["created_at"] = json!(stamp);
        r
    };
    // 12 records with one timestamp, split over pages of 5
    let api = api_with((1..=12).map(tie).collect(), Paging::page(5));
    api.set_since_filter(PATH, "since", "created_at");
    let p = Pipeline::new(&one_source(
        &api.url(),
        &format!("{PAGED}\n  incremental {{ cursor = created_at  param = \"since\" }}"),
    ));
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 12));

    // the API lists all of them again (since >= watermark): nothing is new
    p.run_ok();
    assert_eq!(since_values(&api)[3..], vec![Some(stamp.clone()); 3]);
    assert_eq!(p.jsonl(LINES).len(), 12);

    // more ties and two newer records: exactly those five
    api.push_records(PATH, (13..=15).map(tie).collect());
    let later = records::created_at(30);
    for seq in [16, 17] {
        let mut r = records::record(seq);
        r["created_at"] = json!(later);
        api.push_records(PATH, vec![r]);
    }
    p.run_ok();
    assert_eq!(sorted_ids(&new_lines(&p, 12)), id_range(13, 5));
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 17);
    // bounded state: only the keys at the watermark are kept
    assert_contains(&p.state(), "keys held: 2");
}

fn newest_first_source(url: &str) -> String {
    one_source(
        url,
        &format!("{PAGED}\n  incremental {{ cursor = created_at  order = newest_first }}"),
    )
}

#[test]
fn newest_first_stops_after_the_first_page_with_an_older_record() {
    let api = api_with(records::make(20), Paging::page(5));
    api.set_order(PATH, Order::Descending("created_at".into()));
    let p = Pipeline::new(&newest_first_source(&api.url()));
    p.run_ok();
    assert_eq!(sorted_ids(&p.jsonl(LINES)), id_range(1, 20));
    assert_eq!(api.hits(PATH), 5, "four full pages and the empty one");

    // three newer records: page 1 holds them and two ties, page 2 the first older one
    api.push_records(PATH, records::range(21, 3));
    api.clear_requests();
    p.run_ok();
    let pages: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("page").unwrap_or("-").to_string())
        .collect();
    assert_eq!(pages, ["1", "2"]);
    assert_eq!(sorted_ids(&new_lines(&p, 20)), id_range(21, 3));
}

#[test]
fn an_interrupted_newest_first_run_keeps_the_watermark() {
    let api = api_with(records::make(20), Paging::page(5));
    api.set_order(PATH, Order::Descending("created_at".into()));
    let p = Pipeline::new(&newest_first_source(&api.url()));
    p.run_ok();
    let watermark_before = records::created_at(20);
    assert_contains(&p.state(), &watermark_before);

    // ten newer records; the run breaks on page 3 after committing pages 1-2
    api.push_records(PATH, records::range(21, 10));
    api.fail_after(PATH, 2, Fault::Status(404));
    let err = p.run_failing();
    assert_contains(&err, "404");
    let state = p.state();
    assert_contains(&state, &watermark_before);
    assert!(!state.contains(&records::created_at(30)), "{state}");
    let after_broken = p.jsonl(LINES).len();
    // pages 1-2 held records 28-30, 25-27, 22-24 and 19 (a tie, known already)
    assert_eq!(after_broken, 29, "pages 1-2 were delivered");

    // the next run goes back as far as page 3, where record 21 sits
    p.run_ok();
    let all = p.jsonl(LINES);
    assert_eq!(sorted_ids(&all), {
        let mut v = id_range(1, 20);
        v.extend(id_range(21, 10));
        v.sort();
        v.dedup();
        v
    });
    assert_eq!(all.len(), 30, "nothing was emitted twice");
    assert_contains(&p.state(), &records::created_at(30));
}

#[test]
fn newest_first_max_pages_keeps_the_watermark() {
    let api = api_with(records::make(20), Paging::page(5));
    api.set_order(PATH, Order::Descending("created_at".into()));
    let p = Pipeline::new(&one_source(
        &api.url(),
        "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 5, max_pages = 2)\n  records = $.data[*]\n  incremental { cursor = created_at  order = newest_first }",
    ));
    let summary = p.run_ok();
    assert_contains(&summary, "max_pages");
    assert_contains(&p.state(), "watermark:    none");
}

#[test]
fn filtered_records_are_remembered_but_not_emitted() {
    // every fourth record is in USD
    let api = api_with(records::make(12), Paging::none());
    let p = Pipeline::new(&one_source(
        &api.url(),
        "get = \"/items\"\n  where = currency == \"EUR\"",
    ));
    p.run_ok();
    let got = p.jsonl(LINES);
    assert_eq!(got.len(), 9);
    assert!(got.iter().all(|r| r["currency"] == "EUR"));
    let state = p.state();
    assert_contains(&state, "records seen: 12");
    assert_contains(&state, "keys held: 12");
    p.run_ok();
    assert_eq!(
        p.jsonl(LINES).len(),
        9,
        "filtered records are not re-considered as new"
    );
    // a record that stops matching is neither emitted nor forgotten
    api.upsert_record(
        PATH,
        "id",
        records::changed(&records::record(1), "currency", json!("USD")),
    );
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 9);
}

#[test]
fn rejected_records_are_listed_not_remembered_and_collected_once_they_convert() {
    let mut recs = records::make(10);
    recs[2]["amount"] = json!("twelve");
    recs[4].as_object_mut().unwrap().remove("currency");
    let api = api_with(recs, Paging::none());
    let p = Pipeline::new(&one_source(&api.url(), "get = \"/items\""));
    let summary = p.run_ok();
    assert_contains(&summary, "2 rejected");
    assert_contains(&p.state(), "keys held: 8");
    assert_eq!(p.jsonl(LINES).len(), 8);
    let rejected = p.rejected("src");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let reasons: Vec<String> = rejected.iter().map(|r| r["reason"].to_string()).collect();
    assert!(reasons.iter().any(|r| r.contains("amount")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("currency")),
        "{reasons:?}"
    );

    // considered again, still rejected: one entry per key
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 8);
    assert_eq!(p.rejected("src").len(), 2);

    // record 3 converts now: collected once, and off the rejected list
    api.upsert_record(
        PATH,
        "id",
        records::changed(&records::record(3), "amount", json!("3.00")),
    );
    p.run_ok();
    assert_eq!(ids(&new_lines(&p, 8)), ["r00003"]);
    let left = p.rejected("src");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_contains(&left[0]["reason"].to_string(), "currency");
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 9);
}

/// Six records by `created_at`, record `seq` with an amount that does not convert, under
/// `incremental`; after the first run: five collected, the watermark at the sixth.
fn six_with_one_rejected(seq: usize) -> (TestApi, Pipeline) {
    let mut recs = records::make(6);
    recs[seq - 1]["amount"] = json!("n/a");
    let api = api_with(recs, Paging::none());
    let p = Pipeline::new(&one_source(
        &api.url(),
        "get = \"/items\"\n  incremental { cursor = created_at }",
    ));
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 5);
    assert_contains(&p.state(), &records::created_at(6));
    (api, p)
}

#[test]
fn the_watermark_moves_past_a_rejected_record() {
    let (api, p) = six_with_one_rejected(6);
    // it is still considered next time (the API lists it again) and kept as rejected
    p.run_ok();
    assert_eq!(p.rejected("src").len(), 1);
    assert_eq!(p.jsonl(LINES).len(), 5);
    // it ties with the watermark, so once it converts it is collected
    api.upsert_record(
        PATH,
        "id",
        records::changed(&records::record(6), "amount", json!("6.00")),
    );
    p.run_ok();
    assert_eq!(ids(&new_lines(&p, 5)), ["r00006"]);
    assert!(p.rejected("src").is_empty());
}

/// Spec §5.2: a rejected record is considered again on the next run and collected once
/// it converts, though the watermark has moved past it.
#[test]
fn a_rejected_record_below_the_watermark_is_collected_once_it_converts() {
    let (api, p) = six_with_one_rejected(3);
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 5, "still rejected: nothing new");
    api.upsert_record(
        PATH,
        "id",
        records::changed(&records::record(3), "amount", json!("3.00")),
    );
    p.run_ok();
    assert_eq!(ids(&new_lines(&p, 5)), ["r00003"]);
    assert!(p.rejected("src").is_empty());
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 6, "collected once");
}

#[test]
fn a_killed_run_is_made_good_by_the_next() {
    let api = api_with(records::make(20), Paging::page(5));
    // page 3 takes long: the run is killed while it waits
    api.fail_after(PATH, 2, Fault::Delay(std::time::Duration::from_secs(20)));
    let p = Pipeline::new(&one_source(&api.url(), PAGED).replace(
        "flow src -> lines",
        "sink store = sled(\"items\")\nflow src -> lines, store",
    ));
    let mut running = p.spawn_run(&["--once"]);
    let limit = std::time::Duration::from_secs(30);
    assert!(
        api.wait_for_hits_blocking(PATH, 3, limit),
        "the run never asked for page 3"
    );
    // Pages 1 and 2 are written (whole lines only) while page 3 hangs: then kill it.
    let complete_lines =
        || std::fs::read_to_string(p.path(LINES)).map_or(0, |t| t.matches('\n').count());
    assert!(
        wait_until(|| complete_lines() >= 10, limit),
        "pages 1 and 2 never reached {LINES}"
    );
    running.kill();

    api.clear_faults(PATH);
    p.run_ok();
    assert_eq!(
        sorted_ids(&p.dump("store")),
        id_range(1, 20),
        "every record once"
    );
    let lines = p.jsonl(LINES);
    let mut unique = sorted_ids(&lines);
    unique.dedup();
    assert_eq!(unique, id_range(1, 20), "at least once");
    assert!(
        lines.len() <= 30,
        "at most pages 1-2 again: {}",
        lines.len()
    );
}
