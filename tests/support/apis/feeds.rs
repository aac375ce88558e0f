//! Listings as real APIs shape them: an incremental export that hands out an opaque
//! resume cursor (Zendesk's cursor-based incremental export), a blog listing that puts
//! its totals in headers and refuses pages past the end (the WordPress REST API), and a
//! payments listing filtered by `created[gte]` in epoch seconds (Stripe).

use serde_json::{json, Value};

use super::super::{base64_decode, base64_encode, Logged, Reply, TestApi};
use super::search::Shared;

// ---- Zendesk --------------------------------------------------------------------------

/// A Zendesk ticket: `{"id", "subject", "updated_at"}`, `updated_at` RFC 3339.
pub fn zendesk_ticket(n: u64, updated: &str) -> Value {
    json!({ "id": n, "subject": format!("Ticket {n}"), "updated_at": updated })
}

fn cursor_for(position: usize) -> String {
    base64_encode(format!("ticket-export:{position}").as_bytes())
}

fn position_of(cursor: &str) -> Option<usize> {
    let bytes = base64_decode(cursor)?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("ticket-export:")?
        .parse()
        .ok()
}

/// Zendesk's `GET /api/v2/incremental/tickets/cursor.json` at `path`, `per_page` a
/// page: the first request gives `start_time` (epoch seconds; tickets updated at or
/// after it), later ones `cursor` (then `start_time` is ignored). Each page is
/// `{"tickets", "after_cursor", "after_url", "before_cursor", "end_of_stream"}`; the
/// last page's `after_cursor` points past the newest ticket, so a client that keeps it
/// asks later for what came since. Tickets are listed in the order they were added. A
/// request with neither, or an unreadable cursor, is answered 400.
pub fn serve_zendesk_export(api: &TestApi, path: &str, per_page: usize) -> Shared {
    let tickets = Shared::default();
    let data = tickets.clone();
    let base = api.url_for(path);
    api.set_handler(path, move |req: &Logged| {
        let all = data.all();
        let start = match (req.query_value("cursor"), req.query_value("start_time")) {
            (Some(c), _) => match position_of(c) {
                Some(p) => p,
                None => return Reply::json_status(400, &json!({ "error": "InvalidCursor" })),
            },
            (None, Some(t)) => match t.parse::<i64>() {
                Ok(t) => all
                    .iter()
                    .position(|x| {
                        chrono::DateTime::parse_from_rfc3339(x["updated_at"].as_str().unwrap_or(""))
                            .map_or(0, |d| d.timestamp())
                            >= t
                    })
                    .unwrap_or(all.len()),
                Err(_) => return Reply::json_status(400, &json!({ "error": "InvalidValue", "description": "start_time" })),
            },
            (None, None) => {
                return Reply::json_status(400, &json!({ "error": "InvalidValue", "description": "start_time or cursor is required" }))
            }
        };
        let page: Vec<Value> = all.iter().skip(start).take(per_page).cloned().collect();
        let end = (start + page.len()).min(all.len());
        let after = cursor_for(end);
        Reply::json(&json!({
            "tickets": page,
            "after_cursor": after,
            "after_url": format!("{base}?cursor={after}"),
            "before_cursor": cursor_for(start),
            "end_of_stream": end >= all.len(),
        }))
    });
    tickets
}

// ---- WordPress ------------------------------------------------------------------------

/// The WordPress REST API's `GET /wp-json/wp/v2/posts?page=N&per_page=M` at `path`: a
/// bare JSON array of posts, at most `cap` a page whatever `per_page` asks, the totals
/// in `X-WP-Total` and `X-WP-TotalPages`, and `400 rest_post_invalid_page_number` for a
/// page past the last.
pub fn serve_wordpress_posts(api: &TestApi, path: &str, posts: Vec<Value>, cap: usize) {
    api.set_handler(path, move |req: &Logged| {
        let num = |k: &str, d: usize| {
            req.query_value(k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(d)
        };
        let (page, size) = (num("page", 1).max(1), num("per_page", 10).clamp(1, cap));
        let pages = posts.len().div_ceil(size).max(1);
        if page > pages {
            return Reply::json_status(
                400,
                &json!({ "code": "rest_post_invalid_page_number", "message": "The page number requested is larger than the number of pages available.", "data": { "status": 400 } }),
            );
        }
        let items: Vec<Value> = posts.iter().skip((page - 1) * size).take(size).cloned().collect();
        Reply::json(&Value::Array(items))
            .with_header("x-wp-total", posts.len().to_string())
            .with_header("x-wp-totalpages", pages.to_string())
    });
}

// ---- Stripe ---------------------------------------------------------------------------

/// A Stripe charge: `{"id": "ch_N", "object": "charge", "amount", "created"}` with
/// `created` in epoch seconds.
pub fn stripe_charge(n: u64, created: i64) -> Value {
    json!({ "id": format!("ch_{n:04}"), "object": "charge", "amount": 100 * n, "currency": "eur", "created": created })
}

/// Stripe's `GET /v1/charges?created[gte]=SECONDS&limit=N&starting_after=ID` at
/// `path`: newest first as Stripe lists them, `{"object": "list", "data", "has_more"}`.
/// A `created[gte]` that is not a whole number of seconds is answered 400 as Stripe
/// does.
pub fn serve_stripe_charges(api: &TestApi, path: &str) -> Shared {
    let charges = Shared::default();
    let data = charges.clone();
    api.set_handler(path, move |req: &Logged| {
        let gte = match req.query_value("created[gte]") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    return Reply::json_status(400, &json!({ "error": { "type": "invalid_request_error", "message": format!("Invalid integer: {v}"), "param": "created[gte]" } }))
                }
            },
        };
        let limit: usize = req
            .query_value("limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        let mut all: Vec<Value> = data
            .all()
            .into_iter()
            .filter(|c| gte.is_none_or(|g| c["created"].as_i64().unwrap_or(0) >= g))
            .collect();
        all.sort_by(|a, b| b["created"].as_i64().cmp(&a["created"].as_i64()).then(b["id"].as_str().cmp(&a["id"].as_str())));
        let from = match req.query_value("starting_after") {
            Some(id) => match all.iter().position(|c| c["id"] == id) {
                Some(p) => p + 1,
                None => return Reply::json_status(400, &json!({ "error": { "type": "invalid_request_error", "message": format!("No such charge: '{id}'") } })),
            },
            None => 0,
        };
        let page: Vec<Value> = all.iter().skip(from).take(limit).cloned().collect();
        let has_more = from + page.len() < all.len();
        Reply::json(&json!({ "object": "list", "data": page, "has_more": has_more, "url": "/v1/charges" }))
    });
    charges
}
