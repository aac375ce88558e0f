//! `aws_sigv4(...)`: every request to the service signed with AWS Signature Version 4
//! by the maintained `aws-sigv4` crate, in the `Authorization` header (with
//! `X-Amz-Date`, and `X-Amz-Security-Token` for temporary credentials).

use crate::check::AwsSigV4;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderName, HeaderValue};
use std::time::SystemTime;

/// Signs the requests of one service.
pub struct Signer {
    region: String,
    service: String,
    credentials: Credentials,
    settings: SigningSettings,
}

impl Signer {
    pub fn new(cfg: &AwsSigV4) -> Signer {
        let credentials = Credentials::new(
            cfg.access_key.value.clone(),
            cfg.secret_key.value.clone(),
            // `env("AWS_SESSION_TOKEN", "")` for long-term keys: no token.
            cfg.session_token
                .as_ref()
                .filter(|t| !t.value.is_empty())
                .map(|t| t.value.clone()),
            None,
            "hamstr",
        );
        let mut settings = SigningSettings::default();
        if cfg.service == "s3" {
            // S3 alone takes the path as sent (encoded once, not normalised) and wants
            // the payload's hash in a header of its own.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        Signer {
            region: cfg.region.clone(),
            service: cfg.service.clone(),
            credentials,
            settings,
        }
    }

    /// Signs `req` as of `time`: its method, URL, headers and body as they are now.
    /// Headers added later (the user agent, the content length) are not signed, as
    /// AWS allows.
    pub fn sign(&self, req: &mut reqwest::Request, time: SystemTime) -> Result<(), String> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(self.settings.clone())
            .build()
            .map_err(|e| format!("aws_sigv4: {e}"))?
            .into();
        let mut headers = Vec::with_capacity(req.headers().len());
        for (name, value) in req.headers() {
            let value = value.to_str().map_err(|_| {
                format!("aws_sigv4: the value of header `{name}` is not text and cannot be signed")
            })?;
            headers.push((name.as_str(), value));
        }
        let body = match req.body() {
            None => SignableBody::Bytes(&[]),
            Some(b) => SignableBody::Bytes(
                b.as_bytes()
                    .ok_or("aws_sigv4: a streamed body cannot be signed")?,
            ),
        };
        let signable = SignableRequest::new(
            req.method().as_str(),
            req.url().as_str(),
            headers.into_iter(),
            body,
        )
        .map_err(|e| format!("aws_sigv4: cannot sign the request: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("aws_sigv4: cannot sign the request: {e}"))?
            .into_parts();
        let (add, query) = instructions.into_parts();
        debug_assert!(query.is_empty(), "signatures go in headers");
        for h in add {
            let name = HeaderName::from_static(h.name());
            let mut value = HeaderValue::from_str(h.value())
                .map_err(|_| format!("aws_sigv4: header `{}` would not be valid", h.name()))?;
            value.set_sensitive(h.sensitive() || name == reqwest::header::AUTHORIZATION);
            req.headers_mut().insert(name, value);
        }
        Ok(())
    }
}
