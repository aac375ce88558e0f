//! A recorded exchange as its file holds it, secrets masked; how a request is matched
//! with a recorded one; and the names of the files.

use crate::masking::Masker;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One exchange as written to a recording: what was asked and what came back (or how it
/// failed), secrets masked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    pub request: Asked,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Answered>,
    /// How the exchange failed without an answer (a refused connection, a timeout, a
    /// body cut short).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From sending the request to the end of the answer's body (to its headers, when
    /// watched).
    #[serde(default)]
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Asked {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(flatten)]
    pub body: Body,
}

/// Headers by name: a value, or the values of a header sent more than once.
pub type Headers = serde_json::Map<String, Json>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Answered {
    pub status: u16,
    #[serde(default)]
    pub headers: Headers,
    #[serde(flatten)]
    pub body: Body,
}

/// A body as a person reads it best: JSON as JSON, other text as text, anything else in
/// base64. At most one of the three is set; none for no body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl Body {
    /// Secrets masked: a body that is JSON stays JSON when masking leaves it JSON.
    pub(super) fn of(bytes: &[u8], masker: &Masker) -> Body {
        if bytes.is_empty() {
            return Body::default();
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Body {
                body_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                ..Body::default()
            };
        };
        let masked = masker.mask(text);
        match serde_json::from_str::<Json>(&masked) {
            Ok(json) => Body {
                body: Some(json),
                ..Body::default()
            },
            Err(_) => Body {
                body_text: Some(masked),
                ..Body::default()
            },
        }
    }

    pub(super) fn bytes(&self) -> Result<Vec<u8>, String> {
        if let Some(json) = &self.body {
            return serde_json::to_vec(json).map_err(|e| e.to_string());
        }
        if let Some(text) = &self.body_text {
            return Ok(text.clone().into_bytes());
        }
        if let Some(b64) = &self.body_base64 {
            return base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("`body_base64` is not base64: {e}"));
        }
        Ok(Vec::new())
    }

    /// The body as text, for matching a replayed request.
    fn text(&self) -> String {
        match (&self.body, &self.body_text, &self.body_base64) {
            (Some(json), _, _) => json.to_string(),
            (_, Some(text), _) => text.clone(),
            (_, _, Some(b64)) => b64.clone(),
            _ => String::new(),
        }
    }
}

/// Headers whose values are credentials whatever the pipeline declares.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// The request as recorded: URL, headers and body with every secret masked.
pub(super) fn asked(request: &reqwest::Request, masker: &Masker) -> Asked {
    Asked {
        method: request.method().as_str().to_string(),
        url: masker.url(request.url()),
        headers: shown_headers(request.headers(), masker),
        body: request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .map(|b| Body::of(b, masker))
            .unwrap_or_default(),
    }
}

/// Headers as text: credentials as `***` (a value marked sensitive, or a header that
/// holds credentials by its name), every declared secret masked in the others.
pub(super) fn shown_headers(headers: &HeaderMap, masker: &Masker) -> Headers {
    let mut out = Headers::new();
    for (name, value) in headers {
        let shown = if value.is_sensitive() || CREDENTIAL_HEADERS.contains(&name.as_str()) {
            "***".to_string()
        } else {
            masker.mask(&String::from_utf8_lossy(value.as_bytes()))
        };
        match out.get_mut(name.as_str()) {
            None => {
                out.insert(name.as_str().to_string(), Json::String(shown));
            }
            Some(Json::Array(values)) => values.push(Json::String(shown)),
            Some(first) => *first = Json::Array(vec![first.take(), Json::String(shown)]),
        }
    }
    out
}

/// A request matches a recorded one when method, URL and body agree, a masked secret
/// (`***`) in the recording standing for any value: a replay may run without the
/// credentials, or with others.
pub(super) fn same_request(recorded: &Asked, asked: &Asked) -> bool {
    recorded.method == asked.method
        && masked_match(&recorded.url, &asked.url)
        && masked_match(&recorded.body.text(), &asked.body.text())
}

/// `pattern` equals `text`, each `***` in it matching any run of characters (possibly
/// none) that holds no URL delimiter.
fn masked_match(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once("***") else {
        return pattern == text;
    };
    let Some(after) = text.strip_prefix(head) else {
        return false;
    };
    // Try every length of the masked value, shortest first.
    for (i, c) in after.char_indices() {
        if masked_match(rest, &after[i..]) {
            return true;
        }
        if matches!(c, '&' | '?' | '#' | '/' | '"' | ',' | '}') {
            return false;
        }
    }
    masked_match(rest, "")
}

/// `00012-GET-api.example.com-orders-items.json`: the order, then what a person looks
/// for in a listing.
pub(super) fn file_name(n: u64, asked: &Asked) -> String {
    // The masked URL (a secret may sit in its path) without scheme and query.
    let place = asked
        .url
        .split_once("://")
        .map_or(asked.url.as_str(), |(_, rest)| rest);
    let place = place.split(['?', '#']).next().unwrap_or_default();
    let mut slug: String = place
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    slug = slug.trim_matches('-').to_string();
    slug.truncate(60);
    format!("{n:05}-{}-{slug}.json", asked.method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_secret_matches_any_value_but_no_delimiter() {
        assert!(masked_match(
            "http://a/x?key=***&p=2",
            "http://a/x?key=***&p=2"
        ));
        assert!(masked_match(
            "http://a/x?key=***&p=2",
            "http://a/x?key=&p=2"
        ));
        assert!(masked_match(
            "http://a/x?key=***&p=2",
            "http://a/x?key=other&p=2"
        ));
        assert!(!masked_match(
            "http://a/x?key=***&p=2",
            "http://a/x?key=a&b&p=2"
        ));
        assert!(!masked_match(
            "http://a/x?key=***&p=2",
            "http://a/x?key=a&p=3"
        ));
        assert!(masked_match("http://a/***", "http://a/t0k"));
        assert!(!masked_match("http://a/***", "http://a/t0k/more"));
        assert!(masked_match("plain", "plain"));
        assert!(!masked_match("plain", "plainer"));
    }

    #[test]
    fn bodies_keep_their_form_and_lose_their_secrets() {
        let m = Masker::new(vec!["s3cret".into()]);
        let json = Body::of(br#"{"a":1,"t":"s3cret"}"#, &m);
        assert_eq!(json.body, Some(serde_json::json!({"a": 1, "t": "***"})));
        let text = Body::of(b"not json s3cret", &m);
        assert_eq!(text.body_text.as_deref(), Some("not json ***"));
        let binary = Body::of(&[0xff, 0x00, 0x01], &m);
        assert_eq!(binary.bytes().unwrap(), vec![0xff, 0x00, 0x01]);
        assert_eq!(Body::of(b"", &m), Body::default());
    }

    #[test]
    fn file_names_sort_by_their_number() {
        let asked = Asked {
            method: "GET".into(),
            url: "http://127.0.0.1:8700/pos/orders?page=2".into(),
            headers: Headers::new(),
            body: Body::default(),
        };
        assert_eq!(
            file_name(12, &asked),
            "00012-GET-127.0.0.1-8700-pos-orders.json"
        );
        let masked = Asked {
            url: "http://127.0.0.1:8700***/orders/a%2Fb?key=***".into(),
            ..asked
        };
        assert_eq!(
            file_name(3, &masked),
            "00003-GET-127.0.0.1-8700-orders-a-2Fb.json"
        );
    }
}
