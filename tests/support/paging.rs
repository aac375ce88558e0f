//! Datasets and the pagination styles they are served with (mirrors spec §5.1).

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::http::{base64_decode, base64_encode};

/// How a dataset is split into pages. Every `*_key`/`*_pointer` is either a top-level
/// key (`"data"`) or a JSON pointer (`"/_embedded/items"`), created as needed.
#[derive(Clone, Debug)]
pub enum Paging {
    /// Everything at once: a bare JSON array, or `{records_key: [...]}`.
    None { records_key: Option<String> },
    /// `?param=N` (first page `start`, also when absent); page N holds
    /// `records[(N-start)*size ..][..size]`, size from `size_param` or `default_size`.
    Page {
        param: String,
        start: i64,
        size_param: Option<String>,
        default_size: usize,
        records_key: String,
        total_pages_key: Option<String>,
    },
    /// `?param=OFFSET&limit_param=N` (offset 0 and `default_limit` when absent).
    Offset {
        param: String,
        limit_param: Option<String>,
        default_limit: usize,
        records_key: String,
        total_key: Option<String>,
    },
    /// Cursor pagination; the first page is asked for without `param`.
    Cursor {
        param: String,
        limit_param: Option<String>,
        page_size: usize,
        records_key: String,
        next: CursorNext,
        /// `has_more: bool` is written here when given.
        has_more_key: Option<String>,
    },
    /// The body holds the URL of the next page (HAL `_links.next.href` style); absent
    /// on the last page. The server uses its own `page` query parameter in these URLs
    /// and keeps the request's other query parameters (except an `Auth::Query` key).
    NextUrl {
        records_pointer: String,
        next_pointer: String,
        page_size: usize,
        /// `/path?page=2` instead of `http://127.0.0.1:PORT/path?page=2`.
        relative: bool,
    },
    /// JSON array bodies + `Link: <first>; rel="first", <prev>; rel="prev", <next>;
    /// rel="next", <last>; rel="last"`. Uses `page` like `NextUrl`.
    LinkHeader {
        per_page_param: Option<String>,
        default_per_page: usize,
        relative: bool,
    },
}

/// Where the next cursor comes from.
#[derive(Clone, Debug)]
pub enum CursorNext {
    /// An opaque base64 token (always containing `+`, `/` and `=`) written at `pointer`,
    /// null on the last page. A token that arrives mangled (e.g. `+` not
    /// percent-encoded) is answered 400.
    Token { pointer: String },
    /// Stripe style: the client sends the `id_field` of the last record it got
    /// (`starting_after=<id>`); an unknown id is answered 400.
    LastId { id_field: String },
}

impl Paging {
    /// A bare JSON array.
    pub fn none() -> Paging {
        Paging::None { records_key: None }
    }

    /// `{key: [...]}`, everything at once.
    pub fn wrapped(key: &str) -> Paging {
        Paging::None {
            records_key: Some(key.into()),
        }
    }

    /// `?page=N` from 1, `per_page` honoured, records under `data`.
    pub fn page(size: usize) -> Paging {
        Paging::Page {
            param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            default_size: size,
            records_key: "data".into(),
            total_pages_key: None,
        }
    }

    /// `?offset=N&limit=M`, records under `data`.
    pub fn offset(limit: usize) -> Paging {
        Paging::Offset {
            param: "offset".into(),
            limit_param: Some("limit".into()),
            default_limit: limit,
            records_key: "data".into(),
            total_key: None,
        }
    }

    /// `?cursor=TOKEN`, next token at `$.next_cursor`, records under `data`.
    pub fn cursor_token(size: usize) -> Paging {
        Paging::Cursor {
            param: "cursor".into(),
            limit_param: Some("limit".into()),
            page_size: size,
            records_key: "data".into(),
            next: CursorNext::Token {
                pointer: "next_cursor".into(),
            },
            has_more_key: None,
        }
    }

    /// Stripe: `?starting_after=<last id>&limit=N`, `{data: [...], has_more: bool}`.
    pub fn stripe(size: usize) -> Paging {
        Paging::Cursor {
            param: "starting_after".into(),
            limit_param: Some("limit".into()),
            page_size: size,
            records_key: "data".into(),
            next: CursorNext::LastId {
                id_field: "id".into(),
            },
            has_more_key: Some("has_more".into()),
        }
    }

    /// HAL: records at `$._embedded.items`, next at `$._links.next.href`.
    pub fn next_url(size: usize, relative: bool) -> Paging {
        Paging::NextUrl {
            records_pointer: "/_embedded/items".into(),
            next_pointer: "/_links/next/href".into(),
            page_size: size,
            relative,
        }
    }

    /// GitHub style: array bodies, `per_page` honoured, absolute `Link` URLs.
    pub fn link_header(per_page: usize) -> Paging {
        Paging::LinkHeader {
            per_page_param: Some("per_page".into()),
            default_per_page: per_page,
            relative: false,
        }
    }
}

/// The order records are listed in.
#[derive(Clone, Debug, Default)]
pub enum Order {
    /// As set/pushed.
    #[default]
    Inserted,
    /// Ascending by a field (stable: ties keep insertion order).
    Ascending(String),
    /// Descending by a field, newest first (stable: ties keep insertion order).
    Descending(String),
}

/// Sets `key` (top-level key or JSON pointer) in `root`, creating objects on the way.
pub fn put(root: &mut Value, key: &str, value: Value) {
    let parts: Vec<String> = match key.strip_prefix('/') {
        Some(ptr) => ptr
            .split('/')
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect(),
        None => vec![key.to_string()],
    };
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut().expect("object");
        if i + 1 == parts.len() {
            obj.insert(part.clone(), value);
            return;
        }
        cur = obj
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Numbers numerically, everything else as strings; a missing field sorts first.
pub fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => text_of(x).cmp(&text_of(y)),
    }
}

const CURSOR_MAGIC: [u8; 6] = [0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff];

/// The opaque cursor token for an offset: base64 holding `++++////` and ending in `=`.
pub fn cursor_token(offset: usize) -> String {
    let mut raw = CURSOR_MAGIC.to_vec();
    raw.extend_from_slice(format!("o:{offset}").as_bytes());
    if raw.len().is_multiple_of(3) {
        raw.push(b'.');
    }
    base64_encode(&raw)
}

/// The offset inside a token made by `cursor_token`.
pub fn parse_cursor_token(token: &str) -> Option<usize> {
    let raw = base64_decode(token)?;
    let rest = raw.strip_prefix(&CURSOR_MAGIC[..])?;
    let text = std::str::from_utf8(rest).ok()?;
    text.trim_end_matches('.').strip_prefix("o:")?.parse().ok()
}
