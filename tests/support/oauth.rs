//! An OAuth2 authorization server and, on another origin, a paginated API that takes only
//! the access tokens that server issued: as a CRM or an accounting API would behave
//! (RFC 6749 client-credentials and refresh-token grants, `expires_in`, rotating refresh
//! tokens, `error`/`error_description` on refusal, `401` for an expired token).
//!
//! ```ignore
//! let srv = OAuthServer::start(OAuthOptions { lifetime: Duration::from_secs(2), ..OAuthOptions::default() });
//! // pipeline: base_url = srv.api_url(), auth = oauth2(token_url = srv.token_url(), ...)
//! // get = "/items", paginate = page(param = "page", total_pages = $.total_pages)
//! assert_eq!(srv.max_concurrent_grants(), 1);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::axum_app::Running;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::http::base64_decode;

/// How the servers behave.
#[derive(Clone, Debug)]
pub struct OAuthOptions {
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of every access token; the API refuses a token this old.
    pub lifetime: Duration,
    /// The refresh-token grant, starting from this token (else client credentials).
    pub refresh_token: Option<String>,
    /// Each refresh grant returns a new refresh token and revokes the one it was given.
    pub rotate: bool,
    /// How long the token endpoint takes to answer (to let concurrent renewals overlap).
    pub token_delay: Duration,
    /// Every token request is refused with this status, `error` and `error_description`.
    pub refuse: Option<(u16, String, String)>,
    pub pages: usize,
    pub page_size: usize,
    /// How long each page takes.
    pub page_delay: Duration,
    /// The API revokes the token of every Nth page served (then answers 401 to it).
    pub revoke_every: Option<usize>,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        OAuthOptions {
            client_id: "client-Id-4711".into(),
            client_secret: "cs-Sec+ret/9=".into(),
            lifetime: Duration::from_secs(3600),
            refresh_token: None,
            rotate: false,
            token_delay: Duration::ZERO,
            refuse: None,
            pages: 3,
            page_size: 10,
            page_delay: Duration::ZERO,
            revoke_every: None,
        }
    }
}

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub grant_type: String,
    pub refresh_token: Option<String>,
    /// "basic" or "body"
    pub client_auth: String,
    pub accepted: bool,
    /// The raw header lines and body, to look for what must not be there.
    pub raw: String,
}

/// One request to the API.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub page: usize,
    pub token: Option<String>,
    pub status: u16,
    pub raw: String,
}

struct Issued {
    expires: Instant,
    revoked: bool,
    /// Issued by a refresh grant that rotated the refresh token.
    after_rotation: bool,
}

#[derive(Default)]
struct St {
    grants: Vec<GrantRequest>,
    in_flight: usize,
    max_in_flight: usize,
    tokens: BTreeMap<String, Issued>,
    refresh_valid: BTreeSet<String>,
    rotations: usize,
    api: Vec<ApiRequest>,
    served_pages: usize,
    hold_after_rotation: bool,
    counter: u64,
}

struct Shared {
    opts: OAuthOptions,
    st: Mutex<St>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct OAuthServer {
    shared: Arc<Shared>,
    api: Running,
    auth: Running,
}

impl OAuthServer {
    pub fn start(opts: OAuthOptions) -> OAuthServer {
        let mut st = St::default();
        if let Some(r) = &opts.refresh_token {
            st.refresh_valid.insert(r.clone());
        }
        let shared = Arc::new(Shared {
            opts,
            st: Mutex::new(st),
        });
        let auth = Running::start(
            axum::Router::new()
                .route("/oauth/token", axum::routing::post(token))
                .with_state(shared.clone()),
        );
        let api = Running::start(
            axum::Router::new()
                .route("/v1/items", axum::routing::get(items))
                .with_state(shared.clone()),
        );
        OAuthServer { shared, api, auth }
    }

    /// `http://127.0.0.1:PORT/oauth/token` (its own origin).
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth/token", self.auth.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, where `/items` is served.
    pub fn api_url(&self) -> String {
        format!("http://{}/v1", self.api.addr)
    }

    pub fn grants(&self) -> Vec<GrantRequest> {
        self.shared.lock().grants.clone()
    }

    /// The most token requests that were ever in progress at once.
    pub fn max_concurrent_grants(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    pub fn api_requests(&self) -> Vec<ApiRequest> {
        self.shared.lock().api.clone()
    }

    /// How many times the refresh token was rotated.
    pub fn rotations(&self) -> usize {
        self.shared.lock().rotations
    }

    /// The refresh tokens the server would accept now.
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.shared.lock().refresh_valid.iter().cloned().collect()
    }

    /// Makes `token` a valid refresh token too (the user authorized the client again).
    pub fn add_refresh_token(&self, token: &str) {
        self.shared.lock().refresh_valid.insert(token.into());
    }

    /// From now on, API requests made with a token that a rotating grant issued are
    /// held without an answer (while the test kills the client).
    pub fn hold_after_rotation(&self, hold: bool) {
        self.shared.lock().hold_after_rotation = hold;
    }

    /// Whether the API received a token issued after a rotation.
    pub fn saw_token_after_rotation(&self) -> bool {
        let st = self.shared.lock();
        st.api.iter().any(|r| {
            r.token
                .as_ref()
                .and_then(|t| st.tokens.get(t))
                .is_some_and(|i| i.after_rotation)
        })
    }

    /// Everything both servers received, as text.
    pub fn everything_received(&self) -> (String, String) {
        let st = self.shared.lock();
        let auth = st.grants.iter().map(|g| g.raw.as_str()).collect::<Vec<_>>();
        let api = st.api.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>();
        (auth.join("\n"), api.join("\n"))
    }
}

fn raw(headers: &HeaderMap, body: &str) -> String {
    let mut out = String::new();
    for (k, v) in headers {
        out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    out.push_str(body);
    out
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Leaves the in-flight count when a token request ends, however it ends.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _flight = {
        let mut st = s.lock();
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        InFlight(s.clone())
    };
    if !s.opts.token_delay.is_zero() {
        tokio::time::sleep(s.opts.token_delay).await;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()))
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|c| {
            let (id, secret) = c.split_once(':')?;
            let dec = |s: &str| -> String {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((dec(id), dec(secret)))
        });
    let (client_auth, creds) = match basic {
        Some(c) => ("basic", Some(c)),
        None => (
            "body",
            form.get("client_id")
                .zip(form.get("client_secret"))
                .map(|(a, b)| (a.clone(), b.clone())),
        ),
    };
    let mut grant = GrantRequest {
        grant_type: form.get("grant_type").cloned().unwrap_or_default(),
        refresh_token: form.get("refresh_token").cloned(),
        client_auth: client_auth.into(),
        accepted: false,
        raw: raw(&headers, &text),
    };
    let mut st = s.lock();
    let answer = (|| {
        if let Some((status, error, description)) = &s.opts.refuse {
            return Err((*status, error.clone(), description.clone()));
        }
        if creds != Some((s.opts.client_id.clone(), s.opts.client_secret.clone())) {
            return Err((
                401,
                "invalid_client".into(),
                "Client authentication failed".into(),
            ));
        }
        let mut rotated = None;
        match (grant.grant_type.as_str(), &s.opts.refresh_token) {
            ("client_credentials", None) => {}
            ("refresh_token", Some(_)) => {
                let given = grant.refresh_token.clone().unwrap_or_default();
                if !st.refresh_valid.contains(&given) {
                    return Err((
                        400,
                        "invalid_grant".into(),
                        "The refresh token is invalid, expired or revoked".into(),
                    ));
                }
                if s.opts.rotate {
                    st.counter += 1;
                    let new = format!("rt-Rotated-{}-{:08x}", st.counter, rand_u32());
                    st.refresh_valid.remove(&given);
                    st.refresh_valid.insert(new.clone());
                    st.rotations += 1;
                    rotated = Some(new);
                }
            }
            _ => {
                return Err((
                    400,
                    "unsupported_grant_type".into(),
                    "This grant type is not allowed for this client".into(),
                ));
            }
        }
        st.counter += 1;
        let access = format!("at-{}-{:08x}{:08x}", st.counter, rand_u32(), rand_u32());
        st.tokens.insert(
            access.clone(),
            Issued {
                expires: Instant::now() + s.opts.lifetime,
                revoked: false,
                after_rotation: rotated.is_some(),
            },
        );
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": s.opts.lifetime.as_secs(),
        });
        if let Some(r) = rotated {
            body["refresh_token"] = Value::String(r);
        }
        Ok(body)
    })();
    grant.accepted = answer.is_ok();
    st.grants.push(grant);
    match answer {
        Ok(body) => axum::Json(body).into_response(),
        Err((status, error, description)) => oauth_error(status, &error, &description),
    }
}

async fn items(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut request = ApiRequest {
        page,
        token: token.clone(),
        status: 200,
        raw: raw(&headers, &format!("GET /v1/items?page={page}")),
    };
    let (valid, hold) = {
        let st = s.lock();
        let issued = token.as_ref().and_then(|t| st.tokens.get(t));
        let valid = issued.is_some_and(|i| !i.revoked && Instant::now() < i.expires);
        let hold = valid && st.hold_after_rotation && issued.is_some_and(|i| i.after_rotation);
        (valid, hold)
    };
    if !valid {
        request.status = 401;
        s.lock().api.push(request);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                "Bearer error=\"invalid_token\", error_description=\"The access token expired\"",
            )],
            axum::Json(json!({"error": "invalid_token"})),
        )
            .into_response();
    }
    s.lock().api.push(request);
    if hold {
        std::future::pending::<()>().await;
    }
    if !s.opts.page_delay.is_zero() {
        tokio::time::sleep(s.opts.page_delay).await;
    }
    let data: Vec<Value> = if page >= 1 && page <= s.opts.pages {
        (0..s.opts.page_size)
            .map(|i| {
                let n = (page - 1) * s.opts.page_size + i + 1;
                json!({"id": format!("r{n:05}"), "n": n})
            })
            .collect()
    } else {
        Vec::new()
    };
    {
        let mut st = s.lock();
        st.served_pages += 1;
        if s.opts
            .revoke_every
            .is_some_and(|every| st.served_pages % every == 0)
        {
            if let Some(issued) = token.as_ref().and_then(|t| st.tokens.get_mut(t)) {
                issued.revoked = true;
            }
        }
    }
    axum::Json(json!({ "data": data, "total_pages": s.opts.pages })).into_response()
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// The records the API serves: `r00001` … for `pages * page_size`.
pub fn all_ids(opts: &OAuthOptions) -> Vec<String> {
    (1..=opts.pages * opts.page_size)
        .map(|n| format!("r{n:05}"))
        .collect()
}
