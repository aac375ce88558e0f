//! A source's `receive { path, verify, records, fetch, max_body }` (spec §11): events
//! POSTed to hamstr's listener feed the source. The path, the `verify` kinds and their
//! arguments, and the `{field}` placeholders of `fetch`; a path received by two sources
//! is reported once every source was read.

use super::diagnostic::did_you_mean;
use super::props::Signature;
use super::{Code, Ctx, Encoding, Label, Receive, Text, Verify, DEFAULT_RECEIVE_MAX_BODY};
use crate::syntax::ast::{self, ExprKind};
use crate::syntax::Span;
use std::collections::BTreeMap;

pub(crate) const PROPS: &[&str] = &["path", "verify", "records", "fetch", "max_body"];
pub(crate) const VERIFY_KINDS: &[&str] = &["hmac", "stripe", "standard", "token", "none"];
const KINDS_HELP: &str = "the verify kinds are: hmac(header = ..., secret = ...), stripe(secret = ...), standard(secret = ...), token(header = ..., value = ...), none";
/// Paths the listener answers itself.
const RESERVED: &[&str] = &["/health", "/metrics"];
/// How far a signed timestamp may be from now when `tolerance` is not given.
const DEFAULT_TOLERANCE_MS: u64 = 5 * 60 * 1000;

impl<'e> Ctx<'e> {
    /// `receive { ... }` of source `owner` (named `name`).
    pub(super) fn receive(&mut self, block: &ast::Block, name: &ast::Ident) -> Option<Receive> {
        let owner = format!("the `receive` of source `{}`", name.name);
        let props = self.props(block, PROPS, &owner);
        let path = match props.get("path").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.receive_path(e, &name.name),
            Some(None) => None,
            None => {
                self.error(
                    Code::MissingProperty,
                    format!("{owner} has no `path`"),
                    name.span,
                    "`path` is required",
                )
                .help = Some("the listener's path the events are POSTed to, like `path = \"/hooks/payments\"`".into());
                None
            }
        };
        let fetch = match props.get("fetch").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.fetch_path(e).map(Some),
            Some(None) => None,
            None => Some(None),
        };
        let verify = match props.get("verify").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => {
                let v = self.verify(e);
                if v == Some(Verify::None) && props.get("fetch").is_none() {
                    self.warn(
                        Code::UnverifiedReceive,
                        format!(
                            "source `{}` takes events from anyone: `verify = none` without `fetch`",
                            name.name
                        ),
                        e.span,
                        "nothing is verified",
                    )
                    .help = Some("verify the sender (`hmac(...)`, `stripe(...)`, `standard(...)`, `token(...)`), or read each record from the service with `fetch = \"/path/{id}\"`".into());
                }
                v
            }
            Some(None) => None,
            None => {
                self.error(
                    Code::MissingProperty,
                    format!("{owner} has no `verify`"),
                    name.span,
                    "`verify` is required",
                )
                .help = Some(format!(
                    "{KINDS_HELP}; `none` when every record is read with `fetch`"
                ));
                None
            }
        };
        let records = match props.get("records").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => match &e.kind {
                ExprKind::Path(text) => self.json_path(text, e.span).map(Some),
                _ => {
                    self.error(
                        Code::InvalidValue,
                        "`records` must be a JSONPath like `$.data[*]`",
                        e.span,
                        "expected a JSONPath",
                    );
                    None
                }
            },
            Some(None) => None,
            None => Some(None),
        };
        let max_body = match props.get("max_body").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.int(e, "`max_body` (bytes)", 1).map(|v| v as u64),
            Some(None) => None,
            None => Some(DEFAULT_RECEIVE_MAX_BODY),
        };
        Some(Receive {
            path: path?,
            verify: verify?,
            records: records?,
            fetch: fetch?,
            max_body: max_body?,
        })
    }

    /// A listener path: `/` and then no query, fragment or blank; not one the listener
    /// answers itself. Noted for the check that no two sources receive on one path.
    fn receive_path(&mut self, e: &ast::Expr, source: &str) -> Option<String> {
        let ExprKind::Str(path) = &e.kind else {
            self.error(
                Code::InvalidValue,
                "the `receive` path must be a string like \"/hooks/payments\"",
                e.span,
                "expected a string",
            );
            return None;
        };
        let why = if !path.starts_with('/') {
            Some("must start with `/`")
        } else if path.contains(['?', '#'])
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            Some("must be a plain path, without a query, a fragment or blanks")
        } else if RESERVED.contains(&path.as_str()) {
            Some("is answered by the listener itself")
        } else {
            None
        };
        if let Some(why) = why {
            self.error(
                Code::InvalidValue,
                format!("the `receive` path \"{}\" {why}", path.escape_debug()),
                e.span,
                "not a usable path",
            )
            .help = Some("like `path = \"/hooks/payments\"`".into());
            return None;
        }
        self.receive_paths
            .push((path.clone(), e.span, source.to_string()));
        Some(path.clone())
    }

    /// `fetch = "/payments/{id}"`: placeholders name a top-level field of the event's items.
    fn fetch_path(&mut self, e: &ast::Expr) -> Option<String> {
        let ExprKind::Str(path) = &e.kind else {
            self.error(
                Code::InvalidValue,
                "`fetch` must be a path string like \"/payments/{id}\"",
                e.span,
                "expected a string",
            );
            return None;
        };
        let mut rest = path.as_str();
        while let Some(open) = rest.find(['{', '}']) {
            let bad = if rest[open..].starts_with('}') {
                true
            } else {
                match rest[open..].find('}') {
                    Some(close) => {
                        let name = &rest[open + 1..open + close];
                        let ok = !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
                        rest = &rest[open + close + 1..];
                        !ok
                    }
                    None => true,
                }
            };
            if bad {
                self.error(
                    Code::InvalidValue,
                    format!("`fetch` \"{}\" has a malformed placeholder", path.escape_debug()),
                    e.span,
                    "expected `{field}`",
                )
                .help = Some("placeholders name a top-level field of the event's items, like \"/payments/{id}\"".into());
                return None;
            }
        }
        Some(path.clone())
    }

    fn verify(&mut self, e: &ast::Expr) -> Option<Verify> {
        let (name, args) = match &e.kind {
            ExprKind::Call { name, args } => (name, args.as_slice()),
            ExprKind::Name(parts) if parts.len() == 1 && parts[0].name == "none" => {
                return Some(Verify::None)
            }
            ExprKind::Name(parts) if parts.len() == 1 => (&parts[0], &[][..]),
            _ => {
                self.error(
                    Code::UnknownVerify,
                    "`verify` must be `hmac(...)`, `stripe(...)`, `standard(...)`, `token(...)` or `none`",
                    e.span,
                    "expected a verify kind",
                )
                .help = Some(KINDS_HELP.into());
                return None;
            }
        };
        let tolerance =
            |ctx: &mut Self, a: &BTreeMap<&'static str, &ast::Expr>| match a.get("tolerance") {
                Some(t) => ctx.duration(t, "`tolerance`"),
                None => Some(DEFAULT_TOLERANCE_MS),
            };
        match name.name.as_str() {
            "none" => Some(Verify::None),
            "hmac" => {
                let sig = Signature {
                    name: "hmac",
                    params: &["header", "secret", "prefix", "encoding"],
                    required: &["secret"],
                    positional: &[],
                };
                let a = self.call_args(&sig, args, name.span);
                let header = self.header_arg(&a, "X-Signature");
                let secret = self.verify_secret(&a, "secret", "the secret");
                let prefix = match a.get("prefix") {
                    Some(p) => self.text(p, false, "`prefix`").map(|t| t.value),
                    None => Some(String::new()),
                };
                let encoding = match a.get("encoding") {
                    None => Some(Encoding::Hex),
                    Some(e) => self.encoding(e),
                };
                Some(Verify::Hmac {
                    header: header?,
                    secret: secret?,
                    prefix: prefix?,
                    encoding: encoding?,
                })
            }
            "stripe" | "standard" => {
                let sig = Signature {
                    name: if name.name == "stripe" {
                        "stripe"
                    } else {
                        "standard"
                    },
                    params: &["secret", "tolerance"],
                    required: &["secret"],
                    positional: &["secret"],
                };
                let a = self.call_args(&sig, args, name.span);
                let secret = self.verify_secret(&a, "secret", "the secret");
                let tolerance_ms = tolerance(self, &a);
                if name.name == "stripe" {
                    return Some(Verify::Stripe {
                        secret: secret?,
                        tolerance_ms: tolerance_ms?,
                    });
                }
                let secret = secret?;
                let span = a.get("secret").map_or(name.span, |e| e.span);
                if !secret.value.is_empty() && standard_key(&secret.value).is_none() {
                    self.error(
                        Code::InvalidValue,
                        "a Standard Webhooks secret is `whsec_` and then base64",
                        span,
                        "not a `whsec_...` secret",
                    );
                    return None;
                }
                Some(Verify::Standard {
                    secret,
                    tolerance_ms: tolerance_ms?,
                })
            }
            "token" => {
                let sig = Signature {
                    name: "token",
                    params: &["header", "value"],
                    required: &["value"],
                    positional: &[],
                };
                let a = self.call_args(&sig, args, name.span);
                let header = self.header_arg(&a, "X-Token");
                let value = self.verify_secret(&a, "value", "the token");
                Some(Verify::Token {
                    header: header?,
                    value: value?,
                })
            }
            other => {
                let help = did_you_mean(other, VERIFY_KINDS.iter().copied());
                self.error(
                    Code::UnknownVerify,
                    format!("unknown verify kind `{other}`"),
                    name.span,
                    "unknown verify kind",
                )
                .help = help.or_else(|| Some(KINDS_HELP.into()));
                None
            }
        }
    }

    fn header_arg(
        &mut self,
        a: &BTreeMap<&'static str, &ast::Expr>,
        default: &str,
    ) -> Option<String> {
        let Some(e) = a.get("header") else {
            return Some(default.to_string());
        };
        let t = self.text(e, false, "the header name")?;
        if http::HeaderName::from_bytes(t.value.as_bytes()).is_err() {
            self.error(
                Code::InvalidValue,
                format!("\"{}\" is not a header name", t.value.escape_debug()),
                e.span,
                "not a header name",
            );
            return None;
        }
        Some(t.value)
    }

    fn verify_secret(
        &mut self,
        a: &BTreeMap<&'static str, &ast::Expr>,
        key: &str,
        what: &str,
    ) -> Option<Text> {
        Some(self.text(a.get(key)?, true, what)?.into_secret())
    }

    fn encoding(&mut self, e: &ast::Expr) -> Option<Encoding> {
        let value = match &e.kind {
            ExprKind::Str(s) => s.as_str(),
            _ => "",
        };
        match value {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            other => {
                self.error(
                    Code::InvalidValue,
                    "`encoding` must be \"hex\" or \"base64\"",
                    e.span,
                    "unknown encoding",
                )
                .help = did_you_mean(other, ["hex", "base64"]);
                None
            }
        }
    }

    /// Reports every path received by more than one source, at the later ones.
    pub(super) fn receive_paths_once(&mut self) {
        let paths = std::mem::take(&mut self.receive_paths);
        let mut first: BTreeMap<&str, (Span, &str)> = BTreeMap::new();
        for (path, span, source) in &paths {
            match first.get(path.as_str()) {
                Some((at, by)) => {
                    let (at, by) = (*at, by.to_string());
                    self.error(
                        Code::DuplicateReceivePath,
                        format!(
                            "sources `{by}` and `{source}` both receive on \"{}\"",
                            path.escape_debug()
                        ),
                        *span,
                        "received again here",
                    )
                    .labels
                    .push(Label {
                        span: at,
                        text: format!("`{by}` receives here"),
                    });
                }
                None => {
                    first.insert(path, (*span, source));
                }
            }
        }
    }
}

/// The key of a Standard Webhooks secret: the base64 after `whsec_` (the prefix may be
/// left out, as the reference libraries allow).
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
}
