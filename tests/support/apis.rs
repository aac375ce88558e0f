//! Behaviours of real APIs that hamstr must cope with (issue 12), on the fake API: a
//! server that refuses percent-encoded unreserved characters in a path, an issue
//! tracker that caps its page size, the rate-limit answers of a code-hosting API (403)
//! and of a shop platform (a decimal `Retry-After`).
//!
//! Each is a handler or a `Fault` for `TestApi`, so the requests stay in its log. The
//! search endpoints (`search`) and listings (`feeds`) of well-known APIs are in the
//! submodules.

pub mod feeds;
pub mod search;

use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

use super::{Fault, Logged, Reply, TestApi};

/// Whether a path as sent percent-encodes a character that RFC 3986 §2.3 calls
/// unreserved (`A-Z a-z 0-9 - . _ ~`): some servers refuse those (an encoded `.`).
pub fn encodes_unreserved(path_as_sent: &str) -> bool {
    let bytes = path_as_sent.as_bytes();
    bytes.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    })
}

/// Order items at `/o/{id}/items` for each id, `{"items": [{"sku": "ID-1", "qty": 1}]}`,
/// on a strict server: a path with an unreserved character percent-encoded is answered
/// 400, like servers that refuse an encoded `.`.
pub fn serve_order_items(api: &TestApi, ids: &[&str]) {
    for id in ids {
        let id = id.to_string();
        api.set_handler(&format!("/o/{id}/items"), move |req: &Logged| {
            if encodes_unreserved(&req.path) {
                return Reply::error(400, "malformed path: unreserved characters are encoded");
            }
            Reply::json(&json!({ "items": [ { "sku": format!("{id}-1"), "qty": 1 } ] }))
        });
    }
}

/// An issue tracker's search (the shape of Jira's `GET /rest/api/2/search`):
/// `?startAt=N&maxResults=M`, answered `{"startAt", "maxResults", "total", "issues"}`,
/// but never more than `cap` issues a page whatever was asked.
pub fn serve_capped_search(api: &TestApi, path: &str, issues: Vec<Value>, cap: usize) {
    api.set_handler(path, move |req: &Logged| {
        let start: usize = req
            .query_value("startAt")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let asked: usize = req
            .query_value("maxResults")
            .and_then(|v| v.parse().ok())
            .unwrap_or(cap);
        let size = asked.min(cap);
        let page: Vec<Value> = issues.iter().skip(start).take(size).cloned().collect();
        Reply::json(&json!({
            "startAt": start,
            "maxResults": size,
            "total": issues.len(),
            "issues": page,
        }))
    });
}

/// A listing by page number that caps its page size: `?page=N&per_page=M`, answered
/// `{"data": [...], "total_pages": T}` with at most `cap` records a page, `T` counted
/// in pages of the size the server really serves.
pub fn serve_capped_pages(api: &TestApi, path: &str, records: Vec<Value>, cap: usize) {
    api.set_handler(path, move |req: &Logged| {
        let page: usize = req
            .query_value("page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let asked: usize = req
            .query_value("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(cap);
        let size = asked.min(cap).max(1);
        let data: Vec<Value> = records
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .cloned()
            .collect();
        Reply::json(&json!({ "data": data, "total_pages": records.len().div_ceil(size) }))
    });
}

/// The primary rate limit of a code-hosting API (GitHub's REST API): `403` with
/// `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` (epoch seconds) `reset_in`
/// from now.
pub fn github_rate_limit(reset_in: Duration) -> Fault {
    let reset = SystemTime::now() + reset_in;
    let epoch = reset
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        .ceil() as u64;
    Fault::Reply(
        Reply::json_status(
            403,
            &json!({
                "message": "API rate limit exceeded for 127.0.0.1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
            }),
        )
        .with_header("x-ratelimit-limit", "60")
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-used", "60")
        .with_header("x-ratelimit-reset", epoch.to_string()),
    )
}

/// The secondary rate limit of the same API: `403` with `Retry-After` seconds.
pub fn github_secondary_limit(retry_after_secs: u64) -> Fault {
    Fault::Reply(
        Reply::json_status(
            403,
            &json!({ "message": "You have exceeded a secondary rate limit." }),
        )
        .with_header("retry-after", retry_after_secs.to_string()),
    )
}

/// A refusal that is no rate limit: `403` with requests remaining.
pub fn forbidden_with_quota_left() -> Fault {
    Fault::Reply(
        Reply::json_status(403, &json!({ "message": "Resource not accessible" }))
            .with_header("x-ratelimit-remaining", "4999")
            .with_header("x-ratelimit-reset", "1"),
    )
}

/// A shop platform's throttle (Shopify's REST Admin API): `429` with `Retry-After: 2.0`,
/// decimal seconds.
pub fn shop_throttle(retry_after: &str) -> Fault {
    Fault::Reply(
        Reply::json_status(429, &json!({ "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service." }))
            .with_header("retry-after", retry_after),
    )
}
