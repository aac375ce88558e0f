//! Secrets out of every text hamstr prints: [`Masker`] replaces each secret, as written
//! and as it appears encoded in URLs, by `***`.

use std::sync::Arc;
use url::Url;

/// Replaces every secret in a text by `***`.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Arc<Vec<String>>,
}

impl Masker {
    pub fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| !s.is_empty());
        // As they appear in URLs: percent-encoded (path placeholders) and
        // form-encoded (query parameters, which leave `-._*` alone and turn ` ` to `+`).
        let mut encoded: Vec<String> = secrets
            .iter()
            .flat_map(|s| {
                [
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string(),
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect(),
                ]
            })
            .filter(|e| !secrets.contains(e))
            .collect();
        encoded.sort();
        encoded.dedup();
        secrets.extend(encoded);
        // Longer first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Masker {
            secrets: Arc::new(secrets),
        }
    }
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
    /// A URL with secrets masked, for logs.
    pub fn url(&self, url: &Url) -> String {
        self.mask(url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        let m = Masker::new(vec!["s3cr+t".into(), "".into()]);
        assert_eq!(m.mask("token s3cr+t and s3cr%2Bt"), "token *** and ***");
        let m = Masker::new(vec!["a-b c+d".into()]);
        assert_eq!(
            m.mask("x=a-b+c%2Bd y=a%2Db%20c%2Bd"),
            "x=*** y=***",
            "form-encoded and percent-encoded"
        );
    }
}
