//! Search endpoints as real APIs shape them, with data a test can add to between runs:
//! an issue tracker filtered by a query language (Jira's JQL), and two POST searches
//! that read their filter and their cursor from the JSON body (HubSpot's CRM search,
//! Intercom's contact search with a nested `pagination` object).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

use super::super::{Logged, Reply, TestApi};

/// Records a test adds to while the fake API serves them.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Vec<Value>>>);

impl Shared {
    pub fn push(&self, v: Value) {
        self.0.lock().unwrap().push(v);
    }
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

// ---- Jira -----------------------------------------------------------------------------

/// A Jira issue: `{"id", "key", "fields": {"summary", "updated"}}` with `updated` as
/// Jira writes it (`2024-03-01T08:00:30.000+0000`).
pub fn jira_issue(n: u64, updated: DateTime<Utc>) -> Value {
    json!({
        "id": (10000 + n).to_string(),
        "key": format!("PROJ-{n}"),
        "fields": {
            "summary": format!("Issue {n}"),
            "updated": updated.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        }
    })
}

fn jira_updated(issue: &Value) -> DateTime<Utc> {
    let text = issue["fields"]["updated"].as_str().unwrap_or_default();
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The bound of `updated >= "yyyy/MM/dd HH:mm"` (or `'...'`, or `yyyy-MM-dd HH:mm`)
/// in a JQL query, to the minute as Jira reads it; `Err` for JQL it cannot read.
fn jql_since(jql: &str) -> Result<Option<DateTime<Utc>>, String> {
    let Some(at) = jql.find("updated >= ") else {
        return if jql.trim().is_empty() || jql.trim_start().starts_with("ORDER BY") {
            Ok(None)
        } else {
            Err(format!("unsupported JQL: {jql}"))
        };
    };
    let rest = &jql[at + "updated >= ".len()..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
    let Some(q) = quote else {
        return Err("the date must be quoted".into());
    };
    let inner = &rest[1..];
    let end = inner.find(q).ok_or("unterminated date")?;
    let text = &inner[..end];
    ["%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|n| Some(n.and_utc()))
        .ok_or_else(|| format!("Date value '{text}' for field 'updated' is invalid"))
}

/// Jira's `GET /rest/api/2/search?jql=...&startAt=N&maxResults=M` at `path`: issues
/// whose `updated` is at or after the JQL's minute, ordered by `updated` then id,
/// `{"startAt", "maxResults", "total", "issues"}`, never more than `cap` a page.
/// JQL it cannot read is answered 400 with Jira's `errorMessages`.
pub fn serve_jira(api: &TestApi, path: &str, cap: usize) -> Shared {
    let issues = Shared::default();
    let data = issues.clone();
    api.set_handler(path, move |req: &Logged| {
        let since = match jql_since(req.query_value("jql").unwrap_or("")) {
            Ok(s) => s,
            Err(e) => {
                return Reply::json_status(400, &json!({ "errorMessages": [e], "errors": {} }))
            }
        };
        let num = |k: &str, d: usize| req.query_value(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let (start, size) = (num("startAt", 0), num("maxResults", 50).min(cap));
        let mut matching: Vec<Value> = data
            .all()
            .into_iter()
            .filter(|i| since.is_none_or(|s| jira_updated(i) >= s))
            .collect();
        matching.sort_by_key(|i| (jira_updated(i), i["id"].as_str().unwrap_or("").to_string()));
        let page: Vec<Value> = matching.iter().skip(start).take(size).cloned().collect();
        Reply::json(&json!({
            "startAt": start, "maxResults": size, "total": matching.len(), "issues": page,
        }))
    });
    issues
}

// ---- HubSpot --------------------------------------------------------------------------

/// A HubSpot contact: `{"id", "properties": {"email", "lastmodifieddate"}, "updatedAt"}`.
pub fn hubspot_contact(n: u64, modified: DateTime<Utc>) -> Value {
    let at = modified.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    json!({
        "id": n.to_string(),
        "properties": { "email": format!("c{n}@example.com"), "lastmodifieddate": at },
        "updatedAt": at,
        "archived": false
    })
}

fn modified_ms(c: &Value) -> i64 {
    c["properties"]["lastmodifieddate"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |d| d.timestamp_millis())
}

/// HubSpot's `POST /crm/v3/objects/contacts/search` at `path`: everything it needs is
/// in the JSON body — `filterGroups[].filters[]` (`lastmodifieddate` `GTE` a value in
/// epoch milliseconds, a string or a number), `sorts`, `limit` (at most `cap`) and the
/// cursor `after` — and nothing in the query. It answers `{"total", "results",
/// "paging": {"next": {"after"}}}`, without `paging` on the last page. A body that is
/// not JSON, or a filter it does not know, is answered 400.
pub fn serve_hubspot_search(api: &TestApi, path: &str, cap: usize) -> Shared {
    let contacts = Shared::default();
    let data = contacts.clone();
    api.set_handler(path, move |req: &Logged| {
        if req.method != "POST" {
            return Reply::error(405, "search takes POST");
        }
        let Some(body) = req.body_json() else {
            return Reply::json_status(400, &json!({ "status": "error", "message": "Invalid input JSON" }));
        };
        let mut since: Option<i64> = None;
        for group in body["filterGroups"].as_array().into_iter().flatten() {
            for f in group["filters"].as_array().into_iter().flatten() {
                let value = match &f["value"] {
                    Value::String(s) => s.parse::<i64>().ok(),
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                };
                match (f["propertyName"].as_str(), f["operator"].as_str(), value) {
                    (Some("lastmodifieddate"), Some("GTE"), Some(v)) => since = Some(v),
                    _ => {
                        return Reply::json_status(
                            400,
                            &json!({ "status": "error", "message": format!("unsupported filter {f}") }),
                        )
                    }
                }
            }
        }
        let ascending = body["sorts"][0]["propertyName"] == "lastmodifieddate"
            && body["sorts"][0]["direction"] == "ASCENDING";
        if !ascending {
            return Reply::json_status(400, &json!({ "status": "error", "message": "sort by lastmodifieddate ASCENDING" }));
        }
        let limit = body["limit"].as_u64().unwrap_or(10).min(cap as u64) as usize;
        let after: usize = match &body["after"] {
            Value::String(s) => s.parse().unwrap_or(0),
            Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
            _ => 0,
        };
        let mut matching: Vec<Value> = data
            .all()
            .into_iter()
            .filter(|c| since.is_none_or(|s| modified_ms(c) >= s))
            .collect();
        matching.sort_by_key(|c| (modified_ms(c), c["id"].as_str().unwrap_or("").to_string()));
        let page: Vec<Value> = matching.iter().skip(after).take(limit).cloned().collect();
        let mut out = json!({ "total": matching.len(), "results": page });
        if after + limit < matching.len() {
            out["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
        }
        Reply::json(&out)
    });
    contacts
}

// ---- Intercom -------------------------------------------------------------------------

/// An Intercom contact: `{"type": "contact", "id", "email", "updated_at"}` with
/// `updated_at` in epoch seconds.
pub fn intercom_contact(n: u64, updated: i64) -> Value {
    json!({ "type": "contact", "id": format!("ct_{n}"), "email": format!("u{n}@example.com"), "updated_at": updated })
}

/// Intercom's `POST /contacts/search` at `path`: `{"query": {"field": "updated_at",
/// "operator": ">", "value": SECONDS}, "pagination": {"per_page": N, "starting_after":
/// C}}`, answered `{"type": "list", "data", "total_count", "pages": {"next":
/// {"starting_after"}}}` (no `next` on the last page). The cursor is read only from
/// `pagination.starting_after` in the body.
pub fn serve_intercom_search(api: &TestApi, path: &str) -> Shared {
    let contacts = Shared::default();
    let data = contacts.clone();
    api.set_handler(path, move |req: &Logged| {
        let Some(body) = req.body_json().filter(|_| req.method == "POST") else {
            return Reply::json_status(400, &json!({ "type": "error.list", "errors": [{ "code": "parameter_invalid" }] }));
        };
        let q = &body["query"];
        let since = match (q["field"].as_str(), q["operator"].as_str(), q["value"].as_i64()) {
            (Some("updated_at"), Some(">"), Some(v)) => Some(v),
            (None, None, None) => None,
            _ => return Reply::json_status(400, &json!({ "type": "error.list", "errors": [{ "code": "invalid_query", "message": q.to_string() }] })),
        };
        let per_page = body["pagination"]["per_page"].as_u64().unwrap_or(50) as usize;
        let after: usize = body["pagination"]["starting_after"]
            .as_str()
            .and_then(|c| c.strip_prefix("pos:"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut matching: Vec<Value> = data
            .all()
            .into_iter()
            .filter(|c| since.is_none_or(|s| c["updated_at"].as_i64().unwrap_or(0) > s))
            .collect();
        matching.sort_by_key(|c| (c["updated_at"].as_i64(), c["id"].as_str().map(str::to_string)));
        let page: Vec<Value> = matching.iter().skip(after).take(per_page).cloned().collect();
        let mut pages = json!({ "type": "pages", "per_page": per_page });
        if after + per_page < matching.len() {
            pages["next"] = json!({ "starting_after": format!("pos:{}", after + per_page) });
        }
        Reply::json(&json!({ "type": "list", "data": page, "total_count": matching.len(), "pages": pages }))
    });
    contacts
}
