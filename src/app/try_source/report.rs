//! What `try` found, as the human report and `--format json` show it.

use super::flags::Flag;
use crate::nodes::tape::Exchange;
use serde::Serialize;
use serde_json::{Map, Value as Json};

/// Everything `try` found, printed as tables or as one JSON object.
#[derive(Debug, Serialize)]
pub struct Trial {
    pub source: String,
    pub service: String,
    /// For a child source: its parent and the requests its first records trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentTrial>,
    pub pages: Vec<PageTrial>,
    pub flags: Vec<Flag>,
    /// Why the trial stopped short (a request that failed), secrets masked.
    pub error: Option<String>,
    #[serde(skip)]
    pub fields: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ParentTrial {
    pub source: String,
    /// The parent's first page, as fetched to find its records.
    pub page: Option<PageTrial>,
    /// The first requests the parent's first records would trigger.
    pub requests: Vec<Triggered>,
}

#[derive(Debug, Serialize)]
pub struct Triggered {
    /// The parent record, as the child sees it (`parent.FIELD`).
    pub record: Json,
    pub request: String,
}

#[derive(Debug, Serialize)]
pub struct PageTrial {
    pub page: u64,
    /// Every exchange the page took: retries and redirects too.
    pub exchanges: Vec<Exchange>,
    pub elapsed_ms: u64,
    /// How many items `records` selected.
    pub selected: usize,
    /// How many of them became records, and how many of those `where` let through.
    pub records: usize,
    pub passed: usize,
    /// The first records, field by field.
    pub sample: Vec<Map<String, Json>>,
    pub rejected: Vec<Rejected>,
    pub next: NextRequest,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    /// The item's place on the page, from 1.
    pub item: usize,
    pub reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NextRequest {
    /// What the paginator asks next; `fetched` says whether `--pages` let it go out.
    Request { request: String, fetched: bool },
    /// The last page: nothing comes next.
    Done,
    /// The paginator stopped early, and why.
    Stopped(String),
    /// The page was not answered.
    None,
}
