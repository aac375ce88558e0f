//! `hamstr run --once` against a local fake API with every paginator (spec §5.1): all
//! records collected exactly once, each stop rule, `max_pages`, loop detection, `query`
//! on every built page, and the error for a body that holds no records array.

mod support;

use support::cli::{assert_contains, id_range, ids, one_source, Pipeline};
use support::{records, CursorNext, Fault, Paging, TestApi};

const PATH: &str = "/items";

/// An API serving `n` records at `/items` with `paging`.
fn api_with(n: usize, paging: Paging) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records(PATH, records::make(n));
    api.serve(PATH, paging);
    api
}

/// Runs a `src` with `body` once against `api`; returns the pipeline and the summary.
fn collect(api: &TestApi, body: &str) -> (Pipeline, String) {
    let p = Pipeline::new(&one_source(&api.url(), body));
    let summary = p.run_ok();
    (p, summary)
}

/// The records written by `collect` must be exactly records 1..=n, in order, once each.
#[track_caller]
fn assert_all(p: &Pipeline, n: u64) {
    assert_eq!(ids(&p.jsonl("out/src.jsonl")), id_range(1, n));
}

fn page_paging(size: usize, total_pages: bool) -> Paging {
    Paging::Page {
        param: "page".into(),
        start: 1,
        size_param: Some("per_page".into()),
        default_size: size,
        records_key: "data".into(),
        total_pages_key: total_pages.then(|| "total_pages".into()),
    }
}

fn offset_paging(limit: usize, total: bool) -> Paging {
    Paging::Offset {
        param: "offset".into(),
        limit_param: Some("limit".into()),
        default_limit: limit,
        records_key: "data".into(),
        total_key: total.then(|| "total".into()),
    }
}

// ---- page --------------------------------------------------------------------------

#[test]
fn page_with_size_and_total_pages_collects_everything() {
    let api = api_with(25, page_paging(10, true));
    let (p, _) = collect(
        &api,
        r#"get = "/items"
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10, total_pages = $.total_pages)
  records = $.data[*]"#,
    );
    assert_all(&p, 25);
    // Pages 2 and 3 are in flight together (known from `total_pages`): the order they
    // arrive in is not fixed, the requests are.
    let mut pages: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| {
            (
                r.query_value("page").map(str::to_string),
                r.query_value("per_page").map(str::to_string),
            )
        })
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        vec![
            (Some("1".into()), Some("10".into())),
            (Some("2".into()), Some("10".into())),
            (Some("3".into()), Some("10".into())),
        ]
    );
}

#[test]
fn page_stops_at_the_empty_page() {
    // no size given: only an empty page ends the listing
    let api = api_with(25, page_paging(10, false));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = page()\n  records = $.data[*]",
    );
    assert_all(&p, 25);
    assert_eq!(api.hits(PATH), 4, "pages 1-3 and the empty page 4");
    assert!(api
        .requests_to(PATH)
        .iter()
        .all(|r| r.query_value("per_page").is_none()));
}

#[test]
fn page_stops_at_a_short_page() {
    let api = api_with(25, page_paging(10, false));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 10)\n  records = $.data[*]",
    );
    assert_all(&p, 25);
    assert_eq!(api.hits(PATH), 3, "page 3 held 5 < 10 records");
}

#[test]
fn page_stops_at_total_pages() {
    // 30 records in full pages of 10: only `total_pages` can stop before an empty page 4
    let api = api_with(30, page_paging(10, true));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 10, total_pages = $.total_pages)\n  records = $.data[*]",
    );
    assert_all(&p, 30);
    assert_eq!(api.hits(PATH), 3);
}

#[test]
fn page_honours_start() {
    let api = api_with(
        12,
        Paging::Page {
            param: "p".into(),
            start: 0,
            size_param: None,
            default_size: 5,
            records_key: "data".into(),
            total_pages_key: None,
        },
    );
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = page(param = \"p\", start = 0)\n  records = $.data[*]",
    );
    assert_all(&p, 12);
    let sent: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("p").unwrap_or("-").to_string())
        .collect();
    assert_eq!(sent, ["0", "1", "2", "3"]);
}

// ---- offset ------------------------------------------------------------------------

#[test]
fn offset_with_limit_and_total_collects_everything() {
    let api = api_with(30, offset_paging(10, true));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = offset(param = \"offset\", limit_param = \"limit\", limit = 10, total = $.total)\n  records = $.data[*]",
    );
    assert_all(&p, 30);
    // Offsets 10 and 20 are in flight together (known from `total`): the order they
    // arrive in is not fixed, the requests are.
    let mut sent: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r.query_value("offset").unwrap_or("-"),
                r.query_value("limit").unwrap_or("-")
            )
        })
        .collect();
    sent.sort();
    assert_eq!(sent, ["0/10", "10/10", "20/10"], "offset >= total stops");
}

#[test]
fn offset_stops_at_a_short_page() {
    let api = api_with(25, offset_paging(10, false));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = offset(limit_param = \"limit\", limit = 10)\n  records = $.data[*]",
    );
    assert_all(&p, 25);
    assert_eq!(api.hits(PATH), 3);
}

#[test]
fn offset_stops_at_the_empty_page() {
    let api = api_with(25, offset_paging(10, false));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = offset()\n  records = $.data[*]",
    );
    assert_all(&p, 25);
    let sent: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("offset").unwrap_or("-").to_string())
        .collect();
    assert_eq!(
        sent,
        ["0", "10", "20", "25"],
        "the offset grows by the record count"
    );
}

// ---- cursor ------------------------------------------------------------------------

#[test]
fn cursor_with_an_opaque_token_collects_everything() {
    let api = api_with(25, Paging::cursor_token(10));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = cursor(param = \"cursor\", from = $.next_cursor)\n  records = $.data[*]",
    );
    assert_all(&p, 25);
    let sent: Vec<Option<String>> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("cursor").map(str::to_string))
        .collect();
    // the API answers 400 to a mangled token, so arriving intact is the proof
    assert_eq!(
        sent,
        vec![
            None,
            Some(support::cursor_token(10)),
            Some(support::cursor_token(20))
        ],
        "stops at the null cursor"
    );
    let token = support::cursor_token(10);
    assert!(token.contains('+') && token.contains('/') && token.ends_with('='));
}

#[test]
fn cursor_stripe_style_stops_when_has_more_is_false() {
    // 30 records: the third page is full, so only `has_more = false` stops there
    let api = api_with(30, Paging::stripe(10));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  query { limit = 10 }\n  paginate = cursor(param = \"starting_after\", from = $.data[-1].id, has_more = $.has_more)\n  records = $.data[*]",
    );
    assert_all(&p, 30);
    let sent: Vec<Option<String>> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("starting_after").map(str::to_string))
        .collect();
    assert_eq!(
        sent,
        vec![None, Some("r00010".into()), Some("r00020".into())]
    );
}

#[test]
fn cursor_stops_when_from_selects_nothing() {
    // no has_more: the empty page after the last one has no last id
    let api = api_with(
        20,
        Paging::Cursor {
            param: "starting_after".into(),
            limit_param: None,
            page_size: 10,
            records_key: "data".into(),
            next: CursorNext::LastId {
                id_field: "id".into(),
            },
            has_more_key: None,
        },
    );
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = cursor(param = \"starting_after\", from = $.data[-1].id)\n  records = $.data[*]",
    );
    assert_all(&p, 20);
    assert_eq!(api.hits(PATH), 3);
}

// ---- next_url and link_header --------------------------------------------------------

fn next_url_run(relative: bool) {
    let api = api_with(25, Paging::next_url(10, relative));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = next_url($._links.next.href)\n  records = $._embedded.items[*]",
    );
    assert_all(&p, 25);
    let pages: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("page").map(str::to_string))
        .collect();
    assert_eq!(
        pages,
        vec![None, Some("2".into()), Some("3".into())],
        "no next link ends it"
    );
}

#[test]
fn next_url_with_relative_links_collects_everything() {
    next_url_run(true);
}

#[test]
fn next_url_with_absolute_links_collects_everything() {
    next_url_run(false);
}

#[test]
fn link_header_collects_everything() {
    let api = api_with(25, Paging::link_header(10));
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  query { per_page = 10 }\n  paginate = link_header()",
    );
    assert_all(&p, 25);
    let pages: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("page").map(str::to_string))
        .collect();
    assert_eq!(pages, vec![None, Some("2".into()), Some("3".into())]);
}

#[test]
fn link_header_with_relative_links() {
    let api = api_with(
        25,
        Paging::LinkHeader {
            per_page_param: None,
            default_per_page: 10,
            relative: true,
        },
    );
    let (p, _) = collect(&api, "get = \"/items\"\n  paginate = link_header()");
    assert_all(&p, 25);
    assert_eq!(api.hits(PATH), 3);
}

// ---- none --------------------------------------------------------------------------

#[test]
fn none_with_an_array_body() {
    let api = api_with(7, Paging::none());
    let (p, _) = collect(&api, "get = \"/items\"");
    assert_all(&p, 7);
    assert_eq!(api.hits(PATH), 1);
}

#[test]
fn none_with_records() {
    let api = api_with(
        7,
        Paging::None {
            records_key: Some("items".into()),
        },
    );
    let (p, _) = collect(
        &api,
        "get = \"/items\"\n  paginate = none\n  records = $.items[*]",
    );
    assert_all(&p, 7);
    assert_eq!(api.hits(PATH), 1);
}

#[test]
fn a_body_without_an_array_and_no_records_fails_naming_records() {
    let api = api_with(
        7,
        Paging::None {
            records_key: Some("items".into()),
        },
    );
    let p = Pipeline::new(&one_source(&api.url(), "get = \"/items\""));
    let err = p.run_failing();
    assert_contains(&err, "`records`");
    assert!(p.jsonl("out/src.jsonl").is_empty());
}

// ---- max_pages and loops -------------------------------------------------------------

#[test]
fn max_pages_stops_with_a_warning() {
    let api = api_with(50, page_paging(10, false));
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 10, max_pages = 2)\n  records = $.data[*]",
    );
    assert_eq!(api.hits(PATH), 2);
    assert_all(&p, 20);
    assert_contains(&summary, "warning");
    assert_contains(&summary, "max_pages");
}

#[test]
fn a_repeated_next_link_stops_with_a_warning() {
    let api = api_with(50, Paging::next_url(10, false));
    // the third page links back to the second
    api.fail_after(PATH, 2, Fault::NextLinkToPage(2));
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  paginate = next_url($._links.next.href)\n  records = $._embedded.items[*]",
    );
    assert_eq!(api.hits(PATH), 3);
    assert_all(&p, 30);
    assert_contains(&summary, "warning");
    assert_contains(&summary, "loop");
}

#[test]
fn a_repeated_link_header_stops_with_a_warning() {
    let api = api_with(50, Paging::link_header(10));
    api.fail_after(PATH, 1, Fault::RepeatCursor);
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  query { per_page = 10 }\n  paginate = link_header()",
    );
    assert_eq!(api.hits(PATH), 2);
    assert_all(&p, 20);
    assert_contains(&summary, "loop");
}

#[test]
fn a_repeated_cursor_stops_with_a_warning() {
    let api = api_with(50, Paging::cursor_token(10));
    api.fail_after(PATH, 1, Fault::RepeatCursor);
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  paginate = cursor(param = \"cursor\", from = $.next_cursor)\n  records = $.data[*]",
    );
    assert_eq!(api.hits(PATH), 2);
    assert_all(&p, 20);
    assert_contains(&summary, "warning");
    assert_contains(&summary, "loop");
}

#[test]
fn a_repeated_stripe_cursor_stops_with_a_warning() {
    let api = api_with(50, Paging::stripe(10));
    api.fail_after(PATH, 1, Fault::RepeatCursor);
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  paginate = cursor(param = \"starting_after\", from = $.data[-1].id, has_more = $.has_more)\n  records = $.data[*]",
    );
    assert_eq!(api.hits(PATH), 2);
    assert_all(&p, 10);
    assert_contains(&summary, "loop");
}

#[test]
fn identical_page_bodies_stop_with_a_warning() {
    let api = api_with(50, page_paging(10, false));
    api.fail_after(PATH, 1, Fault::SamePageAgain);
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 10)\n  records = $.data[*]",
    );
    assert_eq!(api.hits(PATH), 2);
    assert_all(&p, 10);
    assert_contains(&summary, "warning");
    assert_contains(&summary, "loop");
}

// ---- query --------------------------------------------------------------------------

#[test]
fn query_parameters_go_with_every_built_page() {
    let query = "query { status = \"open\"  \"odd key\" = \"a+b c\" }";
    let cases: Vec<(Paging, String)> = vec![
        (
            page_paging(10, false),
            "paginate = page()\n  records = $.data[*]".into(),
        ),
        (
            offset_paging(10, false),
            "paginate = offset()\n  records = $.data[*]".into(),
        ),
        (
            Paging::cursor_token(10),
            "paginate = cursor(param = \"cursor\", from = $.next_cursor)\n  records = $.data[*]"
                .into(),
        ),
        (
            Paging::next_url(10, true),
            "paginate = next_url($._links.next.href)\n  records = $._embedded.items[*]".into(),
        ),
    ];
    for (paging, body) in cases {
        let api = api_with(25, paging.clone());
        let (p, _) = collect(&api, &format!("get = \"/items\"\n  {query}\n  {body}"));
        assert_all(&p, 25);
        let reqs = api.requests_to(PATH);
        assert!(reqs.len() >= 3, "{paging:?}: {} requests", reqs.len());
        for r in &reqs {
            assert_eq!(
                r.query_value("status"),
                Some("open"),
                "{paging:?}: {}",
                r.target
            );
            assert_eq!(
                r.query_value("odd key"),
                Some("a+b c"),
                "{paging:?}: {}",
                r.target
            );
            assert_eq!(
                r.query_values("status").len(),
                1,
                "{paging:?}: {}",
                r.target
            );
        }
    }
}

// ---- requests -------------------------------------------------------------------------

#[test]
fn the_path_is_appended_to_a_base_url_with_a_path() {
    let api = TestApi::start_blocking();
    api.set_records("/v2/items", records::make(3));
    for base in ["/v2", "/v2/"] {
        let p = Pipeline::new(&one_source(
            &format!("{}{base}", api.url()),
            "get = \"/items\"",
        ));
        p.run_ok();
        assert_all(&p, 3);
    }
    assert_eq!(api.hits("/v2/items"), 2);
    assert_eq!(api.total_hits(), 2);
}

#[test]
fn post_sends_its_body_with_every_page() {
    let api = api_with(12, page_paging(5, false));
    let (p, _) = collect(
        &api,
        "post = \"/items\"\n  body { q = \"shoes\"  filter { status = \"open\"  min = 2 }  tags = [\"a\", \"b\"] }\n  paginate = page(size_param = \"per_page\", size = 5)\n  records = $.data[*]",
    );
    assert_all(&p, 12);
    let reqs = api.requests_to(PATH);
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.body_json(),
            Some(
                serde_json::json!({"q": "shoes", "filter": {"status": "open", "min": 2}, "tags": ["a", "b"]})
            )
        );
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.contains("application/json")));
    }
}

#[test]
fn an_empty_page_before_total_pages_is_reported() {
    let api = TestApi::start_blocking();
    api.set_json(PATH, serde_json::json!({"data": [], "total_pages": 3}));
    let (p, summary) = collect(
        &api,
        "get = \"/items\"\n  paginate = page(total_pages = $.total_pages)\n  records = $.data[*]",
    );
    assert!(p.jsonl("out/src.jsonl").is_empty());
    assert_contains(&summary, "warning");
    assert_contains(&summary, "total_pages");
}
