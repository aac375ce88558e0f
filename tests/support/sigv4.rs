//! AWS Signature Version 4, written out here from AWS's documentation ("Create a
//! canonical request", "Create a string to sign", "Calculate the signature") and
//! independent of the `aws-sigv4` crate hamstr signs with; and an API that serves
//! pages only to requests whose signature this computation confirms, as an AWS service
//! (API Gateway with IAM authorization) would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::axum_app::Running;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// UriEncode() of the AWS documentation: every byte but `A-Za-z0-9-._~` as `%XY`
/// (upper-case hex); `/` too unless `keep_slash`.
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A request as the signature sees it.
pub struct Canonical<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded once).
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// Every header sent, names in any case.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Canonical<'_> {
    /// The canonical request for the headers named in `signed` (lower case, sorted,
    /// `;`-separated), for a service other than S3: the path's segments encoded a second
    /// time, the query's names and values decoded, encoded and sorted, header values
    /// trimmed with inner runs of spaces made one, the body's SHA-256.
    pub fn request(&self, signed: &str) -> String {
        let path = if self.path.is_empty() {
            "/".to_string()
        } else {
            uri_encode(self.path, true)
        };
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
            .collect();
        params.sort();
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = String::new();
        for name in signed.split(';') {
            let values: Vec<String> = self
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        format!(
            "{}\n{path}\n{query}\n{headers}\n{signed}\n{}",
            self.method,
            sha256_hex(self.body)
        )
    }
}

/// The string to sign of a canonical request made at `amz_date` (`20150830T123600Z`).
pub fn string_to_sign(amz_date: &str, region: &str, service: &str, canonical: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}/{region}/{service}/aws4_request\n{}",
        &amz_date[..8],
        sha256_hex(canonical.as_bytes())
    )
}

/// The signature: HMAC-SHA256 with the key derived from the secret, date, region and
/// service, in hex.
pub fn signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    to_sign: &str,
) -> String {
    let k_date = hmac(
        format!("AWS4{secret}").as_bytes(),
        &amz_date.as_bytes()[..8],
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex(&hmac(&k_signing, to_sign.as_bytes()))
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/
/// aws4_request, SignedHeaders=a;b, Signature=HEX`.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub access_key: String,
    pub scope: String,
    pub signed_headers: String,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut parts = BTreeMap::new();
    for p in rest.split(',') {
        let (k, v) = p.trim().split_once('=')?;
        parts.insert(k.to_string(), v.to_string());
    }
    let credential = parts.get("Credential")?;
    let (access_key, scope) = credential.split_once('/')?;
    Some(Authorization {
        access_key: access_key.into(),
        scope: scope.into(),
        signed_headers: parts.get("SignedHeaders")?.clone(),
        signature: parts.get("Signature")?.clone(),
    })
}

/// The credentials and scope an API accepts.
#[derive(Clone, Debug)]
pub struct AwsKeys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
}

/// Whether a received request carries a valid signature; why not, if not.
pub fn verify(keys: &AwsKeys, c: &Canonical) -> Result<(), String> {
    let header = |name: &str| {
        c.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let auth = parse_authorization(header("authorization").ok_or("no Authorization")?)
        .ok_or("not a SigV4 Authorization")?;
    let amz_date = header("x-amz-date").ok_or("no X-Amz-Date")?;
    if auth.access_key != keys.access_key {
        return Err(format!("unknown access key {:?}", auth.access_key));
    }
    let scope = format!(
        "{}/{}/{}/aws4_request",
        &amz_date[..8],
        keys.region,
        keys.service
    );
    if auth.scope != scope {
        return Err(format!("scope {:?}, expected {scope:?}", auth.scope));
    }
    let signed: Vec<&str> = auth.signed_headers.split(';').collect();
    for must in ["host", "x-amz-date"] {
        if !signed.contains(&must) {
            return Err(format!("{must} is not signed"));
        }
    }
    if let Some(token) = &keys.session_token {
        if header("x-amz-security-token") != Some(token.as_str())
            || !signed.contains(&"x-amz-security-token")
        {
            return Err("the session token is missing or not signed".into());
        }
    }
    let canonical = c.request(&auth.signed_headers);
    let to_sign = string_to_sign(amz_date, &keys.region, &keys.service, &canonical);
    let expected = signature(
        &keys.secret_key,
        amz_date,
        &keys.region,
        &keys.service,
        &to_sign,
    );
    if expected != auth.signature {
        return Err(format!(
            "signature mismatch; the canonical request was:\n{canonical}"
        ));
    }
    Ok(())
}

/// One request the API received, and its verdict.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub body: String,
    pub verdict: Result<(), String>,
}

struct Shared {
    keys: AwsKeys,
    pages: usize,
    log: Mutex<Vec<Received>>,
}

/// An API at `/prod/orders` (GET with `?page=N`, or POST with a JSON body) that answers
/// only correctly signed requests: 403 with AWS's message otherwise.
pub struct SigV4Api {
    server: Running,
    shared: Arc<Shared>,
}

impl SigV4Api {
    pub fn start(keys: AwsKeys, pages: usize) -> SigV4Api {
        let shared = Arc::new(Shared {
            keys,
            pages,
            log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/prod/orders", axum::routing::any(orders))
            .with_state(shared.clone());
        SigV4Api {
            server: Running::start(app),
            shared,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/prod", self.server.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().expect("log").clone()
    }
}

async fn orders(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if !all.iter().any(|(k, _)| k == "host") {
        all.push(("host".into(), String::new()));
    }
    let c = Canonical {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: all,
        body: &body,
    };
    let verdict = verify(&s.keys, &c);
    s.log.lock().expect("log").push(Received {
        method: method.to_string(),
        target: uri.to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
        verdict: verdict.clone(),
    });
    if verdict.is_err() {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."})),
        )
            .into_response();
    }
    let page: usize = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let items: Vec<serde_json::Value> = if page <= s.pages {
        (1..=5)
            .map(|i| {
                let n = (page - 1) * 5 + i;
                json!({"id": format!("o{n:04}"), "n": n})
            })
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(json!({"Items": items, "total_pages": s.pages})).into_response()
}
