//! hamstr's own HTTP listener (spec §11, §15): the `receive` paths of the sources,
//! `GET /health`, and `GET /metrics` when `server { metrics = true }`. It starts with
//! the first plan that needs it and stays up across reloads: a reload only replaces the
//! table of paths, so a path added, changed or removed takes effect without a restart.
//! A unit hands its [`Receiver`] to the listener while it runs; a path whose source is
//! not running (yet, or any more) answers 503.

mod health;

use crate::nodes::receive::{Answer, Receiver};
use crate::plan::Plan;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Renders the text of `GET /metrics` (Prometheus text format) when metrics are on.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Called with the source and the status of every event answered (for metrics).
pub type OnAnswer = Arc<dyn Fn(&str, u16) + Send + Sync>;

/// A `receive` path of the running plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    source: String,
    max_body: u64,
}

#[derive(Default)]
struct Shared {
    /// Path → the source receiving there, as the running plan says.
    routes: RwLock<BTreeMap<String, Route>>,
    /// Source → its receiver, while its unit runs.
    receivers: Mutex<BTreeMap<String, Arc<Receiver>>>,
    metrics_on: AtomicBool,
    metrics: Option<MetricsRender>,
    on_answer: Option<OnAnswer>,
    /// The run is shutting down: everything answers 503.
    stopping: AtomicBool,
}

/// The running listener.
pub struct Listener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: tokio_util::sync::CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Whether a plan needs the listener: a source receives, or metrics are on.
pub fn needed(plan: &Plan) -> bool {
    plan.server.as_ref().is_some_and(|s| s.metrics)
        || plan.sources().any(|(_, s, _)| s.receive.is_some())
}

impl Listener {
    /// Binds `addr` and serves `plan`'s paths on the current tokio runtime.
    pub fn start(
        addr: &str,
        plan: &Plan,
        metrics: Option<MetricsRender>,
        on_answer: Option<OnAnswer>,
    ) -> Result<Arc<Listener>, String> {
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("the listener cannot listen on {addr}: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("the listener on {addr}: {e}"))?;
        let bound = std_listener
            .local_addr()
            .map_err(|e| format!("the listener on {addr}: {e}"))?;
        let tcp = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| format!("the listener on {addr}: {e}"))?;
        let shared = Arc::new(Shared {
            metrics,
            on_answer,
            ..Shared::default()
        });
        let shutdown = tokio_util::sync::CancellationToken::new();
        // The paths are known before the first request is taken: none is told 404 (nor
        // `/health` 200) for want of them.
        apply_to(&shared, plan);
        let app = {
            let shared = shared.clone();
            axum::Router::new().fallback(move |req: Request<Body>| {
                let shared = shared.clone();
                async move { handle(&shared, req).await }
            })
        };
        let until = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(tcp, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the listener stopped");
            }
        });
        tracing::info!(address = %bound, "listening");
        crate::logs::say(
            crate::logs::Level::Info,
            &format!("listening on http://{bound}"),
        );
        Ok(Arc::new(Listener {
            addr: bound,
            shared,
            shutdown,
            task: Mutex::new(Some(task)),
        }))
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes the paths and the metrics switch of `plan`: what it no longer names
    /// answers 404 from now on, what it adds answers once its source runs.
    pub fn apply(&self, plan: &Plan) {
        apply_to(&self.shared, plan);
    }

    /// A unit's receiver takes its source's events from now on.
    pub fn attach(&self, receiver: Arc<Receiver>) {
        let mut r = self
            .shared
            .receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        r.insert(receiver.src.name.clone(), receiver);
    }

    /// A unit's receiver takes no more events (unless a newer one replaced it already).
    pub fn detach(&self, receiver: &Arc<Receiver>) {
        let mut r = self
            .shared
            .receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if r.get(&receiver.src.name)
            .is_some_and(|current| Arc::ptr_eq(current, receiver))
        {
            r.remove(&receiver.src.name);
        }
    }

    /// The run is stopping: every event and `/health` answer 503 from now on.
    pub fn stopping(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
    }

    /// Stops serving (after the graph has answered what it took) and waits for it.
    pub async fn close(&self) {
        self.stopping();
        self.shutdown.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            // Connections kept open by their client do not hold the run up.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), task).await;
        }
    }
}

fn apply_to(shared: &Shared, plan: &Plan) {
    let routes: BTreeMap<String, Route> = plan
        .sources()
        .filter_map(|(name, s, _)| {
            let r = s.receive.as_ref()?;
            let route = Route {
                source: name.to_string(),
                max_body: r.max_body,
            };
            Some((r.path.clone(), route))
        })
        .collect();
    *shared.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    let metrics = plan.server.as_ref().is_some_and(|s| s.metrics);
    if metrics {
        // Counting starts with the first plan that asks to be scraped.
        crate::metrics::enable();
    }
    shared.metrics_on.store(metrics, Ordering::SeqCst);
}

/// One request: `/health`, `/metrics`, or an event for a `receive` path.
async fn handle(shared: &Shared, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/health" if req.method() == Method::GET => return health::answer(shared),
        "/metrics" if req.method() == Method::GET && shared.metrics_on.load(Ordering::SeqCst) => {
            return match &shared.metrics {
                Some(render) => (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    )],
                    render(),
                )
                    .into_response(),
                None => (StatusCode::NOT_IMPLEMENTED, "metrics are not built in\n").into_response(),
            };
        }
        _ => {}
    }
    let route = shared
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&path)
        .cloned();
    let Some(route) = route else {
        return plain(StatusCode::NOT_FOUND, "no source receives on this path");
    };
    let answer = event(shared, &route, req).await;
    if let Some(hook) = &shared.on_answer {
        hook(&route.source, answer.status);
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = plain(status, &answer.message);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

async fn event(shared: &Shared, route: &Route, req: Request<Body>) -> Answer {
    if req.method() != Method::POST {
        return Answer {
            status: 405,
            message: "events are POSTed".into(),
        };
    }
    if shared.stopping.load(Ordering::SeqCst) {
        return Answer::unavailable("shutting down");
    }
    let too_large = Answer {
        status: 413,
        message: format!("the body is larger than {} bytes", route.max_body),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body) {
        return too_large;
    }
    let receiver = shared
        .receivers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&route.source)
        .cloned();
    let Some(receiver) = receiver else {
        return Answer::unavailable("the source is not running yet");
    };
    let (parts, body) = req.into_parts();
    let limit = usize::try_from(route.max_body).unwrap_or(usize::MAX);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return too_large,
        Err(_) => {
            return Answer {
                status: 400,
                message: "the body could not be read".into(),
            }
        }
    };
    receiver.accept(&parts.headers, &bytes).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}
