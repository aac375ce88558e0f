//! The secrets of a checked pipeline, for masking output: secret texts, passwords in
//! URLs and webhook tokens; and a URL as `graph` shows it, with them masked.

use super::{Auth, BodyValue, Pipeline, Sink, Text};

impl Pipeline {
    /// Every secret value, for masking output.
    pub fn secrets(&self) -> Vec<String> {
        let mut texts: Vec<&Text> = Vec::new();
        for s in self.services.values() {
            match &s.auth {
                Auth::None => {}
                Auth::Bearer(t) => texts.push(t),
                Auth::Basic(u, p) => texts.extend([u, p]),
                Auth::Header { value, .. } | Auth::Query { value, .. } => texts.push(value),
            }
            texts.extend(s.headers.iter().map(|(_, v)| v));
        }
        for s in self.sources.values() {
            texts.extend(s.query.iter().map(|(_, v)| v));
            if let Some(b) = &s.body {
                body_secrets(b, &mut texts);
            }
        }
        let mut out: Vec<String> = Vec::new();
        for s in self.services.values() {
            out.extend(url_secrets(&s.base_url, false));
        }
        for s in self.sinks.values() {
            if let Sink::Postgres { url, .. } | Sink::Webhook { url, .. } = s {
                texts.push(url);
                out.extend(url_secrets(&url.value, matches!(s, Sink::Webhook { .. })));
            }
        }
        out.extend(
            texts
                .into_iter()
                .filter(|t| t.secret && !t.value.is_empty())
                .map(|t| t.value.clone()),
        );
        out.sort();
        out.dedup();
        out
    }
}

fn body_secrets<'a>(b: &'a BodyValue, out: &mut Vec<&'a Text>) {
    match b {
        BodyValue::Text(t) => out.push(t),
        BodyValue::List(items) => items.iter().for_each(|i| body_secrets(i, out)),
        BodyValue::Object(items) => items.iter().for_each(|(_, i)| body_secrets(i, out)),
        _ => {}
    }
}

/// The parts of a URL that are secrets: its password, and (`query_too`, for a webhook,
/// whose URL often carries its token) the values of its query of six characters or more.
fn url_secrets(url: &str, query_too: bool) -> Vec<String> {
    let Ok(u) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut out: Vec<String> = u.password().map(str::to_string).into_iter().collect();
    if query_too {
        out.extend(
            u.query_pairs()
                .map(|(_, v)| v.into_owned())
                .filter(|v| v.len() >= 6),
        );
    }
    out
}

/// A URL as `graph` shows it: the password and every query value are `***`.
pub fn url_shown(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), "***".to_string()))
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}
