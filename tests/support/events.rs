//! Senders of events for `receive` tests: a real HTTP client (reqwest, on a runtime of
//! its own so tests stay synchronous), the listener's address read from a run's stderr,
//! and each provider's signing scheme computed here from its documentation, apart from
//! hamstr's own verification code.

use super::RunningHamstr;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use std::time::Duration;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A blocking HTTP client over reqwest.
pub struct Sender {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new()
    }
}

impl Sender {
    pub fn new() -> Sender {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = hamstr::nodes::net::http_client().expect("client");
        Sender { rt, client }
    }

    /// POSTs `body` with `headers`; the status and body, or why no answer came.
    pub fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        self.send(reqwest::Method::POST, url, headers, body)
    }

    pub fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        self.rt.block_on(async {
            let mut req = self
                .client
                .request(method, url)
                .timeout(Duration::from_secs(60))
                .body(body.to_vec());
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            Ok((status, text))
        })
    }

    pub fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.send(reqwest::Method::GET, url, &[], b"")
    }
}

/// `http://ADDR` of the run's listener, from its `listening on http://ADDR` line.
pub fn listener_url(run: &mut RunningHamstr) -> String {
    let line = run.wait_for_stderr_line(
        "the listener's address",
        |l| l.starts_with("listening on http://"),
        Duration::from_secs(60),
    );
    line.trim_start_matches("listening on ").trim().to_string()
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), &[body])))
}

/// Shopify's `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.
pub fn shopify_signature(secret: &str, body: &[u8]) -> String {
    b64(&hmac_sha256(secret.as_bytes(), &[body]))
}

/// Stripe's `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let signed = hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]);
    format!("t={t},v1={}", hex(&signed))
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp`, and `webhook-signature:
/// v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed by the base64 after `whsec_`.
pub fn standard_headers(
    secret: &str,
    id: &str,
    t: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a whsec_ secret");
    let sig = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", t.to_string().as_bytes(), b".", body],
    );
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", format!("v1,{}", b64(&sig))),
    ]
}
