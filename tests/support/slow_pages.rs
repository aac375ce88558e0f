//! `SlowPages`: a paged API (axum on 127.0.0.1:0) that answers every page after a delay
//! (an async sleep, so requests overlap) and counts the requests it holds at once — the
//! most of them is what pages in flight are measured by. It serves `records::make(n)`:
//!
//! - `GET /pages?page=N&per_page=S` → `{"data": [...], "total_pages": T}` (pages from 1)
//! - `GET /offsets?offset=O&limit=L` → `{"data": [...], "total": n}`
//!
//! `fail_page(N, status, times)` answers page N (or the page at offset N) with `status`
//! (`429` with `Retry-After: 1`; `200` with a body cut short, not JSON) the next `times`
//! times it is asked for; every request's
//! page number (or offset) is logged in arrival order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::axum_app::Running;
use super::records;

struct Inner {
    records: Vec<Value>,
    delay: Duration,
    now: AtomicUsize,
    most: AtomicUsize,
    asked: Mutex<Vec<u64>>,
    /// Page (or offset) → (status, how many more times).
    failing: Mutex<HashMap<u64, (u16, usize)>>,
}

pub struct SlowPages {
    running: Running,
    inner: Arc<Inner>,
}

/// Counts a request in while it is held, out when dropped (also when the client goes
/// away and the handler is cancelled).
struct Held<'a>(&'a Inner);

impl<'a> Held<'a> {
    fn new(inner: &'a Inner) -> Held<'a> {
        let now = inner.now.fetch_add(1, Ordering::SeqCst) + 1;
        inner.most.fetch_max(now, Ordering::SeqCst);
        Held(inner)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SlowPages {
    /// Serves `n` records, each page answered after `delay`.
    pub fn start(n: usize, delay: Duration) -> SlowPages {
        let inner = Arc::new(Inner {
            records: records::make(n),
            delay,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
            failing: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/pages", get(pages))
            .route("/offsets", get(offsets))
            .with_state(Arc::clone(&inner));
        SlowPages {
            running: Running::start(app),
            inner,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// The most requests held at once so far.
    pub fn most_at_once(&self) -> usize {
        self.inner.most.load(Ordering::SeqCst)
    }

    /// The page numbers (or offsets) asked for, in arrival order.
    pub fn asked(&self) -> Vec<u64> {
        self.inner.asked.lock().expect("asked").clone()
    }

    /// Page `at` (a page number, or an offset) answers `status` the next `times` times.
    pub fn fail_page(&self, at: u64, status: u16, times: usize) {
        self.inner
            .failing
            .lock()
            .expect("failing")
            .insert(at, (status, times));
    }

    /// No page fails any more.
    pub fn heal(&self) {
        self.inner.failing.lock().expect("failing").clear();
    }
}

fn number(q: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    q.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Logs the request, holds it for the delay, and gives the failure it is due, if any.
async fn held(inner: &Inner, at: u64) -> Option<Response> {
    let _held = Held::new(inner);
    inner.asked.lock().expect("asked").push(at);
    tokio::time::sleep(inner.delay).await;
    let mut failing = inner.failing.lock().expect("failing");
    let (status, left) = failing.get_mut(&at)?;
    if *left == 0 {
        return None;
    }
    *left -= 1;
    let status = StatusCode::from_u16(*status).expect("status");
    if status == StatusCode::OK {
        return Some((status, "{\"data\": [{\"id\": ").into_response());
    }
    let mut resp = (status, Json(json!({"error": "failing on purpose"}))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().expect("header"));
    }
    Some(resp)
}

async fn pages(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let page = number(&q, "page", 1).max(1);
    let size = number(&q, "per_page", 10).max(1) as usize;
    if let Some(failed) = held(&inner, page).await {
        return failed;
    }
    let total_pages = inner.records.len().div_ceil(size);
    let data: Vec<Value> = inner
        .records
        .iter()
        .skip((page as usize - 1).saturating_mul(size))
        .take(size)
        .cloned()
        .collect();
    Json(json!({"data": data, "total_pages": total_pages})).into_response()
}

async fn offsets(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let offset = number(&q, "offset", 0);
    let limit = number(&q, "limit", 10).max(1) as usize;
    if let Some(failed) = held(&inner, offset).await {
        return failed;
    }
    let data: Vec<Value> = inner
        .records
        .iter()
        .skip(offset as usize)
        .take(limit)
        .cloned()
        .collect();
    Json(json!({"data": data, "total": inner.records.len()})).into_response()
}
