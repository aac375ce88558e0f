//! Spec §5.2a end to end, against local servers shaped like the real APIs named in each
//! test (`support::apis`): the watermark inside a query-language filter (Jira's JQL,
//! with ties) and inside a JSON search body (HubSpot, Intercom); cursors read from and
//! written to the POST body, nested; `done`; totals from headers (WordPress); an opaque
//! resume token (Zendesk); `format = "unix"` (Stripe); `lookback` with its bounded keys.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use support::apis::feeds::{self, stripe_charge, zendesk_ticket};
use support::apis::search::{self, hubspot_contact, intercom_contact, jira_issue};
use support::cli::{assert_contains, service, sorted_ids, Pipeline};
use support::{records, TestApi};

/// A pipeline of one source `src` from service `api` at `url`, into `out/src.jsonl`.
fn pipeline(url: &str, source: &str) -> Pipeline {
    Pipeline::new(&format!(
        "{}\nsource src from api {{\n  schedule = once\n{source}\n}}\n\nsink lines = jsonl(\"out/src.jsonl\")\nflow src -> lines\n",
        service(url, "")
    ))
}

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The values of `field` in the jsonl sink, in order.
fn column(p: &Pipeline, field: &str) -> Vec<String> {
    p.jsonl("out/src.jsonl")
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

// ---- Jira: the watermark in a JQL filter, with ties -----------------------------------

const JIRA: &str = r#"
  get = "/rest/api/2/search"
  query { jql = concat("updated >= \"", format_datetime(watermark, "%Y/%m/%d %H:%M"), "\" ORDER BY updated ASC") }
  paginate = offset(param = "startAt", limit_param = "maxResults", limit = 100, total = $.total)
  records = $.issues[*]
  key = id
  incremental { cursor = updated }
  fields {
    id      : string   = $.id
    key     : string   = $.key
    updated : datetime = parse_datetime($.fields.updated, "%Y-%m-%dT%H:%M:%S%.3f%z")
  }"#;

/// Jira's search filtered by JQL built from the watermark: the first run (no
/// watermark, no `start`) sends no `jql`; later runs ask from the watermark's minute.
/// Issues sharing the newest timestamp (ties) are not collected twice, a new issue
/// with that same timestamp is collected, and the server's cap of 50 issues a page
/// loses nothing.
#[test]
fn jira_jql_from_the_watermark_with_ties() {
    let api = TestApi::start_blocking();
    let issues = search::serve_jira(&api, "/rest/api/2/search", 50);
    let base = t("2024-03-01T08:00:00Z");
    for n in 1..=57 {
        issues.push(jira_issue(n, base + Duration::seconds(10 * n as i64)));
    }
    let newest = base + Duration::seconds(600) + Duration::milliseconds(250);
    for n in 58..=60 {
        issues.push(jira_issue(n, newest));
    }
    let p = pipeline(&api.url(), JIRA);
    p.run_ok();
    assert_eq!(column(&p, "key").len(), 60);
    let first = &api.requests_to("/rest/api/2/search")[0];
    assert_eq!(
        first.query_value("jql"),
        None,
        "no watermark and no start: left out"
    );

    // A tie with the newest issue, and a later one.
    issues.push(jira_issue(61, newest));
    issues.push(jira_issue(62, newest + Duration::seconds(30)));
    api.clear_requests();
    p.run_ok();
    let jql: Vec<String> = api
        .requests_to("/rest/api/2/search")
        .iter()
        .map(|r| r.query_value("jql").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        jql,
        [r#"updated >= "2024/03/01 08:10" ORDER BY updated ASC"#]
    );
    let keys = column(&p, "key");
    assert_eq!(keys.len(), 62, "{keys:?}");
    assert_eq!(&keys[60..], ["PROJ-61", "PROJ-62"]);
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 62);
}

// ---- HubSpot: a JSON search body with the watermark and the cursor ---------------------

const HUBSPOT: &str = r#"
  post = "/crm/v3/objects/contacts/search"
  body {
    filterGroups = [{ filters = [{ propertyName = "lastmodifieddate"  operator = "GTE"  value = to_string(unix_ms(watermark)) }] }]
    sorts        = [{ propertyName = "lastmodifieddate"  direction = "ASCENDING" }]
    properties   = ["email", "lastmodifieddate"]
    limit        = 3
  }
  paginate = cursor(param = "after", from = $.paging.next.after, in = body)
  records  = $.results[*]
  key      = id
  incremental { cursor = modified  start = "2024-01-01T00:00:00Z" }
  fields {
    id       : string   = $.id
    email    : string   = $.properties.email
    modified : datetime = $.properties.lastmodifieddate
  }"#;

/// HubSpot's CRM search: the filter (the watermark in epoch milliseconds, inside a
/// list of objects in a list of objects) and the cursor `after` travel in the POST
/// body; every contact is collected once, over two runs.
#[test]
fn hubspot_search_with_the_cursor_in_the_body() {
    let api = TestApi::start_blocking();
    let path = "/crm/v3/objects/contacts/search";
    let contacts = search::serve_hubspot_search(&api, path, 100);
    let base = t("2024-05-01T10:00:00Z");
    for n in 1..=7 {
        contacts.push(hubspot_contact(n, base + Duration::minutes(n as i64)));
    }
    let p = pipeline(&api.url(), HUBSPOT);
    p.run_ok();
    assert_eq!(sorted_ids(&p.jsonl("out/src.jsonl")).len(), 7);
    let bodies: Vec<Value> = api
        .requests_to(path)
        .iter()
        .map(|r| r.body_json().unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    let start_ms = t("2024-01-01T00:00:00Z").timestamp_millis().to_string();
    assert_eq!(
        bodies[0],
        json!({
            "filterGroups": [{ "filters": [{ "propertyName": "lastmodifieddate", "operator": "GTE", "value": start_ms }] }],
            "sorts": [{ "propertyName": "lastmodifieddate", "direction": "ASCENDING" }],
            "properties": ["email", "lastmodifieddate"],
            "limit": 3
        })
    );
    assert_eq!(bodies[1]["after"], "3");
    assert_eq!(bodies[2]["after"], "6");
    assert!(api.requests_to(path).iter().all(|r| r.query.is_empty()));

    contacts.push(hubspot_contact(8, base + Duration::minutes(30)));
    api.clear_requests();
    p.run_ok();
    let sent = api.requests_to(path)[0].body_json().unwrap();
    let newest_ms = (base + Duration::minutes(7)).timestamp_millis().to_string();
    assert_eq!(sent["filterGroups"][0]["filters"][0]["value"], newest_ms);
    assert_eq!(column(&p, "id"), ["1", "2", "3", "4", "5", "6", "7", "8"]);
}

// ---- Intercom: a dotted cursor into a nested body object ------------------------------

const INTERCOM: &str = r#"
  post = "/contacts/search"
  body {
    query { field = "updated_at"  operator = ">"  value = unix(watermark) }
    pagination { per_page = 2 }
  }
  paginate = cursor(param = "pagination.starting_after", from = $.pages.next.starting_after, in = body)
  records  = $.data[*]
  key      = id
  incremental { cursor = updated  start = "2024-01-01T00:00:00Z" }
  fields {
    id      : string   = $.id
    email   : string   = $.email
    updated : datetime = from_unix($.updated_at)
  }"#;

/// Intercom's contact search: the cursor goes into `pagination.starting_after`, beside
/// the `per_page` the body already has; the filter carries the watermark in seconds.
#[test]
fn intercom_search_with_a_nested_cursor() {
    let api = TestApi::start_blocking();
    let contacts = search::serve_intercom_search(&api, "/contacts/search");
    let base = t("2024-06-01T00:00:00Z").timestamp();
    for n in 1..=5 {
        contacts.push(intercom_contact(n, base + 60 * n as i64));
    }
    let p = pipeline(&api.url(), INTERCOM);
    p.run_ok();
    assert_eq!(column(&p, "id").len(), 5);
    let bodies: Vec<Value> = api
        .requests_to("/contacts/search")
        .iter()
        .map(|r| r.body_json().unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    let start = t("2024-01-01T00:00:00Z").timestamp();
    assert_eq!(
        bodies[1],
        json!({
            "query": { "field": "updated_at", "operator": ">", "value": start },
            "pagination": { "per_page": 2, "starting_after": "pos:2" }
        })
    );
    contacts.push(intercom_contact(6, base + 3600));
    api.clear_requests();
    p.run_ok();
    let sent = api.requests_to("/contacts/search")[0].body_json().unwrap();
    assert_eq!(sent["query"]["value"], base + 300);
    assert_eq!(column(&p, "id").len(), 6);
}

// ---- Zendesk: resume from an opaque token, `done` -------------------------------------

const ZENDESK: &str = r#"
  get = "/api/v2/incremental/tickets/cursor.json"
  query { start_time = unix(watermark) }
  paginate = cursor(param = "cursor", from = $.after_cursor, done = $.end_of_stream)
  records  = $.tickets[*]
  key      = id
  incremental { resume = $.after_cursor  param = "cursor"  start = 0 }
  fields {
    id         : int      = $.id
    subject    : string   = $.subject
    updated_at : datetime = $.updated_at
  }"#;

/// Zendesk's cursor-based incremental export: the first run starts at `start_time=0`
/// and follows `after_cursor` until `end_of_stream`; the next run starts from the
/// stored cursor (without `start_time`) and collects only what came since.
#[test]
fn zendesk_export_resumes_from_its_cursor() {
    let api = TestApi::start_blocking();
    let path = "/api/v2/incremental/tickets/cursor.json";
    let tickets = feeds::serve_zendesk_export(&api, path, 2);
    for n in 1..=5 {
        tickets.push(zendesk_ticket(n, &format!("2024-02-0{n}T12:00:00Z")));
    }
    let p = pipeline(&api.url(), ZENDESK);
    p.run_ok();
    assert_eq!(column(&p, "id"), ["1", "2", "3", "4", "5"]);
    let sent = api.requests_to(path);
    assert_eq!(sent.len(), 3, "pages of 2, 2 and 1; end_of_stream ends it");
    assert_eq!(sent[0].query_value("start_time"), Some("0"));
    assert_eq!(sent[0].query_value("cursor"), None);
    assert!(sent[1].query_value("cursor").is_some());

    tickets.push(zendesk_ticket(6, "2024-02-07T12:00:00Z"));
    tickets.push(zendesk_ticket(7, "2024-02-08T12:00:00Z"));
    api.clear_requests();
    p.run_ok();
    let sent = api.requests_to(path);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].query_value("start_time"), None, "a token is held");
    assert!(sent[0].query_value("cursor").is_some());
    assert_eq!(column(&p, "id"), ["1", "2", "3", "4", "5", "6", "7"]);

    api.clear_requests();
    p.run_ok();
    assert_eq!(column(&p, "id").len(), 7, "nothing new, nothing again");
}

// ---- WordPress: totals in headers ------------------------------------------------------

/// The WordPress REST API's posts: `total_pages = header("X-WP-TotalPages")` decides
/// the end (the server caps `per_page` and refuses a page past the last with 400).
#[test]
fn wordpress_total_pages_from_a_header() {
    let api = TestApi::start_blocking();
    let posts: Vec<Value> = (1..=25)
        .map(|n| json!({ "id": n, "slug": format!("post-{n}"), "modified_gmt": "2024-04-01T10:00:00" }))
        .collect();
    feeds::serve_wordpress_posts(&api, "/wp-json/wp/v2/posts", posts, 10);
    let p = pipeline(
        &api.url(),
        r#"
  get = "/wp-json/wp/v2/posts"
  paginate = page(size_param = "per_page", size = 100, total_pages = header("X-WP-TotalPages"))
  key = id
  fields {
    id   : int    = $.id
    slug : string = $.slug
  }"#,
    );
    let summary = p.run_ok();
    assert_eq!(column(&p, "id").len(), 25);
    assert_eq!(api.hits("/wp-json/wp/v2/posts"), 3);
    assert_contains(&summary, "`total_pages` decides where the listing ends");
}

// ---- Stripe: `created[gte]` in epoch seconds ------------------------------------------

/// Stripe's charges filtered by `created[gte]`, which takes epoch seconds: `format =
/// "unix"` writes the watermark so.
#[test]
fn stripe_created_gte_in_unix_seconds() {
    let api = TestApi::start_blocking();
    let charges = feeds::serve_stripe_charges(&api, "/v1/charges");
    let base = Utc
        .with_ymd_and_hms(2024, 7, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    for n in 1..=5 {
        charges.push(stripe_charge(n, base + 100 * n as i64));
    }
    let p = pipeline(
        &api.url(),
        r#"
  get = "/v1/charges"
  query { limit = 2 }
  paginate = cursor(param = "starting_after", from = $.data[-1].id, has_more = $.has_more)
  records = $.data[*]
  key = id
  incremental { cursor = created  param = "created[gte]"  format = "unix"  order = newest_first }
  fields {
    id      : string   = $.id
    amount  : int      = $.amount
    created : datetime = from_unix($.created)
  }"#,
    );
    p.run_ok();
    assert_eq!(column(&p, "id").len(), 5);
    assert!(api
        .requests_to("/v1/charges")
        .iter()
        .all(|r| r.query_value("created[gte]").is_none()));
    charges.push(stripe_charge(6, base + 1000));
    api.clear_requests();
    p.run_ok();
    let newest = (base + 500).to_string();
    assert_eq!(
        api.requests_to("/v1/charges")[0].query_value("created[gte]"),
        Some(newest.as_str())
    );
    assert_eq!(column(&p, "id").len(), 6);
}

// ---- lookback --------------------------------------------------------------------------

/// `lookback`: a record that appears late with an older cursor (an eventually
/// consistent listing) is still collected, nothing else is emitted twice, and the keys
/// below watermark − lookback are forgotten.
#[test]
fn lookback_collects_late_records_and_bounds_the_keys() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(9));
    api.set_since_filter("/items", "created_since", "created_at");
    let p = Pipeline::new(&support::cli::one_source(
        &api.url(),
        "get = \"/items\"\n  incremental { cursor = created_at  param = \"created_since\"  lookback = 5m }",
    ));
    p.run_ok();
    assert_eq!(column(&p, "id").len(), 9);
    // Late: 00:00:30 is below the watermark (00:02) but within the lookback; 23:50 the
    // day before is older than the watermark minus the lookback.
    let mut late = records::record(100);
    late["created_at"] = json!("2026-01-01T00:00:30Z");
    let mut too_late = records::record(101);
    too_late["created_at"] = json!("2025-12-31T23:50:00Z");
    api.push_records("/items", vec![late, too_late]);
    api.clear_requests();
    p.run_ok();
    assert_eq!(
        api.requests_to("/items")[0].query_value("created_since"),
        Some("2025-12-31T23:57:00Z")
    );
    let ids = column(&p, "id");
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert_eq!(ids[9], "r00100");

    // Newer records move the watermark to 00:20: keys below 00:15 are forgotten.
    let mut newer = records::range(200, 3);
    for r in &mut newer {
        r["created_at"] = json!("2026-01-01T00:20:00Z");
    }
    api.push_records("/items", newer);
    p.run_ok();
    assert_eq!(column(&p, "id").len(), 13);
    assert_eq!(
        p.dump("src").len(),
        3,
        "only the keys at or above 00:15 remain"
    );
}

/// A run killed (SIGKILL) in the middle of Zendesk's export resumes from the token of
/// its last committed page: every ticket is stored once, none is lost.
#[test]
fn a_killed_export_resumes_from_its_last_committed_page() {
    let api = TestApi::start_blocking();
    let path = "/api/v2/incremental/tickets/cursor.json";
    let tickets = feeds::serve_zendesk_export(&api, path, 2);
    for n in 1..=7 {
        tickets.push(zendesk_ticket(n, &format!("2024-02-0{n}T12:00:00Z")));
    }
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  schedule = once\n{ZENDESK}\n}}\n\nsink store = sled(\"tickets\")\nflow src -> store\n",
        service(&api.url(), "")
    ));
    // The third page hangs: the run is killed while it waits for it.
    api.fail_after(
        path,
        2,
        support::Fault::Delay(std::time::Duration::from_secs(60)),
    );
    let mut run = p.spawn_run(&["--once"]);
    assert!(api.wait_for_hits_blocking(path, 3, std::time::Duration::from_secs(30)));
    // The first two pages are committed before the third is asked for only if the
    // sink took them: wait until the store shows them.
    assert!(support::wait_until(
        || p.cmd(&["dump", "store", "--data-dir"])
            .arg(&p.data)
            .output()
            .is_ok_and(|o| { String::from_utf8_lossy(&o.stdout).lines().count() == 4 }),
        std::time::Duration::from_secs(30)
    ));
    run.kill();
    api.clear_faults(path);
    api.clear_requests();
    p.run_ok();
    let sent = api.requests_to(path);
    assert_eq!(sent[0].query_value("start_time"), None, "{sent:?}");
    let resumed = sent[0].query_value("cursor").unwrap();
    let decoded = support::base64_decode(resumed).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "ticket-export:4");
    let stored: Vec<i64> = p
        .dump("store")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, [1, 2, 3, 4, 5, 6, 7]);
}
