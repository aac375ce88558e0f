//! Secrets out of every text hamstr prints: [`Masker`] replaces each secret, as written
//! and as it appears encoded in URLs, by `***`.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use url::Url;

/// Replaces every secret in a text by `***`: those of the pipeline, and those a run
/// learns (an OAuth2 access token, a rotated refresh token), which every clone shares.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Arc<Vec<String>>,
    learned: Arc<RwLock<VecDeque<String>>>,
}

/// Shows how many secrets it holds, never one of them.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// How many learned secrets (with their encoded forms) are kept: tokens renewed every few
/// seconds for days must not grow the list without end, and an expired token is
/// worthless some renewals later.
const LEARNED: usize = 48;

impl Masker {
    pub fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| !s.is_empty());
        let mut encoded: Vec<String> = secrets
            .iter()
            .flat_map(|s| encodings(s))
            .filter(|e| !secrets.contains(e))
            .collect();
        encoded.sort();
        encoded.dedup();
        secrets.extend(encoded);
        // Longer first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Masker {
            secrets: Arc::new(secrets),
            learned: Arc::default(),
        }
    }

    /// Masks `secret` too from now on, in this masker and its clones.
    pub fn learn(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let Ok(mut learned) = self.learned.write() else {
            return;
        };
        if learned.iter().any(|s| s == secret) {
            return;
        }
        for s in std::iter::once(secret.to_string()).chain(encodings(secret)) {
            if !learned.contains(&s) {
                learned.push_front(s);
            }
        }
        learned.truncate(LEARNED);
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        if let Ok(learned) = self.learned.read() {
            // Longer first, as above.
            let mut learned: Vec<&String> = learned.iter().collect();
            learned.sort_by_key(|s| std::cmp::Reverse(s.len()));
            for s in learned {
                if out.contains(s.as_str()) {
                    out = out.replace(s.as_str(), "***");
                }
            }
        }
        out
    }
    /// A URL with secrets masked, for logs.
    pub fn url(&self, url: &Url) -> String {
        self.mask(url.as_str())
    }
}

/// A secret as it appears in URLs: percent-encoded (path placeholders) and
/// form-encoded (query parameters, which leave `-._*` alone and turn ` ` to `+`).
fn encodings(s: &str) -> [String; 2] {
    [
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string(),
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect(),
    ]
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

    #[test]
    fn learned_secrets_are_masked_by_every_clone_and_bounded() {
        let m = Masker::new(vec!["static".into()]);
        let clone = m.clone();
        m.learn("tok/en+1");
        assert_eq!(clone.mask("static tok/en+1 tok%2Fen%2B1"), "*** *** ***");
        for i in 0..1000 {
            m.learn(&format!("token-{i}"));
        }
        assert_eq!(m.mask("token-999"), "***");
        assert!(m.learned.read().unwrap().len() <= LEARNED);
    }
}
