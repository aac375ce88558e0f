//! Values a paginator reads from a response: a JSONPath into the body or a header
//! (`header("X-Total-Count")`, spec §5.2a), and how they are read as numbers and flags.

use super::super::http::Response;
use crate::check::{More, Pick};
use crate::nodes::eval::Path;
use serde_json::Value as Json;

/// A [`Pick`] ready to read.
pub enum Picker {
    Body(Path),
    Header(String),
}

impl Picker {
    pub fn compile(p: &Pick) -> Picker {
        match p {
            Pick::Body(path) => Picker::Body(Path::compile(path)),
            Pick::Header(name) => Picker::Header(name.clone()),
        }
    }

    /// The value picked: from the body as JSON, a header as a string (the first one
    /// when it is repeated; none when it is not text).
    pub fn get(&self, resp: &Response) -> Option<Json> {
        match self {
            Picker::Body(p) => resp.get(p),
            Picker::Header(name) => resp
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|v| Json::String(v.trim().to_string())),
        }
    }
}

/// A stop flag ready to read: `has_more` or `done`.
pub struct Flag {
    picker: Picker,
    done: bool,
}

impl Flag {
    pub fn compile(m: &More) -> Flag {
        Flag {
            picker: Picker::compile(&m.pick),
            done: m.done,
        }
    }

    /// Whether the page says more pages follow: `has_more` as it is, `done` negated;
    /// `None` when the flag is missing or not a boolean.
    pub fn more(&self, resp: &Response) -> Option<bool> {
        let v = as_flag(&self.picker.get(resp)?)?;
        Some(v != self.done)
    }

    /// The flag's name, for warnings.
    pub fn name(&self) -> &'static str {
        if self.done {
            "done"
        } else {
            "has_more"
        }
    }
}

/// A boolean, or its text in a header or string (`true`/`false`, `1`/`0`).
fn as_flag(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Json::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A whole number, or its text.
pub fn as_i64(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
