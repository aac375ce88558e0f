//! What service calls and webhooks share: the HTTP connection pool, retry timing
//! (backoff with jitter, `Retry-After`) and the texts of HTTP errors; and [`send`], the
//! one place a service's request leaves (or is answered from a recording).

use crate::check::Retry;
use crate::masking::Masker;
use crate::nodes::tape::{SendError, Tape};
use crate::stop::Stop;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
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

/// Whether an error answer is worth trying again, and after how long the server asked:
/// 429 and 5xx; and a 403 that is a rate limit (spec §5.2a) — one carrying
/// `Retry-After`, or saying nothing remains (`X-RateLimit-Remaining: 0`, or the
/// `RateLimit-*` form) with a reset time, as a well-known code-hosting API answers.
/// `None`: the answer is final.
pub fn retryable(status: StatusCode, headers: &HeaderMap) -> Option<Option<Duration>> {
    let after = retry_after(headers);
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Some(after);
    }
    if status != StatusCode::FORBIDDEN {
        return None;
    }
    if after.is_some() {
        return Some(after);
    }
    rate_limit_pause(headers).map(Some)
}

/// How long `RateLimit-Remaining: 0` (or `X-RateLimit-Remaining: 0`) with its reset
/// asks to wait; `None` while something remains, or without a usable reset.
pub fn rate_limit_pause(headers: &HeaderMap) -> Option<Duration> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.get(*n)?.to_str().ok()?.trim().parse::<f64>().ok())
    };
    let remaining = get(&["ratelimit-remaining", "x-ratelimit-remaining"])?;
    if remaining > 0.0 || remaining.is_nan() {
        return None;
    }
    let reset = get(&["ratelimit-reset", "x-ratelimit-reset"])?;
    reset_pause(reset, SystemTime::now())
}

/// How long a `RateLimit-Reset` value asks to wait: large values are epoch seconds,
/// small ones seconds from now, at most an hour. The header comes from the API: a value
/// that is not a number of seconds (negative, NaN, infinite) asks for nothing.
pub fn reset_pause(reset: f64, now: SystemTime) -> Option<Duration> {
    if !reset.is_finite() || reset < 0.0 {
        return None;
    }
    let secs = if reset > 1_000_000_000.0 {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        reset - now
    } else {
        reset
    };
    Duration::try_from_secs_f64(secs.clamp(0.0, 3600.0)).ok()
}

/// `Retry-After` in seconds (whole or decimal, like `2.0`) or as an HTTP date, at most
/// an hour; a negative or non-finite number asks for nothing.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs = v.parse::<f64>().ok().filter(|s| s.is_finite())?;
        return Duration::try_from_secs_f64(secs.clamp(0.0, 3600.0)).ok();
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

/// A failed request's error as shown: its chain without the URL (the URL is shown apart,
/// masked), every secret masked, cut to `limit` characters.
pub fn request_error(masker: &crate::masking::Masker, e: reqwest::Error, limit: usize) -> String {
    api_text(&masker.mask(&error_chain(&e.without_url())), limit)
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
        for (text, want) in [
            ("2.0", Some(2000)),
            ("0.5", Some(500)),
            ("7200.0", Some(3_600_000)),
        ] {
            h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(text));
            assert_eq!(retry_after(&h), want.map(Duration::from_millis), "{text}");
        }
        for bad in ["-1.0", "NaN", "inf", "1e400", "."] {
            h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(bad));
            assert_eq!(retry_after(&h), None, "{bad}");
        }
    }

    #[test]
    fn a_reset_that_is_not_a_number_of_seconds_asks_for_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for bad in [-5.0, -1e9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(reset_pause(bad, now), None, "{bad}");
        }
        assert_eq!(reset_pause(2.5, now), Some(Duration::from_millis(2500)));
        assert_eq!(reset_pause(1e12, now), Some(Duration::from_secs(3600)));
        assert_eq!(reset_pause(1_699_999_000.0, now), Some(Duration::ZERO));
        assert_eq!(
            reset_pause(1_700_000_030.0, now),
            Some(Duration::from_secs(30))
        );
    }

    /// 429 and 5xx are tried again; a 403 only when it is a rate limit.
    #[test]
    fn which_answers_are_tried_again() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let none = h(&[]);
        assert_eq!(retryable(StatusCode::TOO_MANY_REQUESTS, &none), Some(None));
        assert_eq!(retryable(StatusCode::BAD_GATEWAY, &none), Some(None));
        assert_eq!(retryable(StatusCode::FORBIDDEN, &none), None);
        assert_eq!(retryable(StatusCode::NOT_FOUND, &none), None);
        assert_eq!(
            retryable(StatusCode::FORBIDDEN, &h(&[("retry-after", "3")])),
            Some(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            retryable(
                StatusCode::FORBIDDEN,
                &h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2")])
            ),
            Some(Some(Duration::from_secs(2)))
        );
        // Something remains, or no reset: a 403 that is a refusal.
        assert_eq!(
            retryable(
                StatusCode::FORBIDDEN,
                &h(&[("x-ratelimit-remaining", "12"), ("x-ratelimit-reset", "2")])
            ),
            None
        );
        assert_eq!(
            retryable(StatusCode::FORBIDDEN, &h(&[("x-ratelimit-remaining", "0")])),
            None
        );
    }
}
