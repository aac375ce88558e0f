//! Secrets out of every text hamstr prints: [`Masker`] replaces each secret, as written
//! and as it appears encoded in URLs, by `***`. Secrets learnt while running (an OAuth2
//! access token, a rotated refresh token) are masked by every masker of the process, and
//! [`mask_log`] masks a log line with every secret the process was ever given, so that
//! what a library logs at `trace` shows none either. The secrets are found in one pass
//! over a text (Aho-Corasick), however many there are: a pipeline for 5,000 tenants has
//! 5,000 tokens.

use aho_corasick::{AhoCorasick, MatchKind};
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use url::Url;

/// Replaces every secret in a text by `***`: those it was made with, and those the
/// process learnt.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Arc<Vec<String>>,
    finder: Option<Arc<AhoCorasick>>,
}

/// Shows how many secrets it holds, never one of them.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// How many learnt secrets (with their encoded forms) are kept: tokens renewed every few
/// seconds for days must not grow the list without end, and an expired token is
/// worthless some renewals later.
const LEARNED: usize = 48;

/// Secrets learnt while running, newest first.
static LEARNT: RwLock<VecDeque<String>> = RwLock::new(VecDeque::new());

/// Every secret any masker of this process was made with (a reload may bring new ones;
/// the old ones stay secrets), and their finder: what [`mask_log`] hides.
static GIVEN: RwLock<(Vec<String>, Option<Arc<AhoCorasick>>)> = RwLock::new((Vec::new(), None));

/// Finds the leftmost, longest secret at each place, so a secret containing another is
/// masked whole.
fn finder(secrets: &[String]) -> Option<Arc<AhoCorasick>> {
    if secrets.is_empty() {
        return None;
    }
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(secrets)
        .ok()
        .map(Arc::new)
}

impl Masker {
    pub fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| !s.is_empty());
        let encoded: Vec<String> = secrets.iter().flat_map(|s| encodings(s)).collect();
        secrets.extend(encoded);
        secrets.sort();
        secrets.dedup();
        if let Ok(mut given) = GIVEN.write() {
            let before = given.0.len();
            given.0.extend(secrets.iter().cloned());
            given.0.sort();
            given.0.dedup();
            if given.0.len() != before {
                given.1 = finder(&given.0);
            }
        }
        Masker {
            finder: finder(&secrets),
            secrets: Arc::new(secrets),
        }
    }

    /// Masks `secret` too from now on, in every masker and in the logs.
    pub fn learn(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let Ok(mut learnt) = LEARNT.write() else {
            return;
        };
        if learnt.iter().any(|s| s == secret) {
            return;
        }
        for s in std::iter::once(secret.to_string()).chain(encodings(secret)) {
            if !learnt.contains(&s) {
                learnt.push_front(s);
            }
        }
        learnt.truncate(LEARNED);
    }

    pub fn mask(&self, text: &str) -> String {
        mask_learnt(replace_found(text, self.finder.as_deref()))
    }
    /// A URL with secrets masked, for logs.
    pub fn url(&self, url: &Url) -> String {
        self.mask(url.as_str())
    }
}

/// A log line with every secret the process was given or learnt masked.
pub fn mask_log(text: &str) -> String {
    match GIVEN.read() {
        Ok(given) => mask_learnt(replace_found(text, given.1.as_deref())),
        Err(_) => mask_learnt(text.to_string()),
    }
}

/// Every secret `finder` finds replaced by `***`.
fn replace_found(text: &str, finder: Option<&AhoCorasick>) -> String {
    match finder {
        Some(f) => f.replace_all(text, &vec!["***"; f.patterns_len()]),
        None => text.to_string(),
    }
}

/// The few learnt secrets, one by one.
fn replace_all<'a>(mut text: String, secrets: impl IntoIterator<Item = &'a String>) -> String {
    for s in secrets {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), "***");
        }
    }
    text
}

fn mask_learnt(text: String) -> String {
    // Tokens are not made of one another: their order does not matter.
    match LEARNT.read() {
        Ok(learnt) => replace_all(text, learnt.iter()),
        Err(_) => text,
    }
}

/// A secret as it appears in URLs: percent-encoded (path placeholders) and
/// form-encoded (query parameters, which leave `-._*` alone and turn ` ` to `+`); and
/// inside a JSON string (`\"`, `\\`, control characters escaped), as JSON logs write it.
fn encodings(s: &str) -> [String; 3] {
    let json = serde_json::to_string(s).unwrap_or_default();
    [
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string(),
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect(),
        json.strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(s)
            .to_string(),
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
    fn secrets_inside_json_strings() {
        let m = Masker::new(vec!["to\"k\\en".into()]);
        let line = serde_json::json!({ "message": "said to\"k\\en" }).to_string();
        assert_eq!(m.mask(&line), r#"{"message":"said ***"}"#);
        assert_eq!(mask_log(&line), r#"{"message":"said ***"}"#);
    }

    #[test]
    fn learnt_secrets_are_masked_everywhere_and_bounded() {
        let m = Masker::new(vec!["static-1".into()]);
        let other = Masker::new(vec![]);
        m.learn("tok/en+1");
        assert_eq!(other.mask("tok/en+1 tok%2Fen%2B1"), "*** ***");
        assert_eq!(mask_log("static-1 and tok/en+1"), "*** and ***");
        for i in 0..1000 {
            m.learn(&format!("token-{i}"));
        }
        assert_eq!(m.mask("token-999"), "***");
        assert!(LEARNT.read().unwrap().len() <= LEARNED);
    }
}
