//! The `webhook(url, batch = N)` sink: POSTs the records as JSON arrays of at most `batch`
//! records, retrying like service calls (connection errors, timeouts, 429 and 5xx, with
//! exponential backoff, jitter and `Retry-After`). A page it cannot deliver waits in the
//! sink's durable queue; the arrays of that page already delivered are not sent again
//! while hamstr keeps running. Of a receiver's answer only the start is read.

use super::resume::Resume;
use super::{SinkWriter, WriteFuture};
use crate::check::{Retry, Text};
use crate::masking::Masker;
use crate::nodes::extract::Emitted;
use crate::nodes::net::{
    self, body_excerpt, error_chain, gave_up, retryable, with_retries, GaveUp,
};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct WebhookWriter {
    sink: String,
    url: Url,
    /// The URL as it may be shown: masked when it came from a secret.
    shown: String,
    masker: Masker,
    http: reqwest::Client,
    batch: usize,
    retry: Retry,
    /// The page that failed part-way (its hash) and how many of its arrays arrived.
    resume: Resume,
}

/// What one POST came to.
type Attempt = net::Attempt<String>;

impl WebhookWriter {
    pub fn new(
        sink: &str,
        url: &Text,
        batch: u32,
        http: reqwest::Client,
    ) -> Result<WebhookWriter, String> {
        let parsed = Url::parse(&url.value).map_err(|e| {
            format!(
                "sink `{sink}`: the webhook URL {} is not valid: {e}",
                url.shown()
            )
        })?;
        let mut secrets = Vec::new();
        if let Some(pw) = parsed.password() {
            secrets.push(pw.to_string());
        }
        if url.secret {
            secrets.push(url.value.clone());
        }
        let masker = Masker::new(secrets);
        let shown = if url.secret {
            format!("{}/***", parsed.origin().ascii_serialization())
        } else {
            masker.url(&parsed)
        };
        Ok(WebhookWriter {
            sink: sink.to_string(),
            url: parsed,
            shown,
            masker,
            http,
            batch: batch.max(1) as usize,
            retry: Retry::default(),
            resume: Resume::default(),
        })
    }

    /// Sends one array, retrying what may succeed later. A `Retry-After` longer than
    /// `max_backoff` ends the tries: the page waits in the queue instead of the sink.
    async fn post(&self, body: Bytes) -> Result<(), String> {
        let max = Duration::from_millis(self.retry.max_backoff_ms);
        let waiting = |e: &String, n: u32, wait: Duration, after: Option<Duration>| {
            tracing::debug!(sink = %self.sink, attempt = n, wait_ms = wait.as_millis() as u64, error = %e, "retrying the webhook");
            after.is_none_or(|a| a <= max)
        };
        let attempts = self.retry.attempts;
        with_retries(
            &self.retry,
            attempts,
            None,
            || self.attempt(body.clone()),
            waiting,
        )
        .await
        .map_err(|g| match g {
            GaveUp::Fatal(e) | GaveUp::Stopped(e) => e,
            GaveUp::Exhausted(e, n) => format!("{e} ({})", gave_up(n)),
        })
    }

    async fn attempt(&self, body: Bytes) -> Result<(), Attempt> {
        let sent = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(TIMEOUT)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    error_chain(&e.without_url())
                };
                return Err(Attempt::Retry(
                    self.say(&format!("POST failed: {what}")),
                    None,
                ));
            }
        };
        let status = resp.status();
        if status.is_success() {
            // Read a short answer, so the connection can be used again; a long one is
            // left unread and its connection closed.
            let _ = excerpt(resp).await;
            return Ok(());
        }
        if let Some(after) = retryable(status, resp.headers()) {
            return Err(Attempt::Retry(self.say(&format!("HTTP {status}")), after));
        }
        let body = body_excerpt(&excerpt(resp).await);
        let note = if status.is_redirection() {
            " (redirects are not followed)"
        } else {
            ""
        };
        Err(Attempt::Fatal(
            self.say(&format!("HTTP {status}{note}: {}", body.trim())),
        ))
    }

    /// A message about this webhook, with its secrets masked.
    fn say(&self, what: &str) -> String {
        self.masker.mask(&format!(
            "sink `{}` (webhook {}): {what}",
            self.sink, self.shown
        ))
    }
}

impl SinkWriter for WebhookWriter {
    fn write<'a>(
        &'a mut self,
        _source: &'a str,
        _names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        Box::pin(async move {
            let (hash, done) = self.resume.start(records);
            for (i, chunk) in records.chunks(self.batch).enumerate().skip(done) {
                if let Err(e) = self.post(json_array(chunk)).await {
                    self.resume.failed(hash, i);
                    return Err(e.into());
                }
            }
            self.resume.done();
            Ok(())
        })
    }
}

/// How much of a receiver's answer is read: the start of an error message, whatever
/// the receiver sends.
const ANSWER_LIMIT: usize = 16 * 1024;

/// The first [`ANSWER_LIMIT`] bytes of an answer's body (fewer when reading it fails);
/// the rest is never read.
async fn excerpt(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < ANSWER_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ANSWER_LIMIT - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// `[r1,r2,...]` from records that are JSON objects already.
fn json_array(records: &[Emitted]) -> Bytes {
    let len = records.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&r.json);
    }
    out.push(b']');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_join_records() {
        let r = |s: &str| Emitted {
            key: None,
            json: s.as_bytes().to_vec().into(),
        };
        assert_eq!(
            &json_array(&[r("{\"a\":1}"), r("{\"a\":2}")])[..],
            b"[{\"a\":1},{\"a\":2}]"
        );
        assert_eq!(&json_array(&[])[..], b"[]");
    }

    #[test]
    fn a_secret_url_is_not_shown() {
        let url = Text::plain("https://hooks.example.com/T000/B000/XXXX").into_secret();
        let w = WebhookWriter::new("hook", &url, 10, crate::nodes::net::http_client().unwrap())
            .unwrap();
        let said = w.say("HTTP 500 from https://hooks.example.com/T000/B000/XXXX");
        assert!(!said.contains("XXXX"), "{said}");
        assert!(said.contains("https://hooks.example.com/***"), "{said}");
    }
}
