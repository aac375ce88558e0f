//! Credentials on a service's requests: the fixed kinds (`bearer`, `basic`, `api_key`),
//! OAuth2 access tokens ([`oauth2`], with the rotated refresh token kept by
//! `refresh_store`) and AWS Signature Version 4 ([`sigv4`]). The HTTP client asks for
//! them only on requests to the service's own origin.

pub mod oauth2;
mod refresh_store;
pub mod sigv4;

use crate::check::{Auth, Service};
use crate::masking::Masker;
use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a rotated OAuth2 refresh token is kept.
#[derive(Clone)]
pub enum TokenHome {
    /// Nowhere: in memory until the run ends (`try`'s throwaway runs, tests).
    Memory,
    /// The data directory, `oauth2/SERVICE.json`: a single run's.
    Dir(PathBuf),
    /// The state store: in a cluster, the database every instance shares (spec §14).
    Store(Arc<dyn crate::state::StateStore>),
}

impl TokenHome {
    /// Where a run on `store` keeps tokens: its data directory when it has one, else
    /// (the cluster's store) the store itself.
    pub fn of(store: &Arc<dyn crate::state::StateStore>) -> TokenHome {
        match store.location() {
            Some(dir) => TokenHome::Dir(dir.to_path_buf()),
            None => TokenHome::Store(store.clone()),
        }
    }
}

/// Why a request could not be given its credentials; the message holds no secret.
#[derive(Debug)]
pub struct AuthError {
    pub message: String,
    /// Worth trying again (after this long, when the token endpoint said so).
    pub retry: Option<Option<Duration>>,
}

impl AuthError {
    fn fatal(message: String) -> AuthError {
        AuthError {
            message,
            retry: None,
        }
    }
    fn retry(message: String, after: Option<Duration>) -> AuthError {
        AuthError {
            message,
            retry: Some(after),
        }
    }
}

/// What a request was authorized with: the OAuth2 token's generation, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Used(Option<u64>);

enum Kind {
    Fixed(Auth),
    OAuth2(Box<oauth2::TokenSource>),
    SigV4(sigv4::Signer),
}

/// The credentials of one service.
pub struct Authorizer {
    kind: Kind,
}

impl Authorizer {
    /// `home` is where a rotated OAuth2 refresh token is kept.
    pub fn new(
        svc: &Service,
        http: reqwest::Client,
        home: &TokenHome,
        masker: Masker,
    ) -> Result<Authorizer, String> {
        let kind = match &svc.auth {
            Auth::OAuth2(cfg) => Kind::OAuth2(Box::new(oauth2::TokenSource::new(
                &svc.name,
                cfg,
                http,
                Duration::from_millis(svc.timeout_ms),
                home,
                masker,
            )?)),
            Auth::AwsSigV4(cfg) => Kind::SigV4(sigv4::Signer::new(cfg)),
            fixed => Kind::Fixed(fixed.clone()),
        };
        Ok(Authorizer { kind })
    }

    /// Puts the credentials on `req`, a request to the service's origin that is
    /// otherwise complete (a signature covers its headers and body).
    pub async fn authorize(&self, req: &mut reqwest::Request) -> Result<Used, AuthError> {
        let header = |req: &mut reqwest::Request, name: HeaderName, value: &str| {
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                AuthError::fatal(format!(
                    "the credential for header `{name}` is not a valid header value"
                ))
            })?;
            v.set_sensitive(true);
            req.headers_mut().insert(name, v);
            Ok::<_, AuthError>(())
        };
        match &self.kind {
            Kind::Fixed(Auth::Bearer(t)) => header(
                req,
                reqwest::header::AUTHORIZATION,
                &format!("Bearer {}", t.value),
            )?,
            Kind::Fixed(Auth::Basic(u, p)) => {
                req.headers_mut().insert(
                    reqwest::header::AUTHORIZATION,
                    basic_header(&u.value, &p.value),
                );
            }
            Kind::Fixed(Auth::Header { name, value }) => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    AuthError::fatal(format!("`{name}` is not a valid header name"))
                })?;
                header(req, name, &value.value)?;
            }
            Kind::Fixed(Auth::Query { name, value }) => {
                // A next link that already carries the key keeps its own.
                let url = req.url_mut();
                if !url.query_pairs().any(|(k, _)| k == name.as_str()) {
                    url.query_pairs_mut().append_pair(name, &value.value);
                }
            }
            Kind::Fixed(_) => {}
            Kind::OAuth2(source) => {
                let token = source.token().await?;
                req.headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, token.header.clone());
                return Ok(Used(Some(token.generation)));
            }
            Kind::SigV4(signer) => signer
                .sign(req, SystemTime::now())
                .map_err(AuthError::fatal)?,
        }
        Ok(Used(None))
    }

    /// The service answered `401` to a request authorized with `used`: true when
    /// sending it again may succeed, the refused access token being renewed first.
    pub fn refused(&self, used: Used) -> bool {
        match (&self.kind, used.0) {
            (Kind::OAuth2(source), Some(generation)) => {
                source.refused(generation);
                true
            }
            _ => false,
        }
    }
}

/// `Basic base64(user:password)`, marked sensitive.
pub(crate) fn basic_header(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}
