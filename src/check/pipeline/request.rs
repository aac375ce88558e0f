//! What a source sends and how it pages, as checked: query and body values (constants,
//! or expressions of `watermark` computed once a run), paginators with where they read
//! their values (body or header) and where they write theirs (query or body), and how a
//! watermark is written and how far back it reaches (spec §5.1, §5.2, §5.2a).

use super::{Expr, JsonPath, Text};
use rust_decimal::Decimal;

/// A query parameter's value: a constant, or an expression computed once a run (it may
/// use `watermark`, spec §5.2a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Text(Text),
    Computed(Expr),
}

impl ParamValue {
    pub fn uses_watermark(&self) -> bool {
        matches!(self, ParamValue::Computed(e) if e.uses_field(WATERMARK))
    }
}

/// The name that stands for the source's watermark in `query` and `body` values.
pub const WATERMARK: &str = "watermark";

/// A JSON request body: built from a `body { ... }` block, its objects `{ ... }` and
/// lists; a `Computed` value is an expression computed once a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyValue {
    Null,
    Bool(bool),
    Number(String),
    Text(Text),
    List(Vec<BodyValue>),
    Object(Vec<(String, BodyValue)>),
    Computed(Expr),
}

impl BodyValue {
    /// Whether `watermark` is used anywhere in it.
    pub fn uses_watermark(&self) -> bool {
        match self {
            BodyValue::Computed(e) => e.uses_field(WATERMARK),
            BodyValue::List(items) => items.iter().any(BodyValue::uses_watermark),
            BodyValue::Object(items) => items.iter().any(|(_, v)| v.uses_watermark()),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paginate {
    None,
    Page {
        param: String,
        start: i64,
        size_param: Option<String>,
        size: Option<u64>,
        total_pages: Option<Pick>,
        more: Option<More>,
        in_body: bool,
        max_pages: u64,
    },
    Offset {
        param: String,
        start: i64,
        limit_param: Option<String>,
        limit: Option<u64>,
        total: Option<Pick>,
        more: Option<More>,
        in_body: bool,
        max_pages: u64,
    },
    Cursor {
        param: String,
        from: Pick,
        more: Option<More>,
        in_body: bool,
        max_pages: u64,
    },
    NextUrl {
        path: Pick,
        more: Option<More>,
        max_pages: u64,
    },
    LinkHeader {
        more: Option<More>,
        max_pages: u64,
    },
}

/// Where a paginator argument reads its value: a JSONPath into the response body, or
/// `header("Name")`, a response header (spec §5.2a).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pick {
    Body(JsonPath),
    Header(String),
}

/// A stop flag: `has_more = PICK` (stops when false) or `done = PICK` (stops when true).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct More {
    pub pick: Pick,
    /// `done`: the flag says the listing ended when true.
    pub done: bool,
}

impl Paginate {
    pub fn max_pages(&self) -> u64 {
        match self {
            Paginate::None => 1,
            Paginate::Page { max_pages, .. }
            | Paginate::Offset { max_pages, .. }
            | Paginate::Cursor { max_pages, .. }
            | Paginate::NextUrl { max_pages, .. }
            | Paginate::LinkHeader { max_pages, .. } => *max_pages,
        }
    }

    /// The `has_more` or `done` flag, if given.
    pub fn more(&self) -> Option<&More> {
        match self {
            Paginate::None => None,
            Paginate::Page { more, .. }
            | Paginate::Offset { more, .. }
            | Paginate::Cursor { more, .. }
            | Paginate::NextUrl { more, .. }
            | Paginate::LinkHeader { more, .. } => more.as_ref(),
        }
    }

    /// Whether the paginator puts its values in the request body (`in = body`).
    pub fn in_body(&self) -> bool {
        matches!(
            self,
            Paginate::Page { in_body: true, .. }
                | Paginate::Offset { in_body: true, .. }
                | Paginate::Cursor { in_body: true, .. }
        )
    }
}

/// How a datetime is written as text in a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TimeFormat {
    /// `2024-03-01T08:00:00Z`
    #[default]
    Rfc3339,
    /// Seconds since 1970.
    Unix,
    /// Milliseconds since 1970.
    UnixMs,
    /// A strftime pattern, in UTC.
    Strftime(String),
}

/// `lookback`: a duration for a datetime cursor, a number for a numeric one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookback {
    Millis(u64),
    Number(Decimal),
}
