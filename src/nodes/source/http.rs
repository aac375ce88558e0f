//! The HTTP client of one service: auth only on its own origin, a shared rate limit,
//! concurrency limit and pause (Retry-After, RateLimit headers), timeouts, and retries
//! with exponential backoff and jitter.

use crate::check::{PathStep, Retry, Service};
use crate::masking::Masker;
use crate::nodes::auth::{AuthError, Authorizer, TokenHome, Used};
use crate::nodes::eval::{index, walk, Path};
use crate::nodes::net::{
    self, api_text, body_excerpt, gave_up, request_error, with_retries, GaveUp, SHOWN,
};
use crate::nodes::record::raw::{parse_item, split, RawRecords};
use crate::nodes::tape::{SendError, Tape};
use crate::stop::Stop;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value as Json;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use url::Url;

/// The most pages of one run in flight, whatever the service's `concurrency` (8 by
/// default): what a run holds in memory stays a few pages. Measured on the throughput
/// benchmark's local API (pages of 500 records), 8 in flight held 99 MiB at peak against
/// 85 MiB with 4 and 75 MiB with 1, for the same records/s; against an API answering in
/// 20 ms a page, 4 in flight doubled the records/s (docs/performance.md).
pub const PAGES_AHEAD_MAX: usize = 4;

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
    /// The body's tree; when `records` holds the page's records as text, `null` stands
    /// in their array's place (read the body through [`Response::get`]).
    pub body: Json,
    pub records: Option<RawRecords>,
    /// A hash of the raw body, to spot a page served twice.
    pub body_hash: u64,
}

impl Response {
    /// The value a singular path names in the body, the records kept as text included.
    pub fn get(&self, path: &Path) -> Option<Json> {
        if let (Some(raw), Path::Singular(steps)) = (&self.records, path) {
            if let Some(rest) = raw.below(steps) {
                return match rest.split_first() {
                    None => Some(raw.to_json()),
                    Some((PathStep::Index(i), rest)) => {
                        let item = raw.get(index(*i, raw.len())?)?;
                        walk(&parse_item(item), rest).cloned()
                    }
                    Some((PathStep::Name(_), _)) => None,
                };
            }
        }
        path.get(&self.body).cloned()
    }
}

/// A successful answer whose body is not parsed yet: a page sent ahead keeps its bytes,
/// not its tree (several times their size), until its turn ([`ServiceClient::parse`]).
#[derive(Debug)]
pub struct Unparsed {
    pub url: Url,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    status: u16,
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
    auth: Authorizer,
    headers: HeaderMap,
    limiter: Option<DefaultDirectRateLimiter>,
    concurrency: Semaphore,
    /// The service's `concurrency`: the most pages one run may have in flight.
    in_flight: usize,
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
        tokens: &TokenHome,
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
        let auth = Authorizer::new(svc, http.clone(), tokens, masker.clone())?;
        Ok(ServiceClient {
            name: svc.name.clone(),
            auth,
            http,
            base,
            headers,
            limiter,
            concurrency: Semaphore::new(svc.concurrency.max(1) as usize),
            in_flight: svc.concurrency.max(1) as usize,
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

    /// How many pages of one run may be in flight together: the service's
    /// `concurrency`, at most [`PAGES_AHEAD_MAX`] (the pages that arrive ahead wait in
    /// memory for their turn), or one with a tape, so that a recording holds exactly
    /// the requests a run used, in its order, and a replay or `try` asks nothing else.
    pub fn pages_in_flight(&self) -> usize {
        if self.tape.is_some() {
            1
        } else {
            self.in_flight.min(PAGES_AHEAD_MAX)
        }
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
        self.fetch_split(req, stop, None).await
    }

    /// As [`ServiceClient::fetch`], the items of the records' array kept as text
    /// ([`ServiceClient::parse`]).
    pub async fn fetch_split(
        &self,
        req: &Request,
        stop: &Stop,
        records: Option<&[String]>,
    ) -> Result<Response, FetchError> {
        self.fetch_then(req, stop, |u| self.parse(u, records)).await
    }

    /// As [`ServiceClient::fetch`], but the body is not parsed: a body that is not JSON
    /// is found only by [`ServiceClient::parse`], and then not retried.
    pub async fn fetch_unparsed(&self, req: &Request, stop: &Stop) -> Result<Unparsed, FetchError> {
        self.fetch_then(req, stop, Ok).await
    }

    /// An answer's body parsed: a body that is not JSON is worth asking for again. With
    /// `records`, the names that lead to the records' array, the items there are kept as
    /// text ([`split`]).
    pub fn parse(&self, u: Unparsed, records: Option<&[String]>) -> Result<Response, Attempt> {
        let body_hash = xxhash_rust::xxh3::xxh3_64(&u.bytes);
        let html = u.bytes.first().is_some_and(|b| *b == b'<');
        let parsed = match records {
            Some(steps) => split(u.bytes, steps),
            None => serde_json::from_slice::<Json>(&u.bytes).map(|body| (body, None)),
        };
        let (body, records) = parsed.map_err(|e| {
            let what = if html {
                "an HTML page, not JSON".to_string()
            } else {
                format!("not valid JSON ({e})")
            };
            Attempt::Retry(
                FetchError {
                    message: format!("the body from {} is {what}", self.shown_url(&u.url)),
                    status: Some(u.status),
                },
                None,
            )
        })?;
        Ok(Response {
            body_hash,
            url: u.url,
            headers: u.headers,
            body,
            records,
        })
    }

    /// Sends a request with retries, `then` making of each answer what is returned.
    async fn fetch_then<T>(
        &self,
        req: &Request,
        stop: &Stop,
        then: impl Fn(Unparsed) -> Result<T, Attempt>,
    ) -> Result<T, FetchError> {
        // At most one renewal of an OAuth2 token per request after a `401`.
        let renewed = AtomicBool::new(false);
        let attempt = || async {
            tokio::select! {
                r = self.attempt(req, stop, &renewed) => r.and_then(&then),
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
            crate::metrics::service_retry(&self.name);
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
        let mut waited = false;
        loop {
            let until = self.pause_until.lock().ok().and_then(|p| *p);
            match until {
                Some(t) if t > Instant::now() => {
                    waited = true;
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = stop.stopped() => return false,
                    }
                }
                _ => break,
            }
        }
        if let Some(l) = &self.limiter {
            // `check` takes the permit when there is one; otherwise this request waits.
            if l.check().is_err() {
                waited = true;
                tokio::select! {
                    _ = l.until_ready() => {}
                    _ = stop.stopped() => return false,
                }
            }
        }
        if waited {
            crate::metrics::rate_limit_wait(&self.name);
        }
        true
    }

    async fn attempt(
        &self,
        req: &Request,
        stop: &Stop,
        renewed: &AtomicBool,
    ) -> Result<Unparsed, Attempt> {
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
            let (resp, used) = self.send(&url, req).await?;
            let status = resp.status();
            self.note_rate_headers(resp.headers());
            if status.as_u16() == 401 && !renewed.load(Ordering::Relaxed) && self.auth.refused(used)
            {
                renewed.store(true, Ordering::Relaxed);
                tracing::debug!(service = %self.name, "HTTP 401: renewing the access token once");
                continue;
            }
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
            if let Some(after) = net::retryable(status, resp.headers()) {
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
            return Ok(Unparsed {
                url,
                headers,
                bytes,
                status: status.as_u16(),
            });
        }
        Err(Attempt::fatal("too many redirects", None))
    }

    async fn send(&self, url: &Url, req: &Request) -> Result<(reqwest::Response, Used), Attempt> {
        let on_origin = self.same_origin(url);
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
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut request = builder.build().map_err(|e| {
            Attempt::fatal(
                format!(
                    "cannot make the request to {}: {}",
                    self.shown_url(url),
                    request_error(&self.masker, e, 2 * SHOWN)
                ),
                None,
            )
        })?;
        // Credentials only for the service's own origin.
        let used = if on_origin {
            self.auth
                .authorize(&mut request)
                .await
                .map_err(Attempt::from)?
        } else {
            Used::default()
        };
        let tape = self.tape.as_deref();
        let started = Instant::now();
        let sent = net::send(&self.http, tape, request, &self.masker, self.max_body).await;
        if let Ok(resp) = &sent {
            crate::metrics::service_answer(&self.name, resp.status().as_u16(), started.elapsed());
        }
        let resp = sent.map_err(|e| match e {
            SendError::Http(e) => self.network_failure(req, e),
            SendError::Failed(text) => Attempt::Retry(
                FetchError {
                    message: format!("request to {} failed: {text}", self.shown_url(&req.url)),
                    status: None,
                },
                None,
            ),
            SendError::Fatal(text) => Attempt::fatal(text, None),
        })?;
        Ok((resp, used))
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
                    request_error(&self.masker, e, 2 * SHOWN)
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
                                request_error(&self.masker, e, 2 * SHOWN)
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
        if let Some(pause) = net::rate_limit_pause(headers) {
            self.pause_for(pause);
        }
    }
}

pub type Attempt = net::Attempt<FetchError>;

impl From<AuthError> for Attempt {
    fn from(e: AuthError) -> Attempt {
        let error = FetchError {
            message: e.message,
            status: None,
        };
        match e.retry {
            Some(after) => Attempt::Retry(error, after),
            None => Attempt::Fatal(error),
        }
    }
}

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
