//! End-to-end checks of the demo API over a real loopback socket, with a minimal
//! HTTP/1.1 client so that the tests need no extra dependencies.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{app, serve, DemoConfig, DemoHandle};

const BEARER: (&str, &str) = ("Authorization", "Bearer demo");
const PAY_KEY: (&str, &str) = ("X-Api-Key", "demo");

fn static_config() -> DemoConfig {
    DemoConfig {
        new_order_every: None,
        ..DemoConfig::default()
    }
}

async fn start(config: DemoConfig) -> (SocketAddr, DemoHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (router, handle) = app(&config);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, handle)
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let (addr, _) = start(static_config()).await;
    for (path, headers) in [
        ("/pos/orders", vec![]),
        ("/pos/orders", vec![("Authorization", "Bearer nope")]),
        ("/pos/orders?key=nope", vec![]),
        ("/pos/orders/ord_00001/items", vec![]),
        ("/pay/payments", vec![]),
        ("/pay/payments", vec![BEARER]),
        ("/pay/payments", vec![("X-Api-Key", "nope")]),
    ] {
        let (status, body) = get(addr, path, &headers).await;
        assert_eq!(status, 401, "{path} {headers:?}");
        assert_eq!(body["error"], "unauthorized");
        assert!(body["message"].is_string());
    }
    assert_eq!(get(addr, "/pos/orders", &[BEARER]).await.0, 200);
    assert_eq!(get(addr, "/pos/orders?key=demo", &[]).await.0, 200);
    assert_eq!(get(addr, "/pay/payments", &[PAY_KEY]).await.0, 200);
}

#[tokio::test]
async fn health_counts_the_data() {
    let (addr, handle) = start(static_config()).await;
    let (status, body) = get(addr, "/health", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    assert_eq!(u64_of(&body, "shop_orders"), 250);
    assert_eq!(u64_of(&body, "payments"), 120);
    handle.add_orders(2);
    let (_, body) = get(addr, "/health", &[]).await;
    assert_eq!(u64_of(&body, "shop_orders"), 252);
    assert_eq!(handle.payment_count(), 122);
}

#[tokio::test]
async fn page_style_lists_every_order_in_time_order() {
    let (addr, _) = start(static_config()).await;
    let mut all = Vec::new();
    for page in 1.. {
        let (status, body) = get(
            addr,
            &format!("/pos/orders?per_page=100&page={page}"),
            &[BEARER],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["data"], body["items"]);
        assert_eq!(u64_of(&body, "total"), 250);
        assert_eq!(u64_of(&body, "total_pages"), 3);
        assert_eq!(u64_of(&body, "page"), page);
        let data = body["data"].as_array().expect("data").clone();
        if data.is_empty() {
            assert_eq!(page, 4);
            break;
        }
        all.extend(data);
    }
    assert_eq!(all.len(), 250);
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|o| {
            (
                str_of(o, "created_at").to_owned(),
                str_of(o, "id").to_owned(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    assert_eq!(keys[0], ("2026-11-01T08:00:00Z".into(), "ord_00001".into()));

    let ties = keys.windows(2).filter(|w| w[0].0 == w[1].0).count();
    assert!(ties >= 10, "only {ties} shared seconds");
    let no_currency = all.iter().filter(|o| o.get("currency").is_none()).count();
    assert!(
        (3..=40).contains(&no_currency),
        "{no_currency} without currency"
    );
    let eur = all.iter().filter(|o| o["currency"] == "EUR").count() + no_currency;
    assert!((140..=210).contains(&eur), "{eur} in EUR");
    let paid = all.iter().filter(|o| o["status"] == "PAID").count();
    assert!(paid > 150, "{paid} paid");
    for o in &all {
        assert_eq!(o["total"], o["amount"]);
        let total = str_of(o, "total");
        let (units, cents) = total.split_once('.').expect("decimal");
        assert_eq!(cents.len(), 2, "{total}");
        let units: u64 = units.parse().expect("units");
        assert!((3..=180).contains(&units), "{total}");
        assert!(["OPEN", "PAID", "REFUNDED"].contains(&str_of(o, "status")));
        assert!(o["note"].is_null() || o["note"].is_string());
        assert!(str_of(o, "created_at").ends_with('Z'));
    }

    // The filter is inclusive, so an order sharing the cursor's second comes back.
    let tie = keys
        .windows(2)
        .position(|w| w[0].0 == w[1].0)
        .expect("a tie");
    let since = &keys[tie].0;
    let expected: Vec<&str> = keys
        .iter()
        .filter(|k| &k.0 >= since)
        .map(|k| k.1.as_str())
        .collect();
    let (status, body) = get(
        addr,
        &format!("/pos/orders?per_page=500&created_since={since}"),
        &[BEARER],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(u64_of(&body, "total"), expected.len() as u64);
    let got: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|o| str_of(o, "id"))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got[0], keys[tie].1);

    // An offset given as `+00:00` but not percent-encoded arrives as a space.
    let plus = since.replace('Z', "+00:00");
    let encoded = plus.replace('+', "%2B");
    let (_, a) = get(
        addr,
        &format!("/pos/orders?created_since={plus}"),
        &[BEARER],
    )
    .await;
    let (_, b) = get(
        addr,
        &format!("/pos/orders?created_since={encoded}"),
        &[BEARER],
    )
    .await;
    assert_eq!(u64_of(&a, "total"), expected.len() as u64);
    assert_eq!(a, b);
}

#[tokio::test]
async fn offset_style_pages_with_a_total() {
    let (addr, _) = start(static_config()).await;
    let (status, first) = get(addr, "/pos/orders?key=demo&offset=0&limit=200", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(u64_of(&first, "total"), 250);
    assert_eq!(first["items"].as_array().expect("items").len(), 200);
    assert_eq!(first["items"], first["data"]);
    let (_, second) = get(addr, "/pos/orders?key=demo&offset=200&limit=200", &[]).await;
    let rest = second["items"].as_array().expect("items");
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0]["id"], "ord_00201");
    let (_, past) = get(addr, "/pos/orders?key=demo&offset=250&limit=200", &[]).await;
    assert_eq!(past["items"], Value::Array(vec![]));
    let (_, default) = get(addr, "/pos/orders?key=demo&offset=10", &[]).await;
    assert_eq!(default["items"].as_array().expect("items").len(), 100);
    assert_eq!(default["items"][0]["id"], "ord_00011");
}

#[tokio::test]
async fn items_are_deterministic_per_order() {
    let (addr, _) = start(static_config()).await;
    let mut sizes = HashSet::new();
    for n in 1..=40 {
        let path = format!("/pos/orders/ord_{n:05}/items?key=demo");
        let (status, body) = get(addr, &path, &[]).await;
        assert_eq!(status, 200);
        let items = body["items"].as_array().expect("items");
        assert!((1..=4).contains(&items.len()));
        sizes.insert(items.len());
        for item in items {
            assert!(str_of(item, "sku").starts_with("SKU-"));
            assert!(!str_of(item, "name").is_empty());
            assert!((1..=3).contains(&u64_of(item, "qty")));
        }
        assert_eq!(get(addr, &path, &[]).await.1, body);
    }
    assert!(sizes.len() >= 3, "item counts vary: {sizes:?}");
    let (other, _) = start(static_config()).await;
    assert_eq!(
        get(other, "/pos/orders/ord_00007/items", &[BEARER]).await.1,
        get(addr, "/pos/orders/ord_00007/items", &[BEARER]).await.1
    );
    for unknown in ["ord_00251", "ord_1", "ord_00000", "nope", "ord_%FF"] {
        let (status, body) = get(addr, &format!("/pos/orders/{unknown}/items"), &[BEARER]).await;
        assert!(status == 404 || status == 400, "{unknown}: {status}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn payment_pages_stay_stable_while_payments_arrive() {
    let (addr, handle) = start(static_config()).await;
    let mut seen = Vec::new();
    let mut created = Vec::new();
    let mut next = Some("/pay/payments".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let (status, body) = get(addr, &path, &[PAY_KEY]).await;
        assert_eq!(status, 200, "{path}");
        let payments = body["_embedded"]["payments"].as_array().expect("payments");
        assert!(payments.len() <= 25);
        for p in payments {
            seen.push(str_of(p, "id").to_owned());
            created.push(str_of(p, "createdAt").to_owned());
            let value = str_of(&p["amount"], "value");
            assert!(value.contains('.'), "{value}");
            assert!(["EUR", "USD"].contains(&str_of(&p["amount"], "currency")));
            assert!(p["description"].is_null() || p["description"].is_string());
        }
        assert!(body["_links"]["self"]["href"].is_string());
        next = body["_links"]
            .get("next")
            .and_then(|n| n["href"].as_str())
            .map(str::to_owned);
        if let Some(href) = &next {
            assert!(href.starts_with("/pay/payments?before="), "{href}");
        }
        pages += 1;
        handle.add_orders(3);
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 120);
    let expected: Vec<String> = (1..=120).rev().map(|n| format!("pay_{n:05}")).collect();
    assert_eq!(seen, expected, "every payment once, newest first");
    assert!(created.windows(2).all(|w| w[0] >= w[1]));
    assert!(
        created.windows(2).any(|w| w[0] == w[1]),
        "some share a second"
    );

    // A fresh first page shows the new ones on top.
    let (_, body) = get(addr, "/pay/payments?limit=100", &[PAY_KEY]).await;
    assert_eq!(body["_embedded"]["payments"][0]["id"], "pay_00135");
    assert_eq!(
        body["_links"]["next"]["href"],
        "/pay/payments?before=36&limit=100"
    );
}

#[tokio::test]
async fn bad_parameters_are_a_400_with_a_json_error() {
    let (addr, _) = start(static_config()).await;
    for path in [
        "/pos/orders?page=0",
        "/pos/orders?page=abc",
        "/pos/orders?per_page=501",
        "/pos/orders?per_page=-1",
        "/pos/orders?limit=0",
        "/pos/orders?offset=x",
        "/pos/orders?page=2&offset=10",
        "/pos/orders?created_since=yesterday",
        "/pos/orders?created_since=2026-11-01",
    ] {
        let (status, body) = get(addr, path, &[BEARER]).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "bad_request", "{path}");
        assert!(body["message"].is_string());
    }
    for path in [
        "/pay/payments?limit=0",
        "/pay/payments?limit=101",
        "/pay/payments?before=x",
        "/pay/payments?before=0",
    ] {
        let (status, body) = get(addr, path, &[PAY_KEY]).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "bad_request");
    }
    let (status, body) = get(addr, "/nowhere", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    // Pages past the end are empty, not errors, so a page paginator stops cleanly.
    let (status, body) = get(addr, "/pos/orders?page=99999999999999999", &[BEARER]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], Value::Array(vec![]));
}

#[tokio::test]
async fn the_seed_decides_the_data() {
    let (a, _) = start(static_config()).await;
    let (b, _) = start(static_config()).await;
    let (c, _) = start(DemoConfig {
        seed: 7,
        ..static_config()
    })
    .await;
    let page = "/pos/orders?per_page=500";
    let first = get(a, page, &[BEARER]).await.1;
    assert_eq!(first, get(b, page, &[BEARER]).await.1);
    assert_ne!(first, get(c, page, &[BEARER]).await.1);
    let pay = "/pay/payments?limit=100";
    assert_eq!(
        get(a, pay, &[PAY_KEY]).await.1,
        get(b, pay, &[PAY_KEY]).await.1
    );
}

#[tokio::test]
async fn serve_adds_orders_over_time() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = DemoConfig {
        token: "secret".into(),
        initial_shop_orders: 3,
        initial_payments: 2,
        new_order_every: Some(Duration::from_millis(20)),
        seed: 1,
        webhook: None,
        drop_every: 0,
    };
    let server = tokio::spawn(serve(listener, config));
    let mut grown = false;
    for _ in 0..200 {
        let (_, body) = get(addr, "/health", &[]).await;
        if u64_of(&body, "shop_orders") > 4 && u64_of(&body, "payments") > 3 {
            grown = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(grown, "no new orders arrived");
    let (_, body) = get(addr, "/pos/orders", &[("Authorization", "Bearer secret")]).await;
    let times: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|o| str_of(o, "created_at"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    server.abort();
}

/// The payment provider POSTs `id=...` for each new payment, dropping one in
/// `drop_every`; each id it names is served at `/pay/payments/{id}`.
#[tokio::test]
async fn the_provider_sends_id_only_webhooks_and_drops_some() {
    let hooks: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let received = hooks.clone();
    let receiver = axum::Router::new().route(
        "/hooks/payments",
        axum::routing::post(move |body: String| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let hook_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_addr = hook_listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(hook_listener, receiver).await });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = DemoConfig {
        initial_shop_orders: 1,
        initial_payments: 1,
        new_order_every: Some(Duration::from_millis(20)),
        webhook: Some(format!("http://{hook_addr}/hooks/payments")),
        drop_every: 2,
        ..DemoConfig::default()
    };
    tokio::spawn(serve(listener, config));
    for _ in 0..500 {
        if hooks.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = hooks.lock().unwrap().clone();
    assert!(sent.len() >= 3, "{sent:?}");
    // Payments 2, 3, 4, ... arrive; every second one (3, 5, ...) is dropped.
    assert_eq!(sent[..3], ["id=pay_00002", "id=pay_00004", "id=pay_00006"]);
    let (status, body) = get(addr, "/pay/payments/pay_00003", &[("X-Api-Key", "demo")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "pay_00003");
    let (status, _) = get(addr, "/pay/payments/pay_99999", &[("X-Api-Key", "demo")]).await;
    assert_eq!(status, 404);
}
