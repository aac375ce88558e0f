//! The HTTP client of one service: auth only on its own origin, a shared rate limit,
//! concurrency limit and pause (Retry-After, RateLimit headers), timeouts, and retries
//! with exponential backoff and jitter.

use crate::check::{Auth, Retry, Service};
use crate::masking::Masker;
use crate::nodes::net::{
    self, api_text, body_excerpt, error_chain, gave_up, retry_after, with_retries, GaveUp, SHOWN,
};
use crate::nodes::tape::{SendError, Tape};
use crate::stop::Stop;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value as Json;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;
use url::Url;

/// A request a source wants to make.
#[derive(Debug, Clone)]
pub struct Request {
    pub post: bool,
    pub url: Url,
    pub body: Option<Vec<u8>>,
}

/// A successful answer with a JSON body.
#[derive(Debug)]
pub struct Response {
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Json,
    /// A hash of the raw body, to spot a page served twice.
    pub body_hash: u64,
}

/// A request that failed for good; `message` holds no secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub message: String,
    pub status: Option<u16>,
}

pub struct ServiceClient {
    pub name: String,
    http: reqwest::Client,
    pub base: Url,
    auth: Auth,
    headers: HeaderMap,
    limiter: Option<DefaultDirectRateLimiter>,
    concurrency: Semaphore,
    timeout: Duration,
    attempts: u32,
    retry: Retry,
    max_body: u64,
    /// No request to this service starts before this instant (Retry-After, RateLimit).
    pause_until: Mutex<Option<Instant>>,
    pub masker: Masker,
    /// Where exchanges are recorded, replayed from or watched (`run --record/--replay`,
    /// `try`).
    tape: Option<Arc<Tape>>,
}

impl ServiceClient {
    pub fn new(
        http: reqwest::Client,
        svc: &Service,
        masker: Masker,
    ) -> Result<ServiceClient, String> {
        let base = Url::parse(&svc.base_url)
            .map_err(|e| format!("service `{}`: bad base_url: {e}", svc.name))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &svc.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("service `{}`: `{k}` is not a valid header name", svc.name))?;
            let mut value = HeaderValue::from_str(&v.value).map_err(|_| {
                format!(
                    "service `{}`: the value of header `{k}` is not valid",
                    svc.name
                )
            })?;
            value.set_sensitive(v.secret);
            headers.insert(name, value);
        }
        let limiter = svc.rate_limit.and_then(|r| {
            let per = Duration::from_millis(r.per_ms) / r.count.max(1);
            Quota::with_period(per)
                .map(|q| RateLimiter::direct(q.allow_burst(NonZeroU32::new(1).expect("one"))))
        });
        Ok(ServiceClient {
            name: svc.name.clone(),
            http,
            base,
            auth: svc.auth.clone(),
            headers,
            limiter,
            concurrency: Semaphore::new(svc.concurrency.max(1) as usize),
            timeout: Duration::from_millis(svc.timeout_ms),
            attempts: svc.retry.attempts.max(1),
            retry: svc.retry,
            max_body: svc.max_body,
            pause_until: Mutex::new(None),
            masker,
            tape: None,
        })
    }

    /// The client with its exchanges going through `tape`.
    pub fn with_tape(mut self, tape: Option<Arc<Tape>>) -> ServiceClient {
        self.tape = tape;
        self
    }

    /// A URL for a message: secrets masked, then cut and filtered like any API-derived
    /// text (a next link or a cursor in it came from the API).
    pub fn shown_url(&self, url: &Url) -> String {
        api_text(&self.masker.url(url), SHOWN)
    }

    pub fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// Sends a request, retrying what may succeed later, until it gives JSON or fails
    /// for good.
    pub async fn fetch(&self, req: &Request, stop: &Stop) -> Result<Response, FetchError> {
        let attempt = || async {
            tokio::select! {
                r = self.attempt(req, stop) => r,
                _ = stop.grace_over() => Err(Attempt::fatal(
                    format!(
                        "stopped: the request to {} did not finish within the shutdown grace period",
                        self.shown_url(&req.url)
                    ),
                    None,
                )),
            }
        };
        let waiting = |e: &FetchError, n: u32, wait: Duration, after: Option<Duration>| {
            tracing::debug!(service = %self.name, attempt = n, wait_ms = wait.as_millis() as u64, error = %e.message, "retrying");
            if let Some(after) = after {
                self.pause_for(after);
            }
            true
        };
        with_retries(&self.retry, self.attempts, Some(stop), attempt, waiting)
            .await
            .map_err(|g| match g {
                GaveUp::Fatal(e) => e,
                GaveUp::Exhausted(e, n) => FetchError {
                    message: format!("{} ({})", e.message, gave_up(n)),
                    status: e.status,
                },
                GaveUp::Stopped(e) => FetchError {
                    message: format!("{} (stopped before retrying)", e.message),
                    status: e.status,
                },
            })
    }

    fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        if let Ok(mut p) = self.pause_until.lock() {
            if p.is_none_or(|cur| cur < until) {
                *p = Some(until);
            }
        }
    }

    /// Waits out a pause and the rate limit; false when `stop` came first.
    async fn wait_turn(&self, stop: &Stop) -> bool {
        loop {
            let until = self.pause_until.lock().ok().and_then(|p| *p);
            match until {
                Some(t) if t > Instant::now() => tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = stop.stopped() => return false,
                },
                _ => break,
            }
        }
        if let Some(l) = &self.limiter {
            tokio::select! {
                _ = l.until_ready() => {}
                _ = stop.stopped() => return false,
            }
        }
        true
    }

    async fn attempt(&self, req: &Request, stop: &Stop) -> Result<Response, Attempt> {
        if !self.wait_turn(stop).await {
            return Err(Attempt::fatal("stopped before the request was sent", None));
        }
        let _permit = self
            .concurrency
            .acquire()
            .await
            .map_err(|_| Attempt::fatal("the service is shutting down", None))?;
        let mut url = req.url.clone();
        for _hop in 0..5 {
            let resp = self.send(&url, req).await?;
            let status = resp.status();
            self.note_rate_headers(resp.headers());
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| {
                        Attempt::fatal(
                            format!("HTTP {status} without a usable Location"),
                            Some(status.as_u16()),
                        )
                    })?;
                if !self.same_origin(&location) {
                    return Err(Attempt::fatal(
                        format!("redirect to another origin ({}) not followed: credentials stay with {}", api_text(&location.origin().ascii_serialization(), SHOWN), self.base.origin().ascii_serialization()),
                        Some(status.as_u16()),
                    ));
                }
                url = location;
                continue;
            }
            if status.as_u16() == 429 || status.is_server_error() {
                let after = retry_after(resp.headers());
                return Err(Attempt::Retry(
                    FetchError {
                        message: format!("HTTP {status} from {}", self.shown_url(&url)),
                        status: Some(status.as_u16()),
                    },
                    after,
                ));
            }
            if !status.is_success() {
                // Masked before it is cut, so that no cut leaves half a secret unmasked.
                let body = self
                    .read_body(resp, &url)
                    .await
                    .ok()
                    .map(|b| {
                        let start = String::from_utf8_lossy(b.get(..64 * 1024).unwrap_or(&b));
                        body_excerpt(self.masker.mask(start.trim()).as_bytes())
                    })
                    .unwrap_or_default();
                return Err(Attempt::fatal(
                    format!("HTTP {status} from {}: {body}", self.shown_url(&url)),
                    Some(status.as_u16()),
                ));
            }
            let headers = resp.headers().clone();
            let bytes = self.read_body(resp, &url).await?;
            let body_hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            let body: Json = serde_json::from_slice(&bytes).map_err(|e| {
                let what = if bytes.first().is_some_and(|b| *b == b'<') {
                    "an HTML page, not JSON".to_string()
                } else {
                    format!("not valid JSON ({e})")
                };
                Attempt::Retry(
                    FetchError {
                        message: format!("the body from {} is {what}", self.shown_url(&url)),
                        status: Some(status.as_u16()),
                    },
                    None,
                )
            })?;
            return Ok(Response {
                url,
                headers,
                body,
                body_hash,
            });
        }
        Err(Attempt::fatal("too many redirects", None))
    }

    async fn send(&self, url: &Url, req: &Request) -> Result<reqwest::Response, Attempt> {
        let mut url = url.clone();
        let on_origin = self.same_origin(&url);
        if let (true, Auth::Query { name, value }) = (on_origin, &self.auth) {
            if !url.query_pairs().any(|(k, _)| k == name.as_str()) {
                url.query_pairs_mut().append_pair(name, &value.value);
            }
        }
        let mut builder = if req.post {
            self.http.post(url.clone())
        } else {
            self.http.get(url.clone())
        };
        builder = builder
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if on_origin {
            builder = builder.headers(self.headers.clone());
            builder = match &self.auth {
                Auth::Bearer(t) => builder.bearer_auth(&t.value),
                Auth::Basic(u, p) => builder.basic_auth(&u.value, Some(&p.value)),
                Auth::Header { name, value } => {
                    let mut v = HeaderValue::from_str(&value.value).map_err(|_| {
                        Attempt::fatal("the api key is not a valid header value", None)
                    })?;
                    v.set_sensitive(true);
                    builder.header(name.as_str(), v)
                }
                _ => builder,
            };
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let sent = match builder.build() {
            Ok(request) => {
                let tape = self.tape.as_deref();
                net::send(&self.http, tape, request, &self.masker, self.max_body).await
            }
            Err(e) => Err(SendError::Http(e)),
        };
        sent.map_err(|e| match e {
            SendError::Http(e) => self.network_failure(req, e),
            SendError::Failed(text) => Attempt::Retry(
                FetchError {
                    message: format!("request to {} failed: {text}", self.shown_url(&req.url)),
                    status: None,
                },
                None,
            ),
            SendError::Fatal(text) => Attempt::fatal(text, None),
        })
    }

    /// A request that got no answer: worth trying again.
    fn network_failure(&self, req: &Request, e: reqwest::Error) -> Attempt {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "failed"
        };
        Attempt::Retry(
            FetchError {
                message: format!(
                    "request to {} {kind}: {}",
                    self.shown_url(&req.url),
                    api_text(&self.masker.mask(&error_chain(&e.without_url())), 2 * SHOWN)
                ),
                status: None,
            },
            None,
        )
    }

    /// Reads a body up to `max_body`; a larger one is refused without reading it all.
    async fn read_body(&self, mut resp: reqwest::Response, url: &Url) -> Result<Vec<u8>, Attempt> {
        let too_big = || {
            Attempt::fatal(
                format!(
                    "the body from {} is larger than max_body ({} bytes)",
                    self.shown_url(url),
                    self.max_body
                ),
                None,
            )
        };
        if resp.content_length().is_some_and(|n| n > self.max_body) {
            return Err(too_big());
        }
        let mut out = Vec::with_capacity(
            resp.content_length()
                .unwrap_or(16 * 1024)
                .min(self.max_body) as usize,
        );
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if out.len() as u64 + chunk.len() as u64 > self.max_body {
                        return Err(too_big());
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(out),
                Err(e) => {
                    return Err(Attempt::Retry(
                        FetchError {
                            message: format!(
                                "the body from {} was cut short: {}",
                                self.shown_url(url),
                                api_text(
                                    &self.masker.mask(&error_chain(&e.without_url())),
                                    2 * SHOWN
                                )
                            ),
                            status: None,
                        },
                        None,
                    ))
                }
            }
        }
    }

    /// `RateLimit-Remaining: 0` (or the `X-RateLimit-*` forms) pauses the service until
    /// the reset, before the API has to answer 429.
    fn note_rate_headers(&self, headers: &HeaderMap) {
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| headers.get(*n)?.to_str().ok()?.trim().parse::<f64>().ok())
        };
        let Some(remaining) = get(&["ratelimit-remaining", "x-ratelimit-remaining"]) else {
            return;
        };
        if remaining > 0.0 || remaining.is_nan() {
            return;
        }
        let reset = get(&["ratelimit-reset", "x-ratelimit-reset"]);
        if let Some(pause) = reset.and_then(|r| reset_pause(r, SystemTime::now())) {
            self.pause_for(pause);
        }
    }
}

/// How long a `RateLimit-Reset` value asks to wait: large values are epoch seconds,
/// small ones seconds from now, at most an hour. The header comes from the API: a value
/// that is not a number of seconds (negative, NaN, infinite) asks for nothing.
fn reset_pause(reset: f64, now: SystemTime) -> Option<Duration> {
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

type Attempt = net::Attempt<FetchError>;

impl net::Attempt<FetchError> {
    fn fatal(message: impl Into<String>, status: Option<u16>) -> Attempt {
        Attempt::Fatal(FetchError {
            message: message.into(),
            status,
        })
    }
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let target = &rest[open + 1..open + close];
            let after = &rest[open + close + 1..];
            let params_end = after.find('<').unwrap_or(after.len());
            let params = &after[..params_end];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.strip_prefix("rel=").is_some_and(|r| {
                    r.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &after[params_end..];
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::LINK, HeaderValue::from_static(r#"<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next", <https://a/x?page=9>; rel="last""#));
        assert_eq!(link_next(&h).as_deref(), Some("https://a/x?page=3"));
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"<https://a/x?page=1>; rel="prev""#),
        );
        assert_eq!(link_next(&h), None);
    }
}
