//! The secrets of a checked pipeline, for masking output: secret texts, passwords in
//! URLs, webhook tokens and `exec` arguments from `env()`; and a URL as `graph` shows
//! it, with them masked.

use super::{Auth, BodyValue, Pipeline, Sink, Text};

impl Pipeline {
    /// Every secret value, for masking output.
    pub fn secrets(&self) -> Vec<String> {
        let mut texts: Vec<&Text> = Vec::new();
        let mut out: Vec<String> = self.url_secrets.clone();
        for s in self.services.values() {
            match &s.auth {
                Auth::None => {}
                Auth::Bearer(t) => texts.push(t),
                Auth::Basic(u, p) => {
                    texts.extend([u, p]);
                    // As the header carries them, which an API may echo in an error.
                    out.push(base64(format!("{}:{}", u.value, p.value).as_bytes()));
                }
                Auth::Header { value, .. } | Auth::Query { value, .. } => texts.push(value),
                Auth::OAuth2(o) => {
                    texts.extend([&o.client_id, &o.client_secret]);
                    texts.extend(&o.refresh_token);
                    // As a token endpoint may echo the Basic header (RFC 6749 §2.3.1).
                    let form = |t: &Text| -> String {
                        url::form_urlencoded::byte_serialize(t.value.as_bytes()).collect()
                    };
                    out.push(base64(
                        format!("{}:{}", form(&o.client_id), form(&o.client_secret)).as_bytes(),
                    ));
                }
                Auth::AwsSigV4(a) => {
                    texts.extend([&a.access_key, &a.secret_key]);
                    texts.extend(&a.session_token);
                }
            }
            texts.extend(s.headers.iter().map(|(_, v)| v));
        }
        for s in self.sources.values() {
            texts.extend(s.query.iter().filter_map(|(_, v)| match v {
                super::ParamValue::Text(t) => Some(t),
                super::ParamValue::Computed(_) => None,
            }));
            if let Some(b) = &s.body {
                body_secrets(b, &mut texts);
            }
            match s.receive.as_ref().map(|r| &r.verify) {
                Some(super::Verify::Hmac { secret, .. })
                | Some(super::Verify::Stripe { secret, .. })
                | Some(super::Verify::Standard { secret, .. })
                | Some(super::Verify::Token { value: secret, .. }) => texts.push(secret),
                Some(super::Verify::None) | None => {}
            }
        }
        for s in self.services.values() {
            out.extend(url_secrets(&s.base_url, false));
        }
        for s in self.sinks.values() {
            if let Sink::Postgres { url, .. } | Sink::Webhook { url, .. } = s {
                texts.push(url);
                out.extend(url_secrets(&url.value, matches!(s, Sink::Webhook { .. })));
            }
            if let Sink::Postgres { url, .. } = s {
                // PostgreSQL also takes the password as `?password=`.
                out.extend(query_values(&url.value, "password"));
            }
            if let Sink::Exec { command, .. } = s {
                texts.extend(command);
            }
        }
        out.extend(
            texts
                .into_iter()
                .filter(|t| t.secret && !t.value.is_empty())
                .map(|t| t.value.clone()),
        );
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }

    /// Marks the URLs among `from_env` (values `env(...)` gave) as secrets' places: a
    /// webhook URL becomes a secret text (shown as `***`), and the path of a service's
    /// `base_url` and the path and query of a webhook's URL go into
    /// [`Pipeline::url_secrets`], since chat webhooks and some APIs put a token there.
    pub(super) fn mask_urls_from(&mut self, from_env: &std::collections::BTreeSet<String>) {
        let mut parts = Vec::new();
        for s in self.services.values() {
            if from_env.contains(&s.base_url) {
                parts.extend(url_path(&s.base_url));
            }
        }
        for s in self.sinks.values_mut() {
            if let Sink::Webhook { url, .. } = s {
                if from_env.contains(&url.value) {
                    url.secret = true;
                    parts.extend(url_path(&url.value));
                    if let Some(q) = url::Url::parse(&url.value)
                        .ok()
                        .and_then(|u| u.query().map(str::to_string))
                    {
                        parts.push(q);
                    }
                }
            }
        }
        self.url_secrets.extend(parts);
        self.url_secrets.sort();
        self.url_secrets.dedup();
    }
}

/// The path of a URL as it is written in URLs (`/hooks/T0/B1/XyZ`), without a
/// trailing `/` (which a URL built on it may not keep); none for an empty path.
fn url_path(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let path = u.path().trim_end_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}

/// The values of query parameter `name` in a URL.
fn query_values(url: &str, name: &str) -> Vec<String> {
    url::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Standard base64 with padding, as HTTP Basic authentication encodes `user:password`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_basic_authentication_writes_it() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn a_url_path_without_its_trailing_slash() {
        assert_eq!(
            url_path("https://h.example/a/T0K3N/").as_deref(),
            Some("/a/T0K3N")
        );
        assert_eq!(url_path("https://h.example"), None);
        assert_eq!(
            query_values("postgres://u@h/db?password=pw&x=1", "password"),
            ["pw"]
        );
    }
}
