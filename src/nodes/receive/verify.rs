//! Whether an event comes from its sender (spec §11 `verify`): HMAC-SHA256 of the raw
//! body (hex or base64, after a prefix), Stripe's `t=...,v1=...` over `t.body`, Standard
//! Webhooks' `v1,<base64>` over `id.timestamp.body`, a shared token, or nothing. Every
//! comparison of a signature or a token runs in constant time; a signed timestamp
//! outside the tolerance is refused (a replay).

use crate::check::{Encoding, Verify};
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use http::HeaderMap;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why an event was refused; says nothing of the secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// Checks `body` and its `headers` against `verify`, at `now` (seconds since the epoch).
pub fn verify(verify: &Verify, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refused> {
    match verify {
        Verify::None => Ok(()),
        Verify::Token { header, value } => {
            let given = header_bytes(headers, header)?;
            if bool::from(given.ct_eq(value.value.as_bytes())) {
                Ok(())
            } else {
                Err(Refused(format!("the `{header}` token does not match")))
            }
        }
        Verify::Hmac {
            header,
            secret,
            prefix,
            encoding,
        } => {
            let given = header_text(headers, header)?;
            let given = given.strip_prefix(prefix.as_str()).ok_or_else(|| {
                Refused(format!(
                    "the `{header}` header does not start with `{prefix}`"
                ))
            })?;
            let signature = match encoding {
                Encoding::Hex => decode_hex(given.trim()),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(given.trim())
                    .ok(),
            }
            .ok_or_else(|| Refused(format!("the `{header}` header is not a signature")))?;
            if signed_by(secret.value.as_bytes(), &[body], &signature) {
                Ok(())
            } else {
                Err(Refused(format!("the `{header}` signature does not match")))
            }
        }
        Verify::Stripe {
            secret,
            tolerance_ms,
        } => {
            let given = header_text(headers, "Stripe-Signature")?;
            let mut timestamp = None;
            let mut signatures = Vec::new();
            for part in given.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => timestamp = Some(t),
                    Some(("v1", s)) => signatures.extend(decode_hex(s)),
                    _ => {}
                }
            }
            let t = timestamp
                .ok_or_else(|| Refused("the `Stripe-Signature` header has no `t=`".into()))?;
            within(t, now, *tolerance_ms)?;
            let signed = [t.as_bytes(), b".", body];
            // Stripe may send several `v1` signatures while a secret is rolled.
            if signatures
                .iter()
                .any(|s| signed_by(secret.value.as_bytes(), &signed, s))
            {
                Ok(())
            } else {
                Err(Refused(
                    "no `v1` signature of `Stripe-Signature` matches".into(),
                ))
            }
        }
        Verify::Standard {
            secret,
            tolerance_ms,
        } => {
            let id = header_text(headers, "webhook-id")?;
            let t = header_text(headers, "webhook-timestamp")?;
            let given = header_text(headers, "webhook-signature")?;
            within(t, now, *tolerance_ms)?;
            let key = crate::check::standard_key(&secret.value)
                .ok_or_else(|| Refused("the secret is not a `whsec_` secret".into()))?;
            let signed = [id.as_bytes(), b".", t.as_bytes(), b".", body];
            // Space-separated `v1,<base64>` signatures (several while a secret is rolled).
            let matches = given.split(' ').any(|sig| {
                sig.strip_prefix("v1,")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .is_some_and(|s| signed_by(&key, &signed, &s))
            });
            if matches {
                Ok(())
            } else {
                Err(Refused(
                    "no `v1` signature of `webhook-signature` matches".into(),
                ))
            }
        }
    }
}

/// Whether `signature` is the HMAC-SHA256 of the concatenated `parts` under `key`;
/// `verify_slice` compares in constant time.
fn signed_by(key: &[u8], parts: &[&[u8]], signature: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(signature).is_ok()
}

/// A signed timestamp (seconds) no further from `now` than the tolerance.
fn within(t: &str, now: i64, tolerance_ms: u64) -> Result<(), Refused> {
    let t: i64 = t
        .trim()
        .parse()
        .map_err(|_| Refused("the signed timestamp is not a number".into()))?;
    let tolerance = i64::try_from(tolerance_ms / 1000).unwrap_or(i64::MAX);
    if now.abs_diff(t) > tolerance.unsigned_abs() {
        return Err(Refused(format!(
            "the signed timestamp is {}s away from now, beyond the tolerance of {tolerance}s (a replay?)",
            now.abs_diff(t)
        )));
    }
    Ok(())
}

fn header_bytes<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a [u8], Refused> {
    headers
        .get(name)
        .map(|v| v.as_bytes())
        .ok_or_else(|| Refused(format!("no `{name}` header")))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Refused> {
    std::str::from_utf8(header_bytes(headers, name)?)
        .map_err(|_| Refused(format!("the `{name}` header is not text")))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Text;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    /// Hostile headers are refused with a reason, never a panic, and the reason names
    /// no secret.
    #[test]
    fn hostile_headers_are_refused_cleanly() {
        let secret = Text::plain("s3cr3t").into_secret();
        let kinds = [
            Verify::Hmac {
                header: "X-Sig".into(),
                secret: secret.clone(),
                prefix: "sha256=".into(),
                encoding: Encoding::Hex,
            },
            Verify::Hmac {
                header: "X-Sig".into(),
                secret: secret.clone(),
                prefix: String::new(),
                encoding: Encoding::Base64,
            },
            Verify::Stripe {
                secret: secret.clone(),
                tolerance_ms: 300_000,
            },
            Verify::Standard {
                secret: Text::plain("whsec_c2VjcmV0").into_secret(),
                tolerance_ms: 300_000,
            },
            Verify::Token {
                header: "X-Sig".into(),
                value: secret,
            },
        ];
        let hostile: &[&[u8]] = &[
            b"",
            b"sha256=abc",
            b"sha256=zz",
            b"\xff\xfe",
            b"t=99999999999999999999999,v1=00",
            b"t=-9223372036854775808,v1=",
            b"v1,!!!",
            b",,,,==,=",
        ];
        for v in &kinds {
            for value in hostile {
                let h = headers(&[
                    ("X-Sig", value),
                    ("Stripe-Signature", value),
                    ("webhook-id", value),
                    ("webhook-timestamp", value),
                    ("webhook-signature", value),
                ]);
                let Err(Refused(why)) = verify(v, &h, b"{}", 1_700_000_000) else {
                    panic!("{v:?} took {value:?}");
                };
                assert!(!why.contains("s3cr3t"), "{why}");
            }
            assert!(verify(v, &HeaderMap::new(), b"{}", 0).is_err());
        }
    }
}
