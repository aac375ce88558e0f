//! Self-tests of the fake API in `tests/support/`: every paging style and every fault,
//! checked with a real HTTP client (reqwest) and, for the byte-level faults, a raw socket.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use support::{
    closed_origin, cursor_token, parse_cursor_token, records, Auth, CursorNext, Fault, Order,
    Paging, Reply, RetryAfter, TestApi,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reqwest builder (plain http; reqwest still wants a rustls provider installed).
fn builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy()
}

fn client() -> reqwest::Client {
    builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client().get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.expect("json body");
    (status, headers, body)
}

async fn get_q(url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let resp = client().get(url).query(query).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.expect("json body"))
}

fn ids(v: &Value) -> Vec<String> {
    records::ids(v.as_array().expect("array"))
}

/// Sends `request` on a fresh socket and reads until EOF, error or `limit`.
async fn raw_exchange(
    api: &TestApi,
    request: &str,
    limit: Duration,
) -> (Vec<u8>, Option<std::io::Error>, bool) {
    let mut s = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, None, true),
            Ok(Ok(0)) => return (got, None, false),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (got, Some(e), false),
        }
    }
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
}

fn head_and_body(bytes: &[u8]) -> (String, Vec<u8>) {
    let pos = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head");
    (
        String::from_utf8_lossy(&bytes[..pos]).into_owned(),
        bytes[pos + 4..].to_vec(),
    )
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .parse()
        .unwrap()
}

// ---- paging -------------------------------------------------------------------------

#[tokio::test]
async fn page_paging_walks_to_the_empty_page() {
    let api = TestApi::start().await;
    api.set_records("/items", records::make(25));
    api.serve(
        "/items",
        Paging::Page {
            param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            default_size: 10,
            records_key: "data".into(),
            total_pages_key: Some("meta/total_pages".into()),
        },
    );
    let mut all = Vec::new();
    for page in 1.. {
        let (status, body) = get_q(&api.url_for("/items"), &[("page", &page.to_string())]).await;
        assert_eq!(status, 200);
        assert_eq!(body["meta/total_pages"], json!(3));
        let got = ids(&body["data"]);
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    assert_eq!(all, records::ids(&records::make(25)));
    assert_eq!(api.hits("/items"), 4);
    // no page parameter: the first page; per_page honoured
    let (_, body) = get_q(&api.url_for("/items"), &[("per_page", "4")]).await;
    assert_eq!(ids(&body["data"]), ["r00001", "r00002", "r00003", "r00004"]);
    let (_, body) = get_q(&api.url_for("/items"), &[("page", "2"), ("per_page", "4")]).await;
    assert_eq!(ids(&body["data"])[0], "r00005");
    let (status, _) = get_q(&api.url_for("/items"), &[("page", "x")]).await;
    assert_eq!(status, 400);

    // start = 0, a JSON pointer for the total, no size parameter
    api.serve(
        "/items",
        Paging::Page {
            param: "p".into(),
            start: 0,
            size_param: None,
            default_size: 10,
            records_key: "data".into(),
            total_pages_key: Some("/meta/pages".into()),
        },
    );
    let (_, body) = get_q(&api.url_for("/items"), &[("p", "2"), ("per_page", "1")]).await;
    assert_eq!(body["meta"]["pages"], json!(3));
    assert_eq!(ids(&body["data"]).len(), 5);
    assert_eq!(ids(&body["data"])[0], "r00021");
}

#[tokio::test]
async fn offset_paging_and_total() {
    let api = TestApi::start().await;
    api.set_records("/o", records::make(23));
    api.serve(
        "/o",
        Paging::Offset {
            param: "offset".into(),
            limit_param: Some("limit".into()),
            default_limit: 100,
            records_key: "items".into(),
            total_key: Some("total".into()),
        },
    );
    let mut offset = 0;
    let mut all = Vec::new();
    loop {
        let (_, body) = get_q(
            &api.url_for("/o"),
            &[("offset", &offset.to_string()), ("limit", "7")],
        )
        .await;
        assert_eq!(body["total"], json!(23));
        let got = ids(&body["items"]);
        offset += got.len();
        let short = got.len() < 7;
        all.extend(got);
        if short {
            break;
        }
    }
    assert_eq!(all.len(), 23);
    assert_eq!(api.hits("/o"), 4);
    let (_, body) = get_q(&api.url_for("/o"), &[]).await;
    assert_eq!(ids(&body["items"]).len(), 23, "default limit");
}

#[tokio::test]
async fn cursor_tokens_need_url_encoding() {
    let api = TestApi::start().await;
    api.set_records("/c", records::make(25));
    api.serve("/c", Paging::cursor_token(10));
    let (_, first) = get_q(&api.url_for("/c"), &[]).await;
    let token = first["next_cursor"].as_str().unwrap().to_string();
    assert!(
        token.contains('+') && token.contains('/') && token.ends_with('='),
        "{token}"
    );
    assert_eq!(parse_cursor_token(&token), Some(10));
    assert_eq!(cursor_token(10), token);

    let mut all = ids(&first["data"]);
    let mut next = token.clone();
    let mut pages = 1;
    while !next.is_empty() {
        let (status, body) = get_q(&api.url_for("/c"), &[("cursor", &next)]).await;
        assert_eq!(status, 200);
        all.extend(ids(&body["data"]));
        next = body["next_cursor"].as_str().unwrap_or_default().to_string();
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(all, records::ids(&records::make(25)));
    // the log holds the decoded token
    assert_eq!(
        api.requests_to("/c")[1].query_value("cursor"),
        Some(token.as_str())
    );
    // the token pasted without encoding: `+` arrives as a space
    let resp = client()
        .get(api.url_for(&format!("/c?cursor={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn stripe_cursor_with_has_more() {
    let api = TestApi::start().await;
    api.set_records("/v1/charges", records::make(21));
    api.serve("/v1/charges", Paging::stripe(10));
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("limit", "10")];
        if let Some(a) = &after {
            q.push(("starting_after", a));
        }
        let (_, body) = get_q(&api.url_for("/v1/charges"), &q).await;
        let got = ids(&body["data"]);
        after = got.last().cloned();
        all.extend(got);
        if body["has_more"] == json!(false) {
            break;
        }
    }
    assert_eq!(all.len(), 21);
    assert_eq!(api.hits("/v1/charges"), 3);
    let (status, _) = get_q(&api.url_for("/v1/charges"), &[("starting_after", "nope")]).await;
    assert_eq!(status, 400);
}

async fn follow_next_url(api: &TestApi, start: &str) -> (Vec<String>, Vec<String>) {
    let mut url = api.url_for(start);
    let mut all = Vec::new();
    let mut seen = Vec::new();
    loop {
        seen.push(url.clone());
        let (_, _, body) = get(&url).await;
        all.extend(ids(&body["_embedded"]["items"]));
        match body["_links"]["next"]["href"].as_str() {
            None => return (all, seen),
            Some(next) => {
                url = url::Url::parse(&url)
                    .unwrap()
                    .join(next)
                    .unwrap()
                    .to_string()
            }
        }
        assert!(seen.len() < 20, "runaway");
    }
}

#[tokio::test]
async fn next_url_absolute_and_relative_keep_the_query() {
    let api = TestApi::start().await;
    api.set_records("/pay/payments", records::make(25));
    api.set_since_filter("/pay/payments", "since", "created_at");
    for relative in [false, true] {
        api.serve("/pay/payments", Paging::next_url(10, relative));
        let (_, _, body) = get(&api.url_for("/pay/payments")).await;
        let next = body["_links"]["next"]["href"].as_str().unwrap();
        if relative {
            assert_eq!(next, "/pay/payments?page=2");
        } else {
            assert_eq!(next, api.url_for("/pay/payments?page=2"));
        }
        let (all, _) = follow_next_url(&api, "/pay/payments").await;
        assert_eq!(all.len(), 25);
        // since: created_at(10) is shared by records 10, 11, 12
        let since = records::created_at(10);
        let start = format!("/pay/payments?since={since}");
        let (all, urls) = follow_next_url(&api, &start).await;
        assert_eq!(all.len(), 16);
        assert_eq!(all[0], "r00010");
        assert!(
            urls[1].contains("since=2026-01-01T00%3A03%3A00Z"),
            "{}",
            urls[1]
        );
    }
}

#[tokio::test]
async fn link_header_paging() {
    let api = TestApi::start().await;
    api.set_records("/repos", records::make(12));
    api.serve("/repos", Paging::link_header(5));
    let mut url = api.url_for("/repos?per_page=5");
    let mut all = Vec::new();
    let mut links = Vec::new();
    loop {
        let (status, headers, body) = get(&url).await;
        assert_eq!(status, 200);
        all.extend(ids(&body));
        let link = headers["link"].to_str().unwrap().to_string();
        links.push(link.clone());
        let next = link.split(", ").find_map(|part| {
            part.strip_suffix("; rel=\"next\"")
                .map(|u| u.trim_matches(|c| c == '<' || c == '>').to_string())
        });
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(all.len(), 12);
    assert_eq!(api.hits("/repos"), 3);
    assert!(links[0].starts_with(&format!(
        "<{}/repos?per_page=5&page=1>; rel=\"first\"",
        api.url()
    )));
    assert!(links[1].contains("rel=\"prev\""));
    assert!(!links[2].contains("rel=\"next\""));
    assert!(links[2].contains("page=3>; rel=\"last\""));
}

#[tokio::test]
async fn none_and_fixed_replies() {
    let api = TestApi::start().await;
    api.set_records("/all", records::make(3));
    let (_, _, body) = get(&api.url_for("/all")).await;
    assert_eq!(ids(&body).len(), 3);
    api.serve("/all", Paging::wrapped("/result/items"));
    let (_, _, body) = get(&api.url_for("/all?x=1")).await;
    assert_eq!(ids(&body["result"]["items"]).len(), 3);

    api.set_json(
        "/one",
        serde_json::from_str(r#"{"id": "a", "n": 1.50}"#).unwrap(),
    );
    let resp = client().get(api.url_for("/one")).send().await.unwrap();
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"id":"a","n":1.50}"#,
        "arbitrary precision kept"
    );
    api.set_reply(
        "/teapot",
        Reply::text(418, "text/plain", "short and stout").with_header("x-a", "b"),
    );
    let resp = client().get(api.url_for("/teapot")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(resp.headers()["x-a"], "b");
    api.set_handler("/echo", |req| {
        Reply::json(&json!({"q": req.query_value("q"), "m": req.method}))
    });
    let (_, _, body) = get(&api.url_for("/echo?q=a%20b")).await;
    assert_eq!(body, json!({"q": "a b", "m": "GET"}));
    let (status, _, _) = get(&api.url_for("/missing")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn order_and_since_filter() {
    let api = TestApi::start().await;
    api.set_records("/d", records::make(9));
    api.set_order("/d", Order::Descending("created_at".into()));
    let (_, _, body) = get(&api.url_for("/d")).await;
    // newest first; ties keep insertion order
    assert_eq!(
        ids(&body),
        [
            "r00007", "r00008", "r00009", "r00004", "r00005", "r00006", "r00001", "r00002",
            "r00003"
        ]
    );
    api.set_order("/d", Order::Descending("seq".into()));
    let (_, _, body) = get(&api.url_for("/d")).await;
    assert_eq!(ids(&body)[0], "r00009");
    api.set_order("/d", Order::Ascending("seq".into()));
    api.set_since_filter("/d", "created_since", "created_at");
    let since = records::created_at(4);
    let (_, body) = get_q(&api.url_for("/d"), &[("created_since", &since)]).await;
    assert_eq!(
        ids(&body),
        ["r00004", "r00005", "r00006", "r00007", "r00008", "r00009"]
    );
    api.set_since_filter("/d", "min_seq", "seq");
    let (_, body) = get_q(&api.url_for("/d"), &[("min_seq", "8")]).await;
    assert_eq!(ids(&body), ["r00008", "r00009"]);
}

#[tokio::test]
async fn data_grows_while_paging() {
    let api = TestApi::start().await;
    api.set_records("/g", records::make(10));
    api.serve("/g", Paging::page(10));
    api.push_records_after("/g", 1, records::range(11, 5));
    let (_, body) = get_q(&api.url_for("/g"), &[("page", "1")]).await;
    assert_eq!(ids(&body["data"]).len(), 10);
    assert_eq!(api.records("/g").len(), 10, "not pushed yet");
    let (_, body) = get_q(&api.url_for("/g"), &[("page", "2")]).await;
    assert_eq!(ids(&body["data"]), records::ids(&records::range(11, 5)));
    api.push_records("/g", records::range(16, 1));
    api.upsert_record(
        "/g",
        "id",
        records::changed(&records::record(1), "amount", json!("1.00")),
    );
    let recs = api.records("/g");
    assert_eq!(recs.len(), 16);
    assert_eq!(recs[0]["amount"], json!("1.00"));
    assert_eq!(recs[0]["updated_at"], json!("2026-01-02T01:00:00Z"));
}

// ---- faults -------------------------------------------------------------------------

#[tokio::test]
async fn status_faults_queue_in_order() {
    let api = TestApi::start().await;
    api.set_records("/s", records::make(2));
    api.fail_next("/s", Fault::Status(503));
    api.fail_next("/s", Fault::StatusWithBody(500, r#"{"oops":true}"#.into()));
    assert_eq!(api.pending_faults("/s"), 2);
    let c = client();
    let r = c.get(api.url_for("/s")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let r = c.get(api.url_for("/s")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(r.text().await.unwrap(), r#"{"oops":true}"#);
    let r = c.get(api.url_for("/s")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    api.fail_after("/s", 2, Fault::Status(502));
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            c.get(api.url_for("/s"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 200, 502, 200]);

    api.fail_next("/s", Fault::Status(400));
    api.fail_always("/s", Fault::Status(500));
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            c.get(api.url_for("/s"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [400, 500, 500]);
    api.clear_faults("/s");
    assert_eq!(
        c.get(api.url_for("/s"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn too_many_requests_with_retry_after() {
    let api = TestApi::start().await;
    api.set_records("/r", records::make(1));
    api.fail_next(
        "/r",
        Fault::TooManyRequests {
            retry_after: RetryAfter::Seconds(3),
        },
    );
    let when = SystemTime::now() + Duration::from_secs(120);
    api.fail_next(
        "/r",
        Fault::TooManyRequests {
            retry_after: RetryAfter::HttpDate(when),
        },
    );
    api.fail_next("/r", Fault::StatusRetryAfter(503, RetryAfter::Seconds(1)));
    let r = client().get(api.url_for("/r")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let r = client().get(api.url_for("/r")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let date = httpdate::parse_http_date(r.headers()["retry-after"].to_str().unwrap()).unwrap();
    let secs = date.duration_since(SystemTime::now()).unwrap().as_secs();
    assert!((115..=120).contains(&secs), "{secs}");
    let r = client().get(api.url_for("/r")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
}

#[tokio::test]
async fn reset_mid_body_is_a_client_error() {
    let api = TestApi::start().await;
    api.set_records("/x", records::make(50));
    api.fail_next("/x", Fault::ResetMidBody);
    let r = client()
        .get(api.url_for("/x"))
        .send()
        .await
        .expect("head arrives");
    assert_eq!(r.status().as_u16(), 200);
    let err = r.bytes().await.expect_err("body must fail");
    assert!(!err.is_timeout(), "{err:?}");
    // on the wire: part of the body, then ECONNRESET
    api.fail_next("/x", Fault::ResetMidBody);
    let (bytes, err, timed_out) =
        raw_exchange(&api, &get_request("/x"), Duration::from_secs(5)).await;
    assert!(!timed_out);
    let err = err.expect("a read error, not EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let (head, body) = head_and_body(&bytes);
    assert!(!body.is_empty() && body.len() < content_length(&head));
    // the next request is fine
    assert_eq!(get(&api.url_for("/x")).await.0, 200);
}

#[tokio::test]
async fn short_body_is_a_client_body_error() {
    let api = TestApi::start().await;
    api.set_records("/x", records::make(50));
    api.fail_next("/x", Fault::ShortBody);
    let r = client()
        .get(api.url_for("/x"))
        .send()
        .await
        .expect("head arrives");
    assert_eq!(r.status().as_u16(), 200);
    let err = r.bytes().await.expect_err("body must fail");
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    api.fail_next("/x", Fault::ShortBody);
    let (bytes, err, timed_out) =
        raw_exchange(&api, &get_request("/x"), Duration::from_secs(5)).await;
    assert!(err.is_none() && !timed_out, "clean EOF");
    let (head, body) = head_and_body(&bytes);
    assert!(body.len() < content_length(&head));
}

#[tokio::test]
async fn hang_does_not_answer() {
    let api = TestApi::start().await;
    api.set_records("/h", records::make(1));
    api.fail_next("/h", Fault::Hang(Duration::from_secs(30)));
    let c = builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = c
        .get(api.url_for("/h"))
        .send()
        .await
        .expect_err("must time out");
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        c.get(api.url_for("/h"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // on the wire: not a byte within the window, then a close without an answer
    api.fail_next("/h", Fault::Hang(Duration::from_millis(700)));
    let (bytes, _, timed_out) =
        raw_exchange(&api, &get_request("/h"), Duration::from_millis(400)).await;
    assert!(timed_out && bytes.is_empty());
    api.fail_next("/h", Fault::Hang(Duration::from_millis(200)));
    let (bytes, _, timed_out) =
        raw_exchange(&api, &get_request("/h"), Duration::from_secs(5)).await;
    assert!(!timed_out && bytes.is_empty());
}

#[tokio::test]
async fn close_without_answer_and_raw_bytes() {
    let api = TestApi::start().await;
    api.fail_next("/z", Fault::CloseWithoutAnswer);
    let err = client()
        .get(api.url_for("/z"))
        .send()
        .await
        .expect_err("no answer");
    assert!(!err.is_timeout());
    api.fail_next(
        "/z",
        Fault::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]".to_vec()),
    );
    let (_, _, body) = get(&api.url_for("/z")).await;
    assert_eq!(body, json!([]));
    let err = client()
        .get(closed_origin())
        .send()
        .await
        .expect_err("refused");
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn malformed_json_and_html() {
    let api = TestApi::start().await;
    api.set_records("/m", records::make(1));
    api.fail_next("/m", Fault::MalformedJson);
    api.fail_next("/m", Fault::Html);
    let r = client().get(api.url_for("/m")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    assert_eq!(text, r#"{"data": [1, 2"#);
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let r = client().get(api.url_for("/m")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.json::<Value>().await.is_err());
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn huge_bodies_stream() {
    let api = TestApi::start().await;
    api.fail_next("/big", Fault::Huge(1000));
    let r = client().get(api.url_for("/big")).send().await.unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), 1000);
    let v: Value = serde_json::from_slice(&body).expect("valid JSON");
    assert_eq!(v["data"], json!([]));

    const SIZE: u64 = 200 * 1024 * 1024;
    for fault in [Fault::Huge(SIZE), Fault::HugeChunked(SIZE)] {
        let chunked = matches!(fault, Fault::HugeChunked(_));
        api.fail_next("/big", fault);
        let mut r = client().get(api.url_for("/big")).send().await.unwrap();
        assert_eq!(r.headers().contains_key("content-length"), !chunked);
        assert_eq!(r.content_length(), (!chunked).then_some(SIZE));
        let mut total = 0u64;
        let mut first = None;
        let mut last = Vec::new();
        while let Some(chunk) = r.chunk().await.unwrap() {
            total += chunk.len() as u64;
            first.get_or_insert_with(|| chunk.slice(..8.min(chunk.len())));
            last.extend_from_slice(&chunk);
            let keep = last.len().saturating_sub(8);
            last.drain(..keep);
        }
        assert_eq!(total, SIZE);
        assert!(first.unwrap().starts_with(b"{\"data\""));
        assert!(last.ends_with(b"xx\"}"));
    }
    // neither side ever held a body: the process never came near 200 MiB
    let peak = peak_rss_kib();
    eprintln!("peak RSS {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    // keep-alive still works after the huge answers
    assert_eq!(get(&api.url_for("/missing")).await.0, 404);
}

#[tokio::test]
async fn redirects() {
    let api = TestApi::start().await;
    let other = TestApi::start().await;
    other.set_records("/landing", records::make(2));
    api.fail_next("/r", Fault::RedirectTo(other.url_for("/landing")));
    let r = client().get(api.url_for("/r")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], other.url_for("/landing").as_str());
    assert_eq!(other.hits("/landing"), 0);
    api.fail_next("/r", Fault::Redirect(307, other.url_for("/landing")));
    let following = builder().build().unwrap();
    let r = following.get(api.url_for("/r")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(other.hits("/landing"), 1);
}

#[tokio::test]
async fn header_and_delay_modifiers() {
    let api = TestApi::start().await;
    api.set_records("/l", records::make(2));
    api.fail_next(
        "/l",
        Fault::RateLimitHeaders {
            remaining: 0,
            reset_secs: 2,
        },
    );
    let (status, headers, body) = get(&api.url_for("/l")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body).len(), 2);
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-reset"], "2");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["x-ratelimit-reset"], "2");
    assert!(headers.contains_key("x-ratelimit-limit"));
    api.fail_next(
        "/l",
        Fault::Headers(vec![("X-RateLimit-Reset".into(), "1767225600".into())]),
    );
    let (_, headers, _) = get(&api.url_for("/l")).await;
    assert_eq!(headers["x-ratelimit-reset"], "1767225600");
    api.fail_next("/l", Fault::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    let (status, _, _) = get(&api.url_for("/l")).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

// ---- pagination loops ---------------------------------------------------------------

#[tokio::test]
async fn next_link_back_to_an_earlier_page() {
    let api = TestApi::start().await;
    api.set_records("/n", records::make(50));
    api.serve("/n", Paging::next_url(10, true));
    api.fail_after("/n", 2, Fault::NextLinkToPage(2));
    let mut url = api.url_for("/n");
    let mut seen = Vec::new();
    while !seen.contains(&url) {
        seen.push(url.clone());
        let (_, _, body) = get(&url).await;
        let next = body["_links"]["next"]["href"].as_str().unwrap();
        url = api.url_for(next);
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(url, api.url_for("/n?page=2"));

    api.serve("/n", Paging::link_header(10));
    api.fail_next("/n", Fault::NextLinkToPage(1));
    api.fail_next("/n", Fault::RepeatCursor);
    let (_, headers, _) = get(&api.url_for("/n?page=3")).await;
    assert!(headers["link"]
        .to_str()
        .unwrap()
        .contains("page=1>; rel=\"next\""));
    let (_, headers, _) = get(&api.url_for("/n?page=4")).await;
    assert!(headers["link"]
        .to_str()
        .unwrap()
        .contains("page=4>; rel=\"next\""));
}

#[tokio::test]
async fn repeating_cursors() {
    let api = TestApi::start().await;
    api.set_records("/c", records::make(30));
    api.serve("/c", Paging::cursor_token(10));
    let (_, first) = get_q(&api.url_for("/c"), &[]).await;
    let token = first["next_cursor"].as_str().unwrap().to_string();
    api.fail_next("/c", Fault::RepeatCursor);
    let (_, second) = get_q(&api.url_for("/c"), &[("cursor", &token)]).await;
    assert_eq!(second["next_cursor"].as_str(), Some(token.as_str()));

    api.serve("/c", Paging::stripe(10));
    let (_, first) = get_q(&api.url_for("/c"), &[]).await;
    let last = ids(&first["data"]).pop().unwrap();
    api.fail_next("/c", Fault::RepeatCursor);
    let (_, second) = get_q(&api.url_for("/c"), &[("starting_after", &last)]).await;
    assert_eq!(ids(&second["data"]).pop().unwrap(), last);
    assert_eq!(second["has_more"], json!(true));
    assert_eq!(second, first, "the same page again");
}

#[tokio::test]
async fn identical_page_bodies() {
    let api = TestApi::start().await;
    api.set_records("/p", records::make(30));
    api.serve("/p", Paging::page(10));
    api.fail_after("/p", 1, Fault::SamePageAgain);
    let one = client()
        .get(api.url_for("/p?page=1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let two = client()
        .get(api.url_for("/p?page=2"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let three = client()
        .get(api.url_for("/p?page=3"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(one, two);
    assert_ne!(two, three);
    assert_eq!(
        ids(&serde_json::from_slice::<Value>(&three).unwrap()["data"])[0],
        "r00021"
    );
}

#[tokio::test]
async fn next_link_to_another_origin_and_credentials() {
    let api = TestApi::start().await;
    let evil = TestApi::start().await;
    api.require(Auth::Query("api_key".into(), "s3cr3t".into()));
    api.set_records("/n", records::make(5));
    api.serve("/n", Paging::next_url(10, true));
    api.fail_next("/n", Fault::NextLinkTo(evil.origin()));
    let (status, _, body) = get(&api.url_for("/n?api_key=s3cr3t&q=1")).await;
    assert_eq!(status, 200);
    let next = body["_links"]["next"]["href"].as_str().unwrap();
    assert_eq!(
        next,
        evil.url_for("/n?q=1&page=2"),
        "absolute, key stripped"
    );
    let _ = get(next).await;
    assert_eq!(evil.hits("/n"), 1);
    assert!(!evil.saw_header_value("s3cr3t"));
    assert!(api.saw_header_value("s3cr3t"));

    api.serve("/n", Paging::link_header(10));
    api.fail_next("/n", Fault::NextLinkTo(evil.origin()));
    let (_, headers, _) = get(&api.url_for("/n?api_key=s3cr3t")).await;
    let link = headers["link"].to_str().unwrap();
    assert!(
        link.contains(&format!("<{}/n?per_page=10", evil.origin()))
            || link.contains(&format!("<{}/n?page=2>; rel=\"next\"", evil.origin())),
        "{link}"
    );
}

// ---- auth and the request log -------------------------------------------------------

#[tokio::test]
async fn auth_kinds() {
    let api = TestApi::start().await;
    api.set_records("/a", records::make(1));
    let c = client();
    let url = api.url_for("/a");

    api.require(Auth::Bearer("tok".into()));
    assert_eq!(c.get(&url).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(
        c.get(&url)
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        c.get(&url)
            .bearer_auth("tok")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    api.require(Auth::Basic("user".into(), "p:ss".into()));
    let r = c
        .get(&url)
        .basic_auth("user", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let r = c
        .get(&url)
        .basic_auth("user", Some("p:ss"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    api.require(Auth::Header("X-Api-Key".into(), "k1".into()));
    assert_eq!(
        c.get(&url)
            .header("x-api-key", "k2")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        c.get(&url)
            .header("x-api-key", "k1")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    api.require(Auth::Query("key".into(), "a+b".into()));
    // no fault is consumed by a refused request
    api.fail_next("/a", Fault::Status(500));
    assert_eq!(c.get(&url).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(api.pending_faults("/a"), 1);
    assert_eq!(
        c.get(&url)
            .query(&[("key", "a+b")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        500
    );
    assert_eq!(
        c.get(&url)
            .query(&[("key", "a+b")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    api.require_nothing();
    assert_eq!(c.get(&url).send().await.unwrap().status().as_u16(), 200);

    assert!(api.saw_header_value("p:ss"), "decoded Basic credentials");
    assert!(api.saw_header_value("a+b"), "decoded query values");
    assert!(!api.saw_header_value("never-sent"));
}

#[tokio::test]
async fn the_request_log() {
    let api = TestApi::start().await;
    api.set_records("/log/it", records::make(1));
    let r = client()
        .post(api.url_for("/log/it?a=1&b=x%20y&b=z&plus=1%2B1"))
        .header("X-Mixed-Case", "V")
        .json(&json!({"k": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = get(&api.url_for("/log/it%20x")).await;
    let log = api.requests();
    assert_eq!(log.len(), 2);
    let first = &log[0];
    assert_eq!(first.seq, 1);
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/log/it");
    assert_eq!(first.query_values("b"), ["x y", "z"]);
    assert_eq!(first.query_value("plus"), Some("1+1"));
    assert_eq!(
        first.query,
        [("a", "1"), ("b", "x y"), ("b", "z"), ("plus", "1+1")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(first.header("x-mixed-case"), Some("V"));
    assert!(first
        .headers
        .iter()
        .all(|(k, _)| *k == k.to_ascii_lowercase()));
    assert_eq!(first.body_json(), Some(json!({"k": "v"})));
    assert_eq!(log[1].path, "/log/it%20x");
    assert_eq!(log[1].decoded_path, "/log/it x");
    assert_eq!(api.requests_to("/log/it x").len(), 1);
    assert_eq!(api.hits("/log/it"), 1);
    assert_eq!(api.total_hits(), 2);
    assert!(api.saw_anywhere("\"k\""));
    assert!(!api.saw_header_value("\"k\""));
    api.clear_requests();
    assert_eq!(api.total_hits(), 0);
}

#[tokio::test]
async fn wait_for_hits_and_chunked_requests() {
    let api = TestApi::start().await;
    api.set_records("/w", records::make(1));
    assert!(!api.wait_for_hits("/w", 1, Duration::from_millis(50)).await);
    let url = api.url_for("/w");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = client().get(url).send().await;
    });
    assert!(api.wait_for_hits("/w", 1, Duration::from_secs(5)).await);

    let req = "POST /w HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
    let (bytes, _, _) = raw_exchange(&api, req, Duration::from_secs(5)).await;
    assert!(bytes.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(api.requests_to("/w").last().unwrap().body, b"abcde");
}

/// A plain blocking GET on a fresh connection.
fn blocking_get(api: &TestApi, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn works_from_a_blocking_test() {
    let api = TestApi::start_blocking();
    api.set_records("/b", records::make(2));
    let answer = blocking_get(&api, "/b");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("connection: close"));
    assert!(answer.ends_with(r#""tags":["x","even"]}]"#));
    assert!(api.wait_for_hits_blocking("/b", 1, Duration::from_secs(1)));
    let addr = api.addr();
    drop(api);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped on drop"
    );
}

#[tokio::test]
async fn answers_while_a_current_thread_test_blocks() {
    let api = TestApi::start().await;
    api.set_records("/b", records::make(1));
    // a synchronous call inside the test's only runtime thread
    assert!(blocking_get(&api, "/b").starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn records_are_deterministic() {
    let r = records::record(1);
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"id":"r00001","seq":1,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T01:00:00Z","amount":"12.50","currency":"EUR","name":"Item 1","nested":{"a":1},"tags":["x"]}"#
    );
    let rs = records::make(7);
    assert_eq!(rs[2]["created_at"], rs[0]["created_at"]);
    assert_ne!(rs[3]["created_at"], rs[0]["created_at"]);
    assert_eq!(rs[6]["created_at"], json!("2026-01-01T00:02:00Z"));
    assert_eq!(rs[1]["amount"], json!("13.75"));
    assert_eq!(records::make(7), records::make(7));
    assert_eq!(records::range(3, 2)[0], records::record(3));
    let c = records::changed(&r, "amount", json!("99.00"));
    assert_eq!(c["id"], r["id"]);
    assert_ne!(c["updated_at"], r["updated_at"]);
    assert_eq!(
        support::base64_decode(&support::base64_encode(b"user:p@ss")).unwrap(),
        b"user:p@ss"
    );
    assert!(matches!(
        Paging::stripe(5),
        Paging::Cursor {
            next: CursorNext::LastId { .. },
            ..
        }
    ));
}
