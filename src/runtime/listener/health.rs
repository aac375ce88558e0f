//! `GET /health` (spec §15): 200 with a JSON summary once every receiving source takes
//! events; 503 before that and during shutdown.

use super::Shared;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::Ordering;

pub(super) fn answer(shared: &Shared) -> Response {
    let stopping = shared.stopping.load(Ordering::SeqCst);
    let routes = shared
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let receivers = shared.receivers.lock().unwrap_or_else(|p| p.into_inner());
    let mut sources = serde_json::Map::new();
    let mut all = true;
    for (path, route) in &routes {
        let accepting = !stopping
            && receivers
                .get(&route.source)
                .is_some_and(|r| r.src.receive.as_ref().is_some_and(|x| &x.path == path));
        all &= accepting;
        sources.insert(
            route.source.clone(),
            json!({ "path": path, "accepting": accepting }),
        );
    }
    drop(receivers);
    let (status, word) = match (stopping, all) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        (false, true) => (StatusCode::OK, "ok"),
    };
    let body = json!({ "status": word, "sources": sources });
    (status, axum::Json(body)).into_response()
}
