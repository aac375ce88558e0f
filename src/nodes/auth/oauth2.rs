//! `oauth2(...)` (spec §12): access tokens from a token endpoint (RFC 6749 §4.4 client
//! credentials, §6 refresh token), cached and renewed before they expire and after a
//! `401`, one renewal at a time for every request and source of the service. A rotated
//! refresh token is stored at once ([`RefreshStore`]) and used from then on. In a
//! cluster the stored token is shared by the instances: read again before each renewal
//! (another instance may have rotated it), and a refusal of the token sent is tried once
//! more with the stored one when another instance stored a newer one meanwhile.
//!
//! The client secret goes only to the token endpoint; the access token only to the
//! service's origin (the caller asks for it only there). Every token learnt is masked.

use super::refresh_store::RefreshStore;
use super::{basic_header, AuthError, TokenHome};
use crate::check::{ClientAuth, OAuth2};
use crate::masking::Masker;
use crate::nodes::net::{api_text, request_error, retry_after, SHOWN};
use reqwest::header::HeaderValue;
use serde_json::Value as Json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// A token is renewed when less than a tenth of its lifetime or this much remains,
/// whichever is less.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// The largest token answer read: they are a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// An access token, ready for the `Authorization` header.
pub struct Token {
    pub header: HeaderValue,
    /// Which renewal gave it: a `401` renews only the token that was refused.
    pub generation: u64,
    renew_at: Option<Instant>,
}

impl Token {
    fn fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

/// The refresh token in use, and whether it came from the store (a rotation).
#[derive(Default)]
struct Grant {
    loaded: bool,
    refresh: Option<String>,
    from_store: bool,
    /// The last rotated token could not be stored: the one in memory is the newest, and
    /// a shared store's older one must not replace it.
    unsaved: bool,
}

pub struct TokenSource {
    service: String,
    cfg: OAuth2,
    token_url: Url,
    http: reqwest::Client,
    timeout: Duration,
    masker: Masker,
    store: Option<RefreshStore>,
    current: Mutex<Option<Arc<Token>>>,
    /// Held for the whole of a renewal: the single flight.
    renewal: tokio::sync::Mutex<Grant>,
    generations: AtomicU64,
}

impl TokenSource {
    pub fn new(
        service: &str,
        cfg: &OAuth2,
        http: reqwest::Client,
        timeout: Duration,
        home: &TokenHome,
        masker: Masker,
    ) -> Result<TokenSource, String> {
        let token_url = Url::parse(&cfg.token_url)
            .map_err(|e| format!("service `{service}`: oauth2: bad token_url: {e}"))?;
        let store = cfg
            .refresh_token
            .as_ref()
            .and_then(|configured| RefreshStore::new(home, service, cfg, &configured.value));
        Ok(TokenSource {
            service: service.to_string(),
            cfg: cfg.clone(),
            token_url,
            http,
            timeout,
            masker,
            store,
            current: Mutex::new(None),
            renewal: tokio::sync::Mutex::new(Grant::default()),
            generations: AtomicU64::new(0),
        })
    }

    fn fresh(&self) -> Option<Arc<Token>> {
        let now = Instant::now();
        let current = self.current.lock().ok()?;
        current.as_ref().filter(|t| t.fresh(now)).cloned()
    }

    /// A token that is not about to expire: the cached one, or a new one. Callers that
    /// find it stale together wait for one renewal.
    pub async fn token(&self) -> Result<Arc<Token>, AuthError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let mut grant = self.renewal.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let token = Arc::new(self.renew(&mut grant).await?);
        if let Ok(mut current) = self.current.lock() {
            *current = Some(token.clone());
        }
        Ok(token)
    }

    /// The service answered `401` to a request made with token `generation`: that token
    /// is dropped (unless a renewal already replaced it), so the next request gets a new one.
    pub fn refused(&self, generation: u64) {
        if let Ok(mut current) = self.current.lock() {
            if current.as_ref().is_some_and(|t| t.generation == generation) {
                *current = None;
            }
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> String {
        format!("service `{}`: oauth2: {message}", self.service)
    }

    /// The refresh token to send: on the first renewal the stored one (else the
    /// configured one); when the store is shared, the stored one each time, as another
    /// instance may have rotated it. True when the token changed.
    async fn load(&self, grant: &mut Grant) -> Result<bool, AuthError> {
        let Some(configured) = &self.cfg.refresh_token else {
            grant.loaded = true;
            return Ok(false);
        };
        let shared = self.store.as_ref().is_some_and(RefreshStore::shared);
        if grant.loaded && (!shared || grant.unsaved) {
            return Ok(false);
        }
        let stored = match &self.store {
            Some(store) => {
                let store = store.clone();
                crate::nodes::blocking(move || store.load())
                    .await
                    .map_err(|e| match shared {
                        // The database may answer again later.
                        true => AuthError::retry(self.error(e), None),
                        false => AuthError::fatal(self.error(e)),
                    })?
            }
            None => None,
        };
        let before = grant.refresh.clone();
        match stored {
            Some(t) => {
                grant.from_store = true;
                grant.refresh = Some(t);
            }
            // Nothing stored (yet): the configured token, or the one in memory.
            None if !grant.loaded => {
                grant.from_store = false;
                grant.refresh = Some(configured.value.clone());
            }
            None => {}
        }
        if let Some(r) = &grant.refresh {
            self.masker.learn(r);
        }
        grant.loaded = true;
        Ok(before.is_some() && before != grant.refresh)
    }

    async fn renew(&self, grant: &mut Grant) -> Result<Token, AuthError> {
        self.load(grant).await?;
        let answer = match self.ask(grant).await {
            Ok(answer) => answer,
            // Refused while another instance stored a newer token: once more with it.
            Err(e) if e.retry.is_none() && grant.refresh.is_some() && self.load(grant).await? => {
                tracing::info!(service = %self.service, "oauth2: the refresh token sent was refused; another instance stored a newer one, trying it");
                self.ask(grant).await?
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let Some(access) = answer.get("access_token").and_then(Json::as_str) else {
            return Err(AuthError::fatal(self.error(format!(
                "the answer of the token endpoint {} has no `access_token`",
                self.token_url
            ))));
        };
        self.masker.learn(access);
        if let Some(kind) = answer.get("token_type").and_then(Json::as_str) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::fatal(self.error(format!(
                    "the token endpoint gave a token of type `{}`; only bearer tokens are supported",
                    api_text(kind, 40)
                ))));
            }
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {access}")).map_err(|_| {
            AuthError::fatal(self.error("the access token is not a valid header value"))
        })?;
        header.set_sensitive(true);
        let lifetime = expires_in(&answer);
        let renew_at = lifetime.map(|l| now + l.saturating_sub((l / 10).min(RENEW_BEFORE)));
        if let (Some(rotated), Some(_)) = (
            answer.get("refresh_token").and_then(Json::as_str),
            &self.cfg.refresh_token,
        ) {
            if !rotated.is_empty() && grant.refresh.as_deref() != Some(rotated) {
                self.masker.learn(rotated);
                // In memory first: should this future be dropped while the file is
                // written, the next renewal still uses the new token.
                grant.refresh = Some(rotated.to_string());
                grant.from_store = true;
                grant.unsaved = !self.keep(rotated).await;
            }
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(service = %self.service, generation, expires_in_s = lifetime.map(|l| l.as_secs_f64()), "oauth2: new access token");
        Ok(Token {
            header,
            generation,
            renew_at,
        })
    }

    /// Stores a rotated refresh token. A failure is logged, not fatal: the token in
    /// memory still serves this run, and the next rotation tries again.
    /// True when it was stored.
    async fn keep(&self, rotated: &str) -> bool {
        let Some(store) = &self.store else {
            tracing::warn!(service = %self.service, "oauth2: the refresh token was rotated, but without a data directory the new one is kept only until this run ends");
            return false;
        };
        let at = store.shown();
        let (store, rotated) = (store.clone(), rotated.to_string());
        match crate::nodes::blocking(move || store.save(&rotated)).await {
            Ok(()) => {
                tracing::info!(service = %self.service, at = %at, "oauth2: the refresh token was rotated; the new one is stored");
                true
            }
            Err(e) => {
                tracing::error!(service = %self.service, error = %self.masker.mask(&e), "oauth2: the rotated refresh token could not be stored; a later run may be refused by the token endpoint");
                false
            }
        }
    }

    /// The form of a token request, and the grant's name for messages.
    fn form(&self, grant: &Grant) -> (String, &'static str) {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        let grant_type = match &grant.refresh {
            Some(r) => {
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", r);
                "refresh token"
            }
            None => {
                form.append_pair("grant_type", "client_credentials");
                "client credentials"
            }
        };
        if let Some(scope) = &self.cfg.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &self.cfg.audience {
            form.append_pair("audience", audience);
        }
        if self.cfg.client_auth == ClientAuth::Body {
            form.append_pair("client_id", &self.cfg.client_id.value);
            form.append_pair("client_secret", &self.cfg.client_secret.value);
        }
        (form.finish(), grant_type)
    }

    /// One request to the token endpoint: its JSON answer, or why not.
    async fn ask(&self, grant: &Grant) -> Result<Json, AuthError> {
        let (form, grant_type) = self.form(grant);
        let mut req = self
            .http
            .post(self.token_url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if self.cfg.client_auth == ClientAuth::Basic {
            // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
            let enc = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            req = req.header(
                reqwest::header::AUTHORIZATION,
                basic_header(
                    &enc(&self.cfg.client_id.value),
                    &enc(&self.cfg.client_secret.value),
                ),
            );
        }
        let shown = api_text(&self.masker.url(&self.token_url), SHOWN);
        let mut resp = req.body(form).send().await.map_err(|e| {
            AuthError::retry(
                self.error(format!(
                    "the token endpoint {shown} could not be reached: {}",
                    request_error(&self.masker, e, 2 * SHOWN)
                )),
                None,
            )
        })?;
        let status = resp.status();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) if body.len() + c.len() <= MAX_ANSWER => body.extend_from_slice(&c),
                Ok(Some(_)) => {
                    return Err(AuthError::fatal(self.error(format!(
                        "the answer of the token endpoint {shown} is larger than {MAX_ANSWER} bytes"
                    ))))
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(AuthError::retry(
                        self.error(format!(
                            "the answer of the token endpoint {shown} was cut short: {}",
                            request_error(&self.masker, e, SHOWN)
                        )),
                        None,
                    ))
                }
            }
        }
        let json: Option<Json> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return json.filter(Json::is_object).ok_or_else(|| {
                AuthError::retry(
                    self.error(format!(
                        "the answer of the token endpoint {shown} is not a JSON object"
                    )),
                    None,
                )
            });
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(AuthError::retry(
                self.error(format!("HTTP {status} from the token endpoint {shown}")),
                retry_after(resp.headers()),
            ));
        }
        // RFC 6749 §5.2: `error`, `error_description`.
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(Json::as_str)
                .map(|v| api_text(&self.masker.mask(v), SHOWN))
        };
        let why = match (field("error"), field("error_description")) {
            (Some(e), Some(d)) => format!("{e}: {d}"),
            (Some(e), None) => e,
            (None, Some(d)) => d,
            (None, None) => {
                let text = String::from_utf8_lossy(&body);
                api_text(&self.masker.mask(text.trim()), SHOWN)
            }
        };
        let mut message = format!(
            "the token endpoint {shown} refused the {grant_type} grant (HTTP {status}): {why}"
        );
        if grant.from_store {
            if let Some(store) = &self.store {
                message.push_str(&format!(
                    " (the refresh token sent is the rotated one stored in {}; if the configured `refresh_token` is newer, {})",
                    store.shown(),
                    match store.shared() {
                        true => "configure a newly issued one: a changed `refresh_token` replaces the stored one".to_string(),
                        false => "remove that file".to_string(),
                    }
                ));
            }
        }
        Err(AuthError::fatal(self.error(message)))
    }
}

/// `expires_in` in seconds, as a number or (as some servers send it) a numeric string.
fn expires_in(answer: &Json) -> Option<Duration> {
    let v = answer.get("expires_in")?;
    let secs = match v {
        Json::Number(n) => n.as_f64()?,
        Json::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !secs.is_finite() {
        return None;
    }
    Duration::try_from_secs_f64(secs.clamp(0.0, 10.0 * 365.0 * 86_400.0)).ok()
}
