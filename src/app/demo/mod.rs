//! `hamstr demo` ([`run`]) and the bundled demo restaurant API it serves on loopback: a
//! till under `/pos` and a payment provider under `/pay`, shaped for the example pipelines.
//!
//! The data is deterministic at start (from `DemoConfig::seed`, with times from a fixed
//! base) so that the docs and tests can rely on it; while serving, a background task adds
//! an order and a payment now and then so that incremental collection has work to do.

mod data;
mod run;
#[cfg(test)]
mod tests;

pub use run::run;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use data::Store;

const PAYMENTS_PATH: &str = "/pay/payments";

/// What the demo serves and how it changes over time.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Accepted by every endpoint, in whichever form that endpoint expects.
    pub token: String,
    pub initial_shop_orders: usize,
    pub initial_payments: usize,
    /// How often one order and one payment arrive; `None` (or zero) keeps the data static.
    pub new_order_every: Option<Duration>,
    pub seed: u64,
    /// Where the payment provider POSTs an id-only webhook (`id=pay_00123`, as Mollie
    /// does) for each new payment; `None` sends none.
    pub webhook: Option<String>,
    /// The provider drops one webhook in this many, on purpose: the slow poll of the
    /// demo pipeline collects those payments (0: drops none).
    pub drop_every: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            token: "demo".to_string(),
            initial_shop_orders: 250,
            initial_payments: 120,
            new_order_every: Some(Duration::from_secs(2)),
            seed: 0x4841_4D53_5452,
            webhook: None,
            drop_every: 4,
        }
    }
}

/// A handle on the demo's data, shared with the router it came with.
#[derive(Clone)]
pub struct DemoHandle {
    store: Arc<Mutex<Store>>,
}

impl DemoHandle {
    /// Adds `n` shop orders and `n` payments, stamped with the current second; returns
    /// the new payments' ids.
    pub fn add_orders(&self, n: usize) -> Vec<String> {
        let now = data::now_seconds();
        let mut store = self.lock();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            store.push_order(Some(now));
            store.push_payment(Some(now));
            ids.extend(store.payments.last().map(|p| p.id()));
        }
        ids
    }

    pub fn shop_order_count(&self) -> usize {
        self.lock().orders.len()
    }

    pub fn payment_count(&self) -> usize {
        self.lock().payments.len()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // Nothing panics while holding the lock, and the data stays valid if it did.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
struct AppState {
    handle: DemoHandle,
    token: Arc<str>,
}

/// Serves the demo API on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, config: DemoConfig) -> std::io::Result<()> {
    let (router, handle) = app(&config);
    let hooks = config.webhook.clone().map(|url| Webhooks {
        url,
        drop_every: config.drop_every,
        sent: std::sync::atomic::AtomicU64::new(0),
    });
    let _ticker = config
        .new_order_every
        .filter(|every| !every.is_zero())
        .map(|every| AbortOnDrop(tokio::spawn(add_orders_every(handle, every, hooks))));
    axum::serve(listener, router).await
}

/// The router alone (for tests), with a handle to add orders.
pub fn app(config: &DemoConfig) -> (Router, DemoHandle) {
    let store = Store::new(
        config.seed,
        config.initial_shop_orders,
        config.initial_payments,
    );
    let handle = DemoHandle {
        store: Arc::new(Mutex::new(store)),
    };
    let state = AppState {
        handle: handle.clone(),
        token: Arc::from(config.token.as_str()),
    };
    let router = Router::new()
        .route("/health", get(health))
        .route("/pos/orders", get(list_orders))
        .route("/pos/orders/{id}/items", get(order_items))
        .route(PAYMENTS_PATH, get(list_payments))
        .route("/pay/payments/{id}", get(one_payment))
        .fallback(not_found)
        .with_state(state);
    (router, handle)
}

/// Stops the background task when `serve`'s future is dropped, so nothing outlives it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The payment provider's webhooks: an id-only POST per new payment, some dropped.
struct Webhooks {
    url: String,
    drop_every: u64,
    sent: std::sync::atomic::AtomicU64,
}

impl Webhooks {
    /// Tells hamstr of a new payment, as a provider would: retried a few times while it
    /// is not answered 200, or dropped on purpose.
    fn send(&self, client: &reqwest::Client, id: String) {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.drop_every > 0 && n.is_multiple_of(self.drop_every) {
            eprintln!(
                "demo provider: webhook for {id} dropped on purpose (the slow poll collects it)"
            );
            return;
        }
        let (client, url) = (client.clone(), self.url.clone());
        tokio::spawn(async move {
            for _ in 0..10 {
                let sent = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("id={id}"))
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            eprintln!("demo provider: webhook for {id} not taken after 10 tries");
        });
    }
}

async fn add_orders_every(handle: DemoHandle, every: Duration, hooks: Option<Webhooks>) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // A paused machine should not come back to a burst of orders.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let client = hooks
        .as_ref()
        .and_then(|_| crate::nodes::net::http_client().ok());
    loop {
        interval.tick().await;
        let ids = handle.add_orders(1);
        if let (Some(hooks), Some(client)) = (&hooks, &client) {
            for id in ids {
                hooks.send(client, id);
            }
        }
        tracing::debug!(
            shop_orders = handle.shop_order_count(),
            payments = handle.payment_count(),
            "demo: a new order and a new payment arrived"
        );
    }
}

/// An error answer; small, so that `Result`s carrying it stay cheap to move.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The `WWW-Authenticate` scheme of a 401.
    challenge: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::from(self.code));
        body.insert("message".into(), Value::from(self.message));
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if let Some(scheme) = self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
        response
    }
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        challenge: None,
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn unauthorized(scheme: &'static str, message: &str) -> ApiError {
    ApiError {
        challenge: Some(scheme),
        ..error(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

async fn not_found() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; try /pos/orders, /pos/orders/{id}/items, /pay/payments or /health",
    )
}

/// Query parameters as sent; the last of repeated names wins.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_query(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, String> {
        query
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| format!("malformed query string: {e}"))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn number(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(bad_request(format!(
                "`{name}` must be an integer from {min} to {max}, got {}",
                quoted(raw)
            ))),
        }
    }
}

/// Echoes a bad value back without letting a huge one bloat the error.
fn quoted(raw: &str) -> String {
    let short: String = raw.chars().take(40).collect();
    if short.len() < raw.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    // An unencoded `+` in an offset arrives as a space; take it as meant.
    DateTime::parse_from_rfc3339(raw)
        .or_else(|e| DateTime::parse_from_rfc3339(&raw.replace(' ', "+")).map_err(|_| e))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            bad_request(format!(
                "`{name}` must be an RFC 3339 date-time such as 2026-11-01T08:00:00Z, got {} ({e})",
                quoted(raw)
            ))
        })
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The till takes the token as a bearer header or as `key` in the query, so that both
/// example pipelines can use it.
fn pos_auth(
    state: &AppState,
    headers: &HeaderMap,
    params: Option<&Params>,
) -> Result<(), ApiError> {
    let token = &*state.token;
    let by_header = bearer_token(headers) == Some(token);
    let by_query = params.and_then(|p| p.get("key")) == Some(token);
    if by_header || by_query {
        Ok(())
    } else {
        Err(unauthorized(
            "Bearer",
            "send `Authorization: Bearer <token>` or the query parameter `key=<token>`",
        ))
    }
}

async fn health(State(state): State<AppState>) -> Response {
    let mut body = Map::new();
    body.insert("ok".into(), Value::Bool(true));
    body.insert(
        "shop_orders".into(),
        Value::from(state.handle.shop_order_count()),
    );
    body.insert("payments".into(), Value::from(state.handle.payment_count()));
    Json(Value::Object(body)).into_response()
}

async fn list_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(query);
    if let Err(denied) = pos_auth(&state, &headers, params.as_ref().ok()) {
        return denied.into_response();
    }
    match params
        .map_err(bad_request)
        .and_then(|p| orders_page(&state, &p))
    {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn orders_page(state: &AppState, params: &Params) -> Result<Value, ApiError> {
    let page_style = params.has("page") || params.has("per_page");
    let offset_style = params.has("offset") || params.has("limit");
    if page_style && offset_style {
        return Err(bad_request(
            "use either `page`/`per_page` or `offset`/`limit`, not both",
        ));
    }
    let since = params
        .get("created_since")
        .map(|raw| parse_time("created_since", raw))
        .transpose()?;
    let (offset, size, page) = if offset_style {
        let limit = params.number("limit", 100, 1, 500)?;
        let offset = params.number("offset", 0, 0, u64::MAX)?;
        (offset, limit, offset / limit + 1)
    } else {
        let per_page = params.number("per_page", 100, 1, 500)?;
        let page = params.number("page", 1, 1, u64::MAX)?;
        ((page - 1).saturating_mul(per_page), per_page, page)
    };

    let store = state.handle.lock();
    let first = since.map_or(0, |t| store.orders.partition_point(|o| o.created_at < t));
    let matching = &store.orders[first..];
    let total = matching.len();
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(total);
    let end = start
        .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
        .min(total);
    let records: Vec<Value> = matching[start..end].iter().map(|o| o.to_json()).collect();
    drop(store);

    let mut body = Map::new();
    body.insert("data".into(), Value::Array(records.clone()));
    body.insert("items".into(), Value::Array(records));
    body.insert("page".into(), Value::from(page));
    body.insert("per_page".into(), Value::from(size));
    body.insert("total".into(), Value::from(total));
    body.insert(
        "total_pages".into(),
        Value::from((total as u64).div_ceil(size)),
    );
    Ok(Value::Object(body))
}

async fn order_items(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(query);
    if let Err(denied) = pos_auth(&state, &headers, params.as_ref().ok()) {
        return denied.into_response();
    }
    if let Err(message) = params {
        return bad_request(message).into_response();
    }
    let Ok(Path(id)) = id else {
        return bad_request("malformed order id in the path").into_response();
    };
    let store = state.handle.lock();
    // The number is only a guess at the index; the id must match exactly ("ord_1" is not
    // "ord_00001").
    let order_n = id
        .strip_prefix("ord_")
        .and_then(|digits| digits.parse::<u64>().ok())
        .filter(|&n| {
            usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| store.orders.get(i))
                .is_some_and(|o| o.id() == id)
        });
    match order_n {
        Some(n) => Json(store.items(n)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no order with id {}", quoted(&id)),
        )
        .into_response(),
    }
}

async fn list_payments(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key.map(str::trim) != Some(&*state.token) {
        return unauthorized("ApiKey", "send the header `X-Api-Key: <token>`").into_response();
    }
    match Params::from_query(query)
        .map_err(bad_request)
        .and_then(|p| payments_page(&state, &p))
    {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One payment by id, as `/pay/payments` lists it: what an id-only webhook names.
async fn one_payment(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key.map(str::trim) != Some(&*state.token) {
        return unauthorized("ApiKey", "send the header `X-Api-Key: <token>`").into_response();
    }
    let Ok(Path(id)) = id else {
        return bad_request("malformed payment id").into_response();
    };
    let store = state.handle.lock();
    match store.payments.iter().find(|p| p.id() == id) {
        Some(p) => Json(p.to_json()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no payment with id {}", quoted(&id)),
        )
        .into_response(),
    }
}

/// Newest first. `before` is a sequence number, so a client paging back through the list
/// is not disturbed by payments that arrive meanwhile: they all sort above its cursor.
fn payments_page(state: &AppState, params: &Params) -> Result<Value, ApiError> {
    let limit = params.number("limit", 25, 1, 100)?;
    let before = params
        .get("before")
        .map(|_| params.number("before", 0, 1, u64::MAX))
        .transpose()?;

    let store = state.handle.lock();
    let len = store.payments.len();
    // Payment `seq` sits at index `seq - 1`, so `seq < before` is the index range below.
    let end = before.map_or(len, |b| {
        usize::try_from(b - 1).unwrap_or(usize::MAX).min(len)
    });
    let start = end.saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
    let records: Vec<Value> = store.payments[start..end]
        .iter()
        .rev()
        .map(|p| p.to_json())
        .collect();
    let next_before = store
        .payments
        .get(start)
        .filter(|_| start > 0)
        .map(|p| p.seq);
    drop(store);

    let self_href = match before {
        Some(b) => format!("{PAYMENTS_PATH}?before={b}&limit={limit}"),
        None => format!("{PAYMENTS_PATH}?limit={limit}"),
    };
    let mut links = Map::new();
    links.insert("self".into(), href(self_href));
    if let Some(b) = next_before {
        links.insert(
            "next".into(),
            href(format!("{PAYMENTS_PATH}?before={b}&limit={limit}")),
        );
    }
    let mut embedded = Map::new();
    embedded.insert("payments".into(), Value::Array(records));
    let mut body = Map::new();
    body.insert("_embedded".into(), Value::Object(embedded));
    body.insert("_links".into(), Value::Object(links));
    Ok(Value::Object(body))
}

fn href(url: String) -> Value {
    let mut link = Map::new();
    link.insert("href".into(), Value::from(url));
    Value::Object(link)
}
