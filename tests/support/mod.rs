//! Support for hamstr's integration tests: this module is a programmable fake HTTP API;
//! `cli` runs the built binary on a pipeline file, and `RunningHamstr` owns a run in the
//! background (killed on drop, stderr collected) with `wait_until` for what it does.
//!
//! `TestApi::start().await` serves HTTP/1.1 (written by hand, so that faults can work
//! at the byte level) on `127.0.0.1:0`, with keep-alive, from its own thread and
//! runtime (so a test may block, e.g. on `assert_cmd`). Per path it serves a dataset
//! with a pagination style, a fixed reply or a handler; it injects faults queued per
//! path; it can demand credentials; and it logs every request.
//!
//! ```ignore
//! mod support;
//! use support::cli::{one_source, Pipeline};
//! use support::{records, wait_until, Fault, Paging, TestApi};
//! let api = TestApi::start_blocking();
//! api.set_records("/orders", records::make(25));
//! api.serve("/orders", Paging::page(10));
//! api.fail_next("/orders", Fault::Status(503));
//! let p = Pipeline::new(&one_source(&api.url(), "get = \"/orders\" ..."));
//! p.run_ok(); // `hamstr run --once`, must exit 0
//! assert_eq!(api.hits("/orders"), 5);
//! let run = p.spawn_run(&["--no-watch"]); // killed when `run` drops
//! assert!(wait_until(|| api.hits("/orders") >= 8, Duration::from_secs(20)));
//! ```
#![allow(dead_code, unused_imports)]

pub mod apis;
mod axum_app;
pub mod cli;
mod dataset;
pub mod events;
mod faults;
mod http;
pub mod oauth;
mod paging;
pub mod pg;
pub mod records;
mod running;
mod server;
pub mod sigv4;
pub mod slow_pages;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use server::{accept_loop, Route, Shared, State};

pub use faults::{Fault, RetryAfter};
pub use http::{base64_decode, base64_encode, Logged, Reply};
pub use paging::{cursor_token, parse_cursor_token, CursorNext, Order, Paging};
pub use running::{wait_until, RunningHamstr};
pub use server::Auth;

/// The fake API. It runs on its own thread with its own tokio runtime, so it keeps
/// answering while a test blocks (e.g. `assert_cmd` running hamstr) and works from
/// `#[test]` as well as from any `#[tokio::test]` flavour. Dropping it stops the
/// server and closes every connection.
pub struct TestApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A seeded xorshift for tests that act at random: `rand(n)` is in `0..n` (`n` of 0
/// counts as 1), and the same seed gives the same sequence, so a failure repeats.
pub fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    }
}

/// A `http://127.0.0.1:PORT` where nothing listens (connection refused).
pub fn closed_origin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

impl TestApi {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start() -> TestApi {
        TestApi::start_blocking()
    }

    /// `start` for synchronous tests.
    pub fn start_blocking() -> TestApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            base: format!("http://{addr}"),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let server = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("test-api-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("test API runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("listener");
                    tokio::spawn(accept_loop(listener, server));
                    let _ = rx.await;
                });
                // dropping the runtime cancels the accept loop and every connection
            })
            .expect("test API thread");
        TestApi {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// The origin, `http://127.0.0.1:PORT` (same as `url()`).
    pub fn origin(&self) -> String {
        self.shared.base.clone()
    }

    /// `http://127.0.0.1:PORT` + `path_and_query`.
    pub fn url_for(&self, path_and_query: &str) -> String {
        format!("{}{}", self.shared.base, path_and_query)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    // ---- what is served -------------------------------------------------------------

    /// Replaces the records served at `path` (a bare array until `serve` says otherwise).
    pub fn set_records(&self, path: &str, records: Vec<Value>) {
        self.lock().dataset(path).records = records;
    }

    /// Appends records: data that grows between (or while) a client pages.
    pub fn push_records(&self, path: &str, more: Vec<Value>) {
        self.lock().dataset(path).records.extend(more);
    }

    /// Appends records once `after_hits` requests to `path` have been received: the
    /// request numbered `after_hits + 1` is the first to see them.
    pub fn push_records_after(&self, path: &str, after_hits: usize, more: Vec<Value>) {
        let mut st = self.lock();
        let seen = st.hits.get(path).copied().unwrap_or(0);
        let ds = st.dataset(path);
        if seen >= after_hits {
            ds.records.extend(more);
        } else {
            ds.pending.push((after_hits, more));
        }
    }

    /// Replaces the record whose `key_field` equals `record`'s, or appends it.
    pub fn upsert_record(&self, path: &str, key_field: &str, record: Value) {
        let mut st = self.lock();
        let ds = st.dataset(path);
        match ds
            .records
            .iter_mut()
            .find(|r| r.get(key_field) == record.get(key_field))
        {
            Some(slot) => *slot = record,
            None => ds.records.push(record),
        }
    }

    /// The records stored at `path` (in insertion order, without pending pushes).
    pub fn records(&self, path: &str) -> Vec<Value> {
        match self.lock().routes.get(path) {
            Some(Route::Data(ds)) => ds.records.clone(),
            _ => Vec::new(),
        }
    }

    /// The pagination style of `path`'s dataset.
    pub fn serve(&self, path: &str, paging: Paging) {
        self.lock().dataset(path).paging = paging;
    }

    /// The order `path`'s records are listed in (default: as inserted).
    pub fn set_order(&self, path: &str, order: Order) {
        self.lock().dataset(path).order = order;
    }

    /// Lists only records whose `field >= ?param=VALUE` (strings compared as strings,
    /// numbers as numbers) when the request carries `param`.
    pub fn set_since_filter(&self, path: &str, param: &str, field: &str) {
        self.lock().dataset(path).since = Some((param.into(), field.into()));
    }

    /// Serves this JSON (status 200) at `path`, whatever the query.
    pub fn set_json(&self, path: &str, body: Value) {
        self.set_reply(path, Reply::json(&body));
    }

    /// Serves this reply at `path`.
    pub fn set_reply(&self, path: &str, reply: Reply) {
        self.lock().routes.insert(path.into(), Route::Fixed(reply));
    }

    /// Answers requests to `path` with `f`, called on the server's thread without its
    /// lock held; it must not block.
    pub fn set_handler(&self, path: &str, f: impl Fn(&Logged) -> Reply + Send + Sync + 'static) {
        self.lock()
            .routes
            .insert(path.into(), Route::Handler(Arc::new(f)));
    }

    // ---- faults -----------------------------------------------------------------------

    /// Queues a fault for `path`: each request to `path` takes the next queued fault
    /// (after auth has passed); once the queue is empty, the `fail_always` fault if any.
    pub fn fail_next(&self, path: &str, fault: Fault) {
        self.lock()
            .faults
            .entry(path.into())
            .or_default()
            .queue
            .push_back(fault);
    }

    /// Queues `ok` normal answers, then `fault`: the request numbered `ok + 1` (counting
    /// from now) fails.
    pub fn fail_after(&self, path: &str, ok: usize, fault: Fault) {
        for _ in 0..ok {
            self.fail_next(path, Fault::Pass);
        }
        self.fail_next(path, fault);
    }

    /// Every request to `path` gets `fault` once the queue is empty.
    pub fn fail_always(&self, path: &str, fault: Fault) {
        self.lock().faults.entry(path.into()).or_default().always = Some(fault);
    }

    /// Forgets the queued and the `fail_always` faults of `path`.
    pub fn clear_faults(&self, path: &str) {
        self.lock().faults.remove(path);
    }

    /// Faults still queued for `path`.
    pub fn pending_faults(&self, path: &str) -> usize {
        self.lock().faults.get(path).map_or(0, |f| f.queue.len())
    }

    // ---- auth -------------------------------------------------------------------------

    /// Every request must carry `auth`, else 401 (no fault is consumed then).
    pub fn require(&self, auth: Auth) {
        self.lock().auth = Some(auth);
    }

    pub fn require_nothing(&self) {
        self.lock().auth = None;
    }

    // ---- the request log --------------------------------------------------------------

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The requests to `path` (as sent or decoded), in order.
    pub fn requests_to(&self, path: &str) -> Vec<Logged> {
        self.lock()
            .log
            .iter()
            .filter(|r| r.is_to(path))
            .cloned()
            .collect()
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().log.iter().filter(|r| r.is_to(path)).count()
    }

    /// How many requests reached this server.
    pub fn total_hits(&self) -> usize {
        self.lock().log.len()
    }

    /// True when any request carried `needle` inside a header value (a Basic
    /// `Authorization` counts with its decoded `user:password` too) or a decoded query
    /// value: use it on another origin's TestApi to assert that credentials never
    /// reached it.
    pub fn saw_header_value(&self, needle: &str) -> bool {
        self.lock().log.iter().any(|r| {
            r.headers.iter().any(|(_, v)| v.contains(needle))
                || r.basic_credentials().is_some_and(|c| c.contains(needle))
                || r.query.iter().any(|(_, v)| v.contains(needle))
        })
    }

    /// Like `saw_header_value`, but also looks at the raw request target, header
    /// names, query names and bodies.
    pub fn saw_anywhere(&self, needle: &str) -> bool {
        self.saw_header_value(needle)
            || self.lock().log.iter().any(|r| {
                r.target.contains(needle)
                    || r.headers.iter().any(|(k, _)| k.contains(needle))
                    || r.query.iter().any(|(k, _)| k.contains(needle))
                    || r.body_text().contains(needle)
            })
    }

    /// Forgets the request log and the hit counts (not the data or faults).
    pub fn clear_requests(&self) {
        let mut st = self.lock();
        st.log.clear();
        st.hits.clear();
    }

    /// Waits until `path` has had at least `n` requests; false on timeout.
    pub async fn wait_for_hits(&self, path: &str, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.hits(path) >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `wait_for_hits` for synchronous tests.
    pub fn wait_for_hits_blocking(&self, path: &str, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.hits(path) < n {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}
