//! An event's body as record items: JSON, or `application/x-www-form-urlencoded` read as
//! an object of strings; `records` selects the items (an object is one, an array many).

use crate::nodes::eval::Path;
use http::HeaderMap;
use serde_json::Value as Json;

/// The items of an event, or why its body is malformed (answered 400).
pub fn items(
    headers: &HeaderMap,
    body: &[u8],
    records: Option<&Path>,
) -> Result<Vec<Json>, String> {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let value: Json = if form {
        let fields = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Json::String(v.into_owned())))
            .collect();
        Json::Object(fields)
    } else {
        serde_json::from_slice(body)
            .map_err(|e| format!("the body is neither JSON nor form data: {e}"))?
    };
    let selected: Vec<Json> = match records {
        None => vec![value],
        Some(path) => path.select(&value).into_iter().cloned().collect(),
    };
    Ok(selected
        .into_iter()
        .flat_map(|v| match v {
            Json::Array(items) => items,
            other => vec![other],
        })
        .collect())
}
