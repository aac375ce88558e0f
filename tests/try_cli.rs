//! `hamstr try`: the page inspector against the local fake API — the field table, a
//! wrong path flagged with the right suggestion, rejections, the next request, a child
//! source's requests, JSON output, and nothing written to the data directory.

mod support;

use serde_json::{json, Value};
use support::cli::{assert_contains, service, stderr, stdout, text, Pipeline};
use support::{records, Auth, Fault, Paging, TestApi};

/// A source over `records::make` with `created_at` misspelt, and a sled sink.
fn pipeline(url: &str, extra_service: &str) -> String {
    format!(
        r#"{}
source orders from api {{
  get      = "/orders"
  schedule = every(1m)
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  key      = id
  fields {{
    id       : string    = $.id
    amount   : decimal   = $.amount
    currency : string    = $.currency
    created  : datetime? = $.created
    nested   : int       = $.nested.a
  }}
}}

sink store = sled("orders")
flow orders -> store
"#,
        service(url, extra_service)
    )
}

#[test]
fn try_shows_a_table_flags_a_wrong_path_and_writes_nothing() {
    let api = TestApi::start_blocking();
    let mut data = records::make(25);
    // Two items the run would reject: no currency.
    data[3].as_object_mut().unwrap().remove("currency");
    data[6]["currency"] = Value::Null;
    api.set_records("/orders", data);
    api.serve("/orders", Paging::page(10));
    api.require(Auth::Bearer("tok-SECRET-42".into()));
    let p = Pipeline::new(&pipeline(&api.url(), "  auth = bearer(env(\"TOKEN\"))"));
    let out = p
        .cmd(&["try", "orders"])
        .env("TOKEN", "tok-SECRET-42")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    // The request, its answer and time.
    assert_contains(
        &shown,
        &format!("GET {}/orders?page=1&per_page=10", api.url()),
    );
    assert_contains(&shown, "→ 200 OK in ");
    assert_contains(&shown, "`records` selected 10 items: 8 records, 2 rejected");
    // The table of fields, fitting the width.
    for header in ["id", "amount", "currency", "created", "nested"] {
        assert_contains(&shown, header);
    }
    assert_contains(&shown, "r00001");
    assert_contains(&shown, "12.50");
    for line in shown.lines() {
        assert!(line.chars().count() <= 120, "too wide: {line:?}");
    }
    // Rejections with their reasons.
    assert_contains(
        &shown,
        "item 4: required field `currency` is missing or null",
    );
    assert_contains(
        &shown,
        "item 7: required field `currency` is missing or null",
    );
    // The paginator's next request, not fetched.
    assert_contains(
        &shown,
        &format!(
            "next: GET {}/orders?page=2&per_page=10  (not fetched",
            api.url()
        ),
    );
    assert_eq!(api.hits("/orders"), 1, "one page by default");
    // The misspelt path, with the key the items have.
    assert_contains(
        &shown,
        "field `created` is null in every record of the sample",
    );
    assert_contains(&shown, "did you mean `created_at`?");
    // No secret, and no data directory (nor anything else) created.
    assert!(!shown.contains("tok-SECRET-42") && !stderr(&out).contains("tok-SECRET-42"));
    assert!(!p.data.exists());
    assert!(!p.path(".hamstr").exists());
    let left: Vec<_> = std::fs::read_dir(p.dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the pipeline file: {left:?}");
}

#[test]
fn try_follows_pages_and_speaks_json() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(25));
    api.serve("/orders", Paging::page(10));
    api.fail_next("/orders", Fault::Status(503));
    let p = Pipeline::new(&pipeline(&api.url(), ""));
    let out = p
        .cmd(&["try", "orders", "--pages", "5", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    let pages = report["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 3, "25 records in pages of 10: {report:#}");
    // The 503 and its retry are both shown.
    let statuses: Vec<_> = pages[0]["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["response"]["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(200)]);
    assert_eq!(pages[0]["selected"], 10);
    assert_eq!(pages[0]["sample"][0]["id"], "r00001");
    assert_eq!(pages[0]["sample"][0]["amount"], "12.50");
    assert_eq!(
        pages[0]["next"]["request"]["request"],
        format!("GET {}/orders?page=2&per_page=10", api.url())
    );
    assert_eq!(pages[2]["selected"], 5);
    assert_eq!(pages[2]["next"], "done");
    assert_eq!(report["flags"][0]["field"], "created");
    assert_eq!(report["flags"][0]["did_you_mean"], "created_at");
    assert_eq!(report["error"], Value::Null);
}

#[test]
fn try_a_child_shows_the_requests_of_its_parents_first_records() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(7));
    api.serve("/orders", Paging::page(10));
    for seq in 1..=7u64 {
        let id = records::id(seq);
        api.set_json(
            &format!("/orders/{id}/items"),
            json!({"items": [{"sku": format!("{id}-a"), "qty": 2}]}),
        );
    }
    let text_ = format!(
        r#"{}
source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  key      = id
  fields {{ id : string = $.id }}
}}
source items from api {{
  for_each = orders
  get      = "/orders/{{id}}/items"
  records  = $.items[*]
  key      = [order, sku]
  fields {{ order : string = parent.id  sku : string = $.sku  qty : int = $.qty }}
}}
sink out = stdout()
flow items -> out
"#,
        service(&api.url(), "")
    );
    let p = Pipeline::new(&text_);
    let out = p.cmd(&["try", "items"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    assert_contains(&shown, "parent `orders`:");
    assert_contains(&shown, "its first records would trigger:");
    for seq in 1..=5u64 {
        assert_contains(
            &shown,
            &format!("GET {}/orders/{}/items", api.url(), records::id(seq)),
        );
    }
    assert!(
        !shown.contains("/orders/r00006/items"),
        "five at most:\n{shown}"
    );
    // The child itself was tried for the first parent record only.
    assert_eq!(api.hits("/orders/r00001/items"), 1);
    assert_eq!(api.hits("/orders/r00002/items"), 0);
    assert_contains(&shown, "r00001-a");
}

#[test]
fn try_fails_with_1_on_a_failed_request_and_2_on_usage() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(3));
    api.serve("/orders", Paging::page(10));
    api.fail_always("/orders", Fault::Status(404));
    let p = Pipeline::new(&pipeline(&api.url(), ""));
    let out = p.cmd(&["try", "orders"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(&stdout(&out), "→ 404 Not Found");
    assert_contains(&stderr(&out), "error: HTTP 404 Not Found from");

    let out = p.cmd(&["try", "ordrs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "no source `ordrs`");
    assert_contains(&stderr(&out), "did you mean `orders`?");

    let out = p
        .cmd(&["try", "orders", "--tenant", "acme"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "source `orders` does not run per tenant");
    assert_eq!(api.hits("/orders"), 1, "no request for a usage error");

    let out = p.cmd(&["try", "orders", "--pages", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
