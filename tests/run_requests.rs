//! The four request bugs of issue 12 (spec §5.2a), end to end against local servers
//! that behave like the real APIs: path placeholders keep unreserved characters and
//! never name another path; a total decides where pagination ends (a server capping
//! its page size loses nothing); a 403 rate limit is waited out; `Retry-After: 2.0`.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::apis;
use support::cli::{assert_contains, id_range, ids, one_source, service, Pipeline};
use support::{records, Paging, TestApi};

/// Parent orders with these ids at `/orders`, and a child source of their items at
/// `/o/{id}/items` into a sled sink `items`.
fn orders_and_items(api: &TestApi, parent_ids: &[&str]) -> Pipeline {
    let parents: Vec<Value> = parent_ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({ "id": id, "seq": i + 1 }))
        .collect();
    api.set_records("/orders", parents);
    Pipeline::new(&format!(
        "{}\nsource orders from api {{\n  get = \"/orders\"\n  schedule = once\n  key = id\n  fields {{\n    id : string = $.id\n    seq : int = $.seq\n  }}\n}}\nsource order_items from api {{\n  for_each = orders\n  get = \"/o/{{id}}/items\"\n  records = $.items[*]\n  key = [order_id, sku]\n  fields {{\n    order_id : string = parent.id\n    sku : string = $.sku\n    qty : int = $.qty\n  }}\n}}\nsink store = sled(\"orders\")\nsink items = sled(\"items\")\nflow orders -> store\nflow order_items -> items\n",
        service(&api.url(), "")
    ))
}

/// Every unreserved character (RFC 3986 §2.3) stays as it is in a path segment: a
/// strict server that refuses an encoded `.` serves every item.
#[test]
fn placeholders_keep_unreserved_characters() {
    let api = TestApi::start_blocking();
    let every = "AZaz09-._~";
    let odd = ["ord_1.a-b~c", every, "v1.2", "a b"];
    apis::serve_order_items(&api, &odd);
    let p = orders_and_items(&api, &odd);
    p.run_ok();
    let sent: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/o/"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        sent.contains(&"/o/ord_1.a-b~c/items".to_string()),
        "{sent:?}"
    );
    assert!(sent.contains(&format!("/o/{every}/items")), "{sent:?}");
    assert!(sent.contains(&"/o/a%20b/items".to_string()), "{sent:?}");
    let mut got: Vec<String> = p
        .dump("items")
        .iter()
        .map(|r| r["order_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// A parent id that is empty, `.` or `..` would change the path (`/o/../items` is
/// `/items`, another endpoint, with the service's credentials): it is rejected with
/// the reason, and nothing but the good children is requested.
#[test]
fn a_dot_segment_or_empty_placeholder_rejects_the_record() {
    let api = TestApi::start_blocking();
    apis::serve_order_items(&api, &["ok1"]);
    // What a resolved `..` or `.` would reach: anything served here is a leak.
    api.set_json(
        "/items",
        json!({ "items": [ { "sku": "leak", "qty": 9 } ] }),
    );
    api.set_json(
        "/o/items",
        json!({ "items": [ { "sku": "leak", "qty": 9 } ] }),
    );
    let p = orders_and_items(&api, &["ok1", "..", ".", ""]);
    let summary = p.run_ok();
    let paths: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/orders", "/o/ok1/items"], "{summary}");
    let items = p.dump("items");
    assert_eq!(items.len(), 1, "{items:?}");
    let rejected = p.rejected("order_items");
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for r in &reasons {
        assert_contains(r, "placeholder `{id}`");
        assert_contains(r, "no request was made");
    }
    assert!(reasons
        .iter()
        .any(|r| r.contains("is `..` (a dot segment)")));
    assert!(reasons.iter().any(|r| r.contains("is `` (empty)")));
    assert!(
        rejected.iter().any(|r| r["item"]["id"] == ".."),
        "{rejected:?}"
    );
    // The rejected requests are done: a second run asks for nothing again.
    p.run_ok();
    assert_eq!(api.hits("/o/ok1/items"), 1);
    assert_eq!(p.rejected("order_items").len(), 3);
}

// ---- a total decides the end -------------------------------------------------------

/// How many warnings of the run's summary are about a capped page size.
fn cap_warnings(summary: &str) -> usize {
    summary
        .lines()
        .filter(|l| l.starts_with("  warning: ") && l.contains("the server caps its page size"))
        .count()
}

fn issues(n: u64) -> Vec<Value> {
    (1..=n).map(records::record).collect()
}

/// An issue tracker that caps pages at 50 when 100 are asked: with `total`, all 123
/// issues are collected, and the cap is warned about once.
#[test]
fn offset_with_a_total_is_not_ended_by_a_capped_page() {
    let api = TestApi::start_blocking();
    apis::serve_capped_search(&api, "/search", issues(123), 50);
    let p = Pipeline::new(&one_source(
        &api.url(),
        "get = \"/search\"\n  paginate = offset(param = \"startAt\", limit_param = \"maxResults\", limit = 100, total = $.total)\n  records = $.issues[*]",
    ));
    let summary = p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 123));
    // Pages after the first are in flight together: their order of arrival varies.
    let mut starts: Vec<u64> = api
        .requests_to("/search")
        .iter()
        .map(|r| {
            r.query_value("startAt")
                .unwrap_or("")
                .parse()
                .unwrap_or(u64::MAX)
        })
        .collect();
    starts.sort();
    assert_eq!(starts, [0, 50, 100]);
    assert_eq!(cap_warnings(&summary), 1, "{summary}");
    assert_contains(&summary, "held 50 records where 100 were asked for");
}

/// The same with page numbers and `total_pages`.
#[test]
fn page_with_total_pages_is_not_ended_by_a_capped_page() {
    let api = TestApi::start_blocking();
    apis::serve_capped_pages(&api, "/items", issues(123), 50);
    let p = Pipeline::new(&one_source(
        &api.url(),
        "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 100, total_pages = $.total_pages)\n  records = $.data[*]",
    ));
    let summary = p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 123));
    assert_eq!(api.hits("/items"), 3);
    assert_eq!(cap_warnings(&summary), 1, "{summary}");
}

/// Without a total, a short page still ends the listing (and is no warning: the last
/// page of any listing is short).
#[test]
fn without_a_total_a_short_page_ends_the_listing() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(25));
    api.serve(
        "/items",
        Paging::Offset {
            param: "offset".into(),
            limit_param: Some("limit".into()),
            default_limit: 10,
            records_key: "data".into(),
            total_key: None,
        },
    );
    let p = Pipeline::new(&one_source(
        &api.url(),
        "get = \"/items\"\n  paginate = offset(limit_param = \"limit\", limit = 10)\n  records = $.data[*]",
    ));
    let summary = p.run_ok();
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, 25));
    assert_eq!(api.hits("/items"), 3);
    assert!(!summary.contains("warning"), "{summary}");
}

// ---- rate limits ---------------------------------------------------------------------

fn listing(api: &TestApi) -> Pipeline {
    api.set_records("/items", records::make(5));
    Pipeline::new(&one_source(&api.url(), "get = \"/items\""))
}

/// The gap between the first and the second request to `/items`.
fn first_gap(api: &TestApi) -> Duration {
    let r = api.requests_to("/items");
    r[1].at.duration_since(r[0].at)
}

/// A 403 saying no request remains until the reset is a rate limit: waited out (until
/// the reset, not the short backoff), then retried; every record is collected.
#[test]
fn a_403_with_no_requests_remaining_is_waited_out() {
    let api = TestApi::start_blocking();
    let p = listing(&api);
    api.fail_next("/items", apis::github_rate_limit(Duration::from_secs(2)));
    p.run_ok();
    assert_eq!(p.jsonl("out/src.jsonl").len(), 5);
    assert_eq!(api.hits("/items"), 2);
    let gap = first_gap(&api);
    assert!(gap >= Duration::from_millis(900), "waited only {gap:?}");
}

/// A 403 with `Retry-After` (a secondary rate limit) is waited out for that long.
#[test]
fn a_403_with_retry_after_is_waited_out() {
    let api = TestApi::start_blocking();
    let p = listing(&api);
    api.fail_next("/items", apis::github_secondary_limit(1));
    p.run_ok();
    assert_eq!(p.jsonl("out/src.jsonl").len(), 5);
    let gap = first_gap(&api);
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
}

/// A 403 that is no rate limit (requests remain) fails at once, without a retry.
#[test]
fn a_403_that_is_a_refusal_is_not_retried() {
    let api = TestApi::start_blocking();
    let p = listing(&api);
    api.fail_next("/items", apis::forbidden_with_quota_left());
    let summary = p.run_failing();
    assert_contains(&summary, "HTTP 403");
    assert_eq!(api.hits("/items"), 1);
}

/// `Retry-After: 2.0` (decimal seconds) is honoured, not replaced by the short backoff.
#[test]
fn a_decimal_retry_after_is_honoured() {
    let api = TestApi::start_blocking();
    let p = listing(&api);
    api.fail_next("/items", apis::shop_throttle("2.0"));
    p.run_ok();
    assert_eq!(p.jsonl("out/src.jsonl").len(), 5);
    let gap = first_gap(&api);
    assert!(gap >= Duration::from_millis(1950), "waited only {gap:?}");
}

/// A webhook sink waits out a 403 rate limit from its receiver the same way.
#[test]
fn a_webhook_waits_out_a_403_rate_limit() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(3));
    let hook = TestApi::start_blocking();
    hook.set_json("/hook", json!({ "ok": true }));
    hook.fail_next("/hook", apis::github_secondary_limit(1));
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n{}\n}}\nsink hook = webhook(\"{}\")\nflow src -> hook\n",
        service(&api.url(), ""),
        support::cli::FIELDS,
        hook.url_for("/hook")
    ));
    let summary = p.run_ok();
    assert!(!summary.contains("wait in its queue"), "{summary}");
    assert_eq!(hook.hits("/hook"), 2);
    let sent = hook.requests_to("/hook");
    let gap = sent[1].at.duration_since(sent[0].at);
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    let last = hook.requests_to("/hook").pop().unwrap();
    assert_eq!(last.body_json().unwrap().as_array().unwrap().len(), 3);
}
