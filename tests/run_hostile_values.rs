//! Values an API sends that no field can hold, end to end: a timestamp of 27 digits in a
//! page of good records rejects that record with the reason, stores the others, and
//! leaves the source working for the next run (it used to panic the extract task).

mod support;

use serde_json::Value;
use support::cli::{assert_contains, service, sorted_ids, Pipeline};
use support::{Reply, TestApi};

const PATH: &str = "/events";

/// Three records as the API writes them: `b`'s `ts` is 10^26 seconds, beyond any
/// instant (and 10^29 milliseconds, beyond any decimal). Raw text, so every digit
/// reaches hamstr as written.
const BODY: &str = r#"[
  {"id": "a", "ts": 1700000000, "amount": 12.50},
  {"id": "b", "ts": 100000000000000000000000000, "amount": 1},
  {"id": "c", "ts": 1700000060, "amount": 7}
]"#;

fn pipeline(url: &str) -> Pipeline {
    Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"{PATH}\"\n  schedule = once\n  key = id\n  fields {{\n    id  : string   = $.id\n    at  : datetime = from_unix($.ts)\n    raw : json     = $.amount\n  }}\n}}\nsink store = sled(\"events\")\nflow src -> store\n",
        service(url, "")
    ))
}

/// The one rejected record: `b`, for its timestamp.
fn assert_b_rejected(p: &Pipeline) {
    let rejected = p.rejected("src");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let reason = rejected[0]["reason"].to_string();
    assert_contains(&reason, "timestamp out of range");
    assert_contains(&reason, "`at`");
}

#[test]
fn a_timestamp_out_of_range_rejects_its_record_and_keeps_the_source_running() {
    let api = TestApi::start_blocking();
    api.set_reply(PATH, Reply::text(200, "application/json", BODY));
    let p = pipeline(&api.url());

    let summary = p.run_ok();
    assert_contains(&summary, "2 new, 1 rejected");
    let stored = p.dump("store");
    assert_eq!(sorted_ids(&stored), ["a", "c"]);
    let a = stored.iter().find(|r| r["id"] == "a").unwrap();
    assert_eq!(a["at"], Value::from("2023-11-14T22:13:20Z"));
    // A `json` field keeps the API's number as it is (spec §4), not `"12.50"`.
    assert_eq!(a["raw"].to_string(), "12.50");
    assert_b_rejected(&p);

    // The source is not dead: it reads the same page again, stores nothing twice, and
    // `b` stays on the rejected list once.
    let summary = p.run_ok();
    assert_contains(&summary, "0 new, 1 rejected");
    assert_eq!(api.hits(PATH), 2);
    assert_eq!(sorted_ids(&p.dump("store")), ["a", "c"]);
    assert_b_rejected(&p);
}
