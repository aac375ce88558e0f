//! The paginators' stop rules, request building and loop detection, page by page.

use super::*;
use crate::check::{JsonPath, More, PathStep, Pick};

fn resp(url: &str, body: Json) -> Response {
    Response {
        url: Url::parse(url).unwrap(),
        headers: Default::default(),
        body_hash: xxhash_rust::xxh3::xxh3_64(body.to_string().as_bytes()),
        body,
        records: None,
    }
}

#[test]
fn page_stops_on_short_page_and_total() {
    let p = Paginate::Page {
        param: "page".into(),
        start: 1,
        size_param: Some("n".into()),
        size: Some(2),
        total_pages: None,
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(
        &p,
        Url::parse("http://a/x?q=1").unwrap(),
        vec![("since".into(), "t".into())],
    );
    assert_eq!(pager.first().as_str(), "http://a/x?q=1&since=t&page=1&n=2");
    let same = |_: &Url| true;
    assert_eq!(
        pager.next(&resp("http://a/x", serde_json::json!({})), 2, &same),
        Next::Fetch(Url::parse("http://a/x?q=1&since=t&page=2&n=2").unwrap())
    );
    assert_eq!(
        pager.next(&resp("http://a/x", serde_json::json!({})), 1, &same),
        Next::Done
    );
}

/// Spec §5.1: a `total` that disagrees with what the pages held is a warning, both
/// ways (an empty page before it; more records than it says).
#[test]
fn offset_warns_when_total_disagrees() {
    let total = JsonPath {
        text: "$.total".into(),
        singular: Some(vec![crate::check::PathStep::Name("total".into())]),
    };
    let p = Paginate::Offset {
        param: "offset".into(),
        start: 0,
        limit_param: None,
        limit: None,
        total: Some(Pick::Body(total)),
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let same = |_: &Url| true;
    let body = serde_json::json!({"total": 15});
    let mut pager = Pager::new(&p, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    assert!(matches!(
        pager.next(&resp("http://a/x", body.clone()), 10, &same),
        Next::Fetch(_)
    ));
    assert_eq!(
        pager.next(&resp("http://a/x", body.clone()), 10, &same),
        Next::Stop("the pages held 20 records, but `total` says 15".into())
    );
    let mut pager = Pager::new(&p, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    assert!(matches!(
        pager.next(&resp("http://a/x", body.clone()), 10, &same),
        Next::Fetch(_)
    ));
    assert_eq!(
        pager.next(&resp("http://a/x", body), 0, &same),
        Next::Stop("offset 10 was empty, but `total` says 15".into())
    );
}

#[test]
fn cursor_is_url_encoded_and_loops_stop() {
    let from = JsonPath {
        text: "$.next".into(),
        singular: Some(vec![crate::check::PathStep::Name("next".into())]),
    };
    let p = Paginate::Cursor {
        param: "after".into(),
        from: Pick::Body(from),
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(&p, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    let same = |_: &Url| true;
    let Next::Fetch(u) = pager.next(
        &resp("http://a/x", serde_json::json!({"next": "a+b/c="})),
        1,
        &same,
    ) else {
        panic!()
    };
    assert_eq!(u.as_str(), "http://a/x?after=a%2Bb%2Fc%3D");
    assert!(matches!(
        pager.next(
            &resp("http://a/x", serde_json::json!({"next": "a+b/c="})),
            1,
            &same
        ),
        Next::Stop(_)
    ));
}

#[test]
fn next_url_to_another_origin_is_not_followed() {
    let path = JsonPath {
        text: "$.next".into(),
        singular: Some(vec![crate::check::PathStep::Name("next".into())]),
    };
    let mut pager = Pager::new(
        &Paginate::NextUrl {
            path: Pick::Body(path),
            more: None,
            max_pages: 100,
        },
        Url::parse("http://a/x").unwrap(),
        vec![],
    );
    pager.first();
    let base = Url::parse("http://a/").unwrap();
    let same = |u: &Url| u.origin() == base.origin();
    assert!(matches!(
        pager.next(
            &resp("http://a/x", serde_json::json!({"next": "http://evil/x"})),
            1,
            &same
        ),
        Next::Stop(_)
    ));
}

fn path(name: &str) -> JsonPath {
    JsonPath {
        text: format!("$.{name}"),
        singular: Some(vec![PathStep::Name(name.into())]),
    }
}

fn with_headers(url: &str, body: Json, headers: &[(&'static str, &'static str)]) -> Response {
    let mut r = resp(url, body);
    for (k, v) in headers {
        r.headers
            .insert(*k, reqwest::header::HeaderValue::from_static(v));
    }
    r
}

/// `in = body`: the cursor goes into the body (keeping its JSON type), not the query;
/// two requests that differ only in their body are not a loop.
#[test]
fn a_cursor_in_the_body() {
    let p = Paginate::Cursor {
        param: "paging.after".into(),
        from: Pick::Body(path("next")),
        more: None,
        in_body: true,
        max_pages: 100,
    };
    let mut pager = Pager::new(&p, Url::parse("http://a/search").unwrap(), vec![]);
    assert_eq!(pager.first().as_str(), "http://a/search");
    assert!(pager.body_fields().is_empty());
    let same = |_: &Url| true;
    let Next::Fetch(u) = pager.next(
        &resp("http://a/search", serde_json::json!({"next": 20})),
        1,
        &same,
    ) else {
        panic!()
    };
    assert_eq!(u.as_str(), "http://a/search");
    assert_eq!(
        pager.body_fields(),
        [("paging.after".to_string(), serde_json::json!(20))]
    );
    assert!(matches!(
        pager.next(
            &resp("http://a/search", serde_json::json!({"next": 40})),
            1,
            &same
        ),
        Next::Fetch(_)
    ));
    assert!(matches!(
        pager.next(
            &resp("http://a/search", serde_json::json!({"next": 40})),
            1,
            &same
        ),
        Next::Stop(_)
    ));
}

/// `done = PATH` stops when true; `has_more = header(...)` reads a header.
#[test]
fn done_and_header_flags() {
    let p = Paginate::Cursor {
        param: "cursor".into(),
        from: Pick::Body(path("after")),
        more: Some(More {
            pick: Pick::Body(path("end_of_stream")),
            done: true,
        }),
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(&p, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    let same = |_: &Url| true;
    assert!(matches!(
        pager.next(
            &resp(
                "http://a/x",
                serde_json::json!({"after": "c1", "end_of_stream": false})
            ),
            1,
            &same
        ),
        Next::Fetch(_)
    ));
    assert_eq!(
        pager.next(
            &resp(
                "http://a/x",
                serde_json::json!({"after": "c2", "end_of_stream": true})
            ),
            1,
            &same
        ),
        Next::Done
    );
    let p = Paginate::Page {
        param: "page".into(),
        start: 1,
        size_param: None,
        size: None,
        total_pages: Some(Pick::Header("x-wp-totalpages".into())),
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(&p, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    let page = |n| {
        with_headers(
            "http://a/x",
            serde_json::json!([1]),
            &[("x-wp-totalpages", n)],
        )
    };
    assert!(matches!(pager.next(&page("2"), 1, &same), Next::Fetch(_)));
    assert_eq!(pager.next(&page("2"), 1, &same), Next::Done);
}

/// A resume token goes in the first request only; the paginator's own value of the
/// same name wins.
#[test]
fn a_resume_token_starts_the_run() {
    let p = Paginate::Cursor {
        param: "cursor".into(),
        from: Pick::Body(path("after")),
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(&p, Url::parse("http://a/x").unwrap(), vec![])
        .with_first(vec![("cursor".into(), "stored".into())]);
    assert_eq!(pager.first().as_str(), "http://a/x?cursor=stored");
    let same = |_: &Url| true;
    let Next::Fetch(u) = pager.next(
        &resp("http://a/x", serde_json::json!({"after": "n2"})),
        1,
        &same,
    ) else {
        panic!()
    };
    assert_eq!(u.as_str(), "http://a/x?cursor=n2");
}

/// Pages in flight: the requests after the one to send now are named only once a page
/// gave the total, never past it nor past `max_pages`, and an `offset` steps by the
/// last page's count.
#[test]
fn planned_requests_stop_at_the_total_and_max_pages() {
    let urls = |planned: Vec<(Url, Vec<(String, Json)>)>| -> Vec<String> {
        planned.into_iter().map(|(u, _)| u.to_string()).collect()
    };
    let same = |_: &Url| true;
    let page = |max_pages| Paginate::Page {
        param: "page".into(),
        start: 1,
        size_param: Some("n".into()),
        size: Some(10),
        total_pages: Some(Pick::Body(path("total_pages"))),
        more: None,
        in_body: false,
        max_pages,
    };
    let mut pager = Pager::new(&page(100), Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    assert!(
        pager.planned(4).is_empty(),
        "no total is known before a page"
    );
    let body = serde_json::json!({"total_pages": 4});
    assert!(matches!(
        pager.next(&resp("http://a/x", body.clone()), 10, &same),
        Next::Fetch(_)
    ));
    assert_eq!(
        urls(pager.planned(8)),
        ["http://a/x?page=3&n=10", "http://a/x?page=4&n=10"]
    );
    assert_eq!(urls(pager.planned(1)), ["http://a/x?page=3&n=10"]);
    // A page without the total: nothing more is planned.
    assert!(matches!(
        pager.next(&resp("http://a/x", serde_json::json!({})), 10, &same),
        Next::Fetch(_)
    ));
    assert!(pager.planned(8).is_empty());

    // `max_pages = 3`: page 2 is the second request, only page 3 may follow.
    let mut pager = Pager::new(&page(3), Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    pager.next(
        &resp("http://a/x", serde_json::json!({"total_pages": 50})),
        10,
        &same,
    );
    assert_eq!(urls(pager.planned(8)), ["http://a/x?page=3&n=10"]);

    // A hostile total does not overflow.
    let mut pager = Pager::new(&page(100), Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    pager.next(
        &resp("http://a/x", serde_json::json!({"total_pages": i64::MAX})),
        10,
        &same,
    );
    assert_eq!(pager.planned(3).len(), 3);

    let offset = Paginate::Offset {
        param: "offset".into(),
        start: 0,
        limit_param: Some("limit".into()),
        limit: Some(100),
        total: Some(Pick::Body(path("total"))),
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(&offset, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    // The server capped the page at 40: the planned offsets step by 40, below 130.
    pager.next(
        &resp("http://a/x", serde_json::json!({"total": 130})),
        40,
        &same,
    );
    assert_eq!(
        urls(pager.planned(8)),
        [
            "http://a/x?offset=80&limit=100",
            "http://a/x?offset=120&limit=100"
        ]
    );

    // A cursor is named by its page: nothing is planned.
    let cursor = Paginate::Cursor {
        param: "after".into(),
        from: Pick::Body(path("next")),
        more: None,
        in_body: false,
        max_pages: 100,
    };
    let mut pager = Pager::new(&cursor, Url::parse("http://a/x").unwrap(), vec![]);
    pager.first();
    pager.next(
        &resp("http://a/x", serde_json::json!({"next": "c"})),
        10,
        &same,
    );
    assert!(pager.planned(8).is_empty());
}
