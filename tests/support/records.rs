//! Deterministic test records.
//!
//! Record `seq` (1-based):
//! `{"id": "r00001", "seq": 1, "created_at": "2026-01-01T00:00:00Z",
//!   "updated_at": "2026-01-01T01:00:00Z", "amount": "12.50", "currency": "EUR",
//!   "name": "Item 1", "nested": {"a": 1}, "tags": ["x"]}`
//!
//! `PER_TIMESTAMP` consecutive records share one `created_at` (one minute apart per
//! group), so ties on the cursor field are the normal case.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// How many consecutive records share a `created_at`.
pub const PER_TIMESTAMP: u64 = 3;

/// 2026-01-01T00:00:00Z
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// RFC 3339 UTC with a `Z`, whole seconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn id(seq: u64) -> String {
    format!("r{seq:05}")
}

pub fn created_at(seq: u64) -> String {
    let group = (seq.max(1) - 1) / PER_TIMESTAMP;
    rfc3339(epoch() + Duration::minutes(group as i64))
}

pub fn updated_at(seq: u64) -> String {
    let group = (seq.max(1) - 1) / PER_TIMESTAMP;
    rfc3339(epoch() + Duration::minutes(group as i64) + Duration::hours(1))
}

/// `"12.50"`, `"13.75"`, … exact two-decimal strings.
pub fn amount(seq: u64) -> String {
    let cents = 1250 + (seq.max(1) - 1) * 125;
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Every fourth record is in USD, the others in EUR.
pub fn currency(seq: u64) -> &'static str {
    if seq.is_multiple_of(4) {
        "USD"
    } else {
        "EUR"
    }
}

pub fn record(seq: u64) -> Value {
    let tags = if seq.is_multiple_of(2) {
        json!(["x", "even"])
    } else {
        json!(["x"])
    };
    json!({
        "id": id(seq),
        "seq": seq,
        "created_at": created_at(seq),
        "updated_at": updated_at(seq),
        "amount": amount(seq),
        "currency": currency(seq),
        "name": format!("Item {seq}"),
        "nested": { "a": seq },
        "tags": tags,
    })
}

/// Records 1..=n.
pub fn make(n: usize) -> Vec<Value> {
    range(1, n)
}

/// `n` records starting at `first` (for data that grows: `range(11, 5)` after `make(10)`).
pub fn range(first: u64, n: usize) -> Vec<Value> {
    (first..first + n as u64).map(record).collect()
}

/// A copy of `record` with `field` set to `value` and `updated_at` one day later: the
/// same key with changed content.
pub fn changed(record: &Value, field: &str, value: Value) -> Value {
    let mut out = record.clone();
    out[field] = value;
    if field != "updated_at" {
        let later = record["updated_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc) + Duration::days(1))
            .unwrap_or_else(|| epoch() + Duration::days(1));
        out["updated_at"] = json!(rfc3339(later));
    }
    out
}

/// The `id`s of records, in order.
pub fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}
