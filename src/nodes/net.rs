//! What service calls and webhooks share: the HTTP connection pool, retry timing
//! (backoff with jitter, `Retry-After`) and the texts of HTTP errors; and [`send`], the
//! one place a service's request leaves (or is answered from a recording).

use crate::check::Retry;
use crate::masking::Masker;
use crate::nodes::tape::{SendError, Tape};
use crate::stop::Stop;
use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime};

/// The shared HTTP connection pool: redirects are handled by hamstr, not by reqwest, so
/// the origin rule applies to them. There is no fallback client: one that followed
/// redirects could carry credentials to another origin.
pub fn http_client() -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    client_from(reqwest::Client::builder())
}

/// Finishes a client builder with hamstr's settings, or says why it cannot.
pub fn client_from(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hamstr/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

/// Sends a service's request: over the network, or through `tape` when the run records,
/// replays or watches its exchanges (`masker` masks what a recording keeps; `max_body`
/// bounds what it reads).
pub async fn send(
    http: &reqwest::Client,
    tape: Option<&Tape>,
    request: reqwest::Request,
    masker: &Masker,
    max_body: u64,
) -> Result<reqwest::Response, SendError> {
    match tape {
        None => http.execute(request).await.map_err(SendError::Http),
        Some(tape) => tape.send(http, request, masker, max_body).await,
    }
}

/// How long to wait before attempt `attempt + 1`: exponential backoff from `retry.backoff`,
/// capped at `max_backoff`, with jitter; at least what `Retry-After` asked for.
pub fn retry_wait(retry: &Retry, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = Duration::from_millis(retry.backoff_ms)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let backoff = exp
        .min(Duration::from_millis(retry.max_backoff_ms))
        .mul_f64(0.5 + rand::random::<f64>() * 0.5);
    retry_after.map_or(backoff, |a| {
        a.max(backoff.min(a + Duration::from_millis(100)))
    })
}

/// What one attempt of a retried call came to.
pub enum Attempt<E> {
    /// Worth trying again (after the server's `Retry-After`, when it gave one).
    Retry(E, Option<Duration>),
    Fatal(E),
}

/// Why a retried call ended without success.
pub enum GaveUp<E> {
    /// An attempt failed for good.
    Fatal(E),
    /// Every attempt failed (or `waiting` said to stop); the last error and the count.
    Exhausted(E, u32),
    /// `stop` fired while waiting to try again.
    Stopped(E),
}

/// The one retry loop of service calls and webhooks: runs `attempt` until it succeeds,
/// fails for good, `attempts` are spent, or `stop` fires, waiting between attempts with
/// [`retry_wait`]. `waiting` hears of each wait (error, attempt number, wait,
/// `Retry-After`) and may end the loop by returning false.
pub async fn with_retries<T, E, Fut>(
    retry: &Retry,
    attempts: u32,
    stop: Option<&Stop>,
    mut attempt: impl FnMut() -> Fut,
    mut waiting: impl FnMut(&E, u32, Duration, Option<Duration>) -> bool,
) -> Result<T, GaveUp<E>>
where
    Fut: std::future::Future<Output = Result<T, Attempt<E>>>,
{
    let mut n = 0u32;
    loop {
        n = n.saturating_add(1);
        let (error, after) = match attempt().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Fatal(e)) => return Err(GaveUp::Fatal(e)),
            Err(Attempt::Retry(e, after)) => (e, after),
        };
        let stopping = stop.is_some_and(Stop::is_stopping);
        if n >= attempts || stopping {
            return Err(GaveUp::Exhausted(error, n));
        }
        let wait = retry_wait(retry, n, after);
        if !waiting(&error, n, wait, after) {
            return Err(GaveUp::Exhausted(error, n));
        }
        match stop {
            Some(stop) => tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.stopped() => return Err(GaveUp::Stopped(error)),
            },
            None => tokio::time::sleep(wait).await,
        }
    }
}

/// "gave up after 3 attempts".
pub fn gave_up(n: u32) -> String {
    format!("gave up after {n} attempt{}", if n == 1 { "" } else { "s" })
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

/// An error and its sources, in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// How much API-derived text a message shows: a link, a URL with a cursor, a value.
pub const SHOWN: usize = 200;

/// The start of an error response's body, for a message: [`api_text`] of its first
/// [`SHOWN`] characters.
pub fn body_excerpt(body: &[u8]) -> String {
    // Four bytes a character at most: enough to see whether there is more than SHOWN.
    let start = body
        .get(..SHOWN.saturating_add(1).saturating_mul(4))
        .unwrap_or(body);
    api_text(&String::from_utf8_lossy(start), SHOWN)
}

/// The one filter for text that came from an API (a body, a link, a URL holding a
/// cursor) on its way into a message, a log line or a summary: at most `max` characters
/// (the last one `…` when it was cut), and characters that act on a terminal or reorder
/// what it shows (control characters, escape sequences among them, and bidirectional
/// overrides) shown as spaces, so an API cannot write to the terminal of whoever reads
/// the log, nor make one line of it megabytes long.
pub fn api_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    let mut shown = 0usize;
    while let Some(c) = chars.next() {
        if shown.saturating_add(1) >= max && chars.clone().next().is_some() {
            out.push('…');
            break;
        }
        out.push(if acts_on_terminal(c) { ' ' } else { c });
        shown = shown.saturating_add(1);
    }
    out
}

fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// A client that cannot be built is an error, never a default client (which would
    /// follow redirects, credentials and all).
    #[test]
    fn a_client_that_cannot_be_built_is_an_error() {
        let broken = reqwest::Client::builder().tls_backend_preconfigured(());
        let e = client_from(broken).unwrap_err();
        assert!(e.starts_with("cannot set up the HTTP client"), "{e}");
        assert!(http_client().is_ok());
    }

    #[test]
    fn an_error_body_cannot_write_to_the_terminal() {
        let body = "\u{1b}[31mbad\u{1b}[0m request\r\nnext\u{7}";
        assert_eq!(body_excerpt(body.as_bytes()), " [31mbad [0m request  next ");
        let long = body_excerpt("é".repeat(300).as_bytes());
        assert_eq!(long.chars().count(), 200);
        assert!(long.ends_with("é…"), "{long}");
        assert_eq!(api_text("a\u{9b}31mb\u{202e}c", 10), "a 31mb c");
        assert_eq!(api_text("abcdef", 6), "abcdef");
        assert_eq!(api_text("abcdefg", 6), "abcde…");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(&later).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30));
    }
}
