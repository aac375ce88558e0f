//! A service's `auth = ...`: `bearer`, `basic`, `api_key`, `none`, and (spec §12)
//! `oauth2(...)` and `aws_sigv4(...)`. Every credential becomes a secret text.

use super::diagnostic::did_you_mean;
use super::props::Signature;
use super::{Auth, AwsSigV4, ClientAuth, Code, Ctx, OAuth2, Text};
use crate::syntax::ast::{self, ExprKind};
use crate::syntax::Span;
use std::collections::BTreeMap;

pub(crate) const AUTH_KINDS: &[&str] =
    &["bearer", "basic", "api_key", "oauth2", "aws_sigv4", "none"];
const KINDS_HELP: &str = "the auth kinds are: bearer(token), basic(user, password), api_key(header = ..., value = ...), api_key(query = ..., value = ...), oauth2(token_url = ..., client_id = ..., client_secret = ...), aws_sigv4(region, service, access_key, secret_key)";

impl<'e> Ctx<'e> {
    pub(super) fn auth(&mut self, e: &ast::Expr) -> Option<Auth> {
        let (name, args) = match &e.kind {
            ExprKind::Call { name, args } => (name, args),
            ExprKind::Name(parts) if parts.len() == 1 && parts[0].name == "none" => {
                return Some(Auth::None)
            }
            _ => {
                self.error(
                    Code::UnknownAuth,
                    "`auth` must be `bearer(...)`, `basic(...)`, `api_key(...)`, `oauth2(...)`, `aws_sigv4(...)` or `none`",
                    e.span,
                    "expected an auth kind",
                );
                return None;
            }
        };
        match name.name.as_str() {
            "bearer" => {
                let sig = Signature {
                    name: "bearer",
                    params: &["token"],
                    required: &["token"],
                    positional: &["token"],
                };
                let a = self.call_args(&sig, args, name.span);
                Some(Auth::Bearer(
                    self.text(a.get("token")?, true, "the token")?.into_secret(),
                ))
            }
            "basic" => {
                let sig = Signature {
                    name: "basic",
                    params: &["user", "password"],
                    required: &["user", "password"],
                    positional: &["user", "password"],
                };
                let a = self.call_args(&sig, args, name.span);
                let user = a.get("user").and_then(|u| self.text(u, true, "the user"));
                let pass = a
                    .get("password")
                    .and_then(|p| self.text(p, true, "the password"));
                Some(Auth::Basic(user?.into_secret(), pass?.into_secret()))
            }
            "api_key" => self.api_key(args, name.span),
            "oauth2" => self.oauth2(args, name.span),
            "aws_sigv4" => self.aws_sigv4(args, name.span),
            "none" => Some(Auth::None),
            other => {
                let help = did_you_mean(other, AUTH_KINDS.iter().copied());
                self.error(
                    Code::UnknownAuth,
                    format!("unknown auth kind `{other}`"),
                    name.span,
                    "unknown auth kind",
                )
                .help = help.or_else(|| Some(KINDS_HELP.into()));
                None
            }
        }
    }

    fn api_key(&mut self, args: &[ast::Arg], callee: Span) -> Option<Auth> {
        let sig = Signature {
            name: "api_key",
            params: &["header", "query", "value"],
            required: &["value"],
            positional: &[],
        };
        let a = self.call_args(&sig, args, callee);
        let value = a.get("value").and_then(|v| self.text(v, true, "the key"));
        let header = a
            .get("header")
            .and_then(|h| self.text(h, false, "the header name"));
        let query = a
            .get("query")
            .and_then(|q| self.text(q, false, "the query parameter name"));
        match (a.contains_key("header"), a.contains_key("query")) {
            (true, true) => {
                self.error(
                    Code::ConflictingProperties,
                    "`api_key` goes either in a `header` or in the `query`, not both",
                    arg_span(args, "query", callee),
                    "in the query",
                )
                .labels
                .push(super::Label {
                    span: arg_span(args, "header", callee),
                    text: "and in a header".into(),
                });
                None
            }
            (false, false) => {
                self.error(
                    Code::MissingArgument,
                    "`api_key` needs `header = \"Name\"` or `query = \"name\"`",
                    callee,
                    "where does the key go?",
                );
                None
            }
            (true, false) => Some(Auth::Header {
                name: header?.value,
                value: value?.into_secret(),
            }),
            (false, true) => Some(Auth::Query {
                name: query?.value,
                value: value?.into_secret(),
            }),
        }
    }

    /// `oauth2(token_url, client_id, client_secret, scope?, audience?, refresh_token?,
    /// client_auth = "basic" | "body")`, by name.
    fn oauth2(&mut self, args: &[ast::Arg], callee: Span) -> Option<Auth> {
        let sig = Signature {
            name: "oauth2",
            params: &[
                "token_url",
                "client_id",
                "client_secret",
                "scope",
                "audience",
                "refresh_token",
                "client_auth",
            ],
            required: &["token_url", "client_id", "client_secret"],
            positional: &[],
        };
        let a = self.call_args(&sig, args, callee);
        let token_url = a.get("token_url").and_then(|e| {
            let t = self.text(e, false, "`token_url`")?;
            self.url(&t, e.span, "`token_url`")
        });
        let client_id = self.secret_arg(&a, "client_id", "the client id");
        let client_secret = self.secret_arg(&a, "client_secret", "the client secret");
        let refresh_token = self.optional_secret(&a, "refresh_token", "the refresh token");
        let scope = self.optional_plain(&a, "scope", "`scope`");
        let audience = self.optional_plain(&a, "audience", "`audience`");
        let client_auth = match a.get("client_auth") {
            None => Some(ClientAuth::Basic),
            Some(e) => self.client_auth(e),
        };
        Some(Auth::OAuth2(Box::new(OAuth2 {
            token_url: token_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            scope: scope?,
            audience: audience?,
            refresh_token: refresh_token?,
            client_auth: client_auth?,
        })))
    }

    fn client_auth(&mut self, e: &ast::Expr) -> Option<ClientAuth> {
        let ExprKind::Str(s) = &e.kind else {
            self.error(
                Code::InvalidValue,
                "`client_auth` must be \"basic\" or \"body\"",
                e.span,
                "expected \"basic\" or \"body\"",
            );
            return None;
        };
        match s.as_str() {
            "basic" => Some(ClientAuth::Basic),
            "body" => Some(ClientAuth::Body),
            other => {
                let help = did_you_mean(other, ["basic", "body"])
                    .or_else(|| Some("\"basic\" sends the client id and secret as HTTP Basic credentials (the default, RFC 6749 §2.3.1); \"body\" sends them in the form".into()));
                self.error(
                    Code::InvalidValue,
                    format!("`client_auth` must be \"basic\" or \"body\", not \"{other}\""),
                    e.span,
                    "unknown client authentication",
                )
                .help = help;
                None
            }
        }
    }

    /// `aws_sigv4(region, service, access_key, secret_key, session_token?)`.
    fn aws_sigv4(&mut self, args: &[ast::Arg], callee: Span) -> Option<Auth> {
        let sig = Signature {
            name: "aws_sigv4",
            params: &[
                "region",
                "service",
                "access_key",
                "secret_key",
                "session_token",
            ],
            required: &["region", "service", "access_key", "secret_key"],
            positional: &["region", "service", "access_key", "secret_key"],
        };
        let a = self.call_args(&sig, args, callee);
        let region = self.aws_name(&a, "region", "`region`", "us-east-1");
        let service = self.aws_name(&a, "service", "`service`", "execute-api");
        let access_key = self.secret_arg(&a, "access_key", "the access key");
        let secret_key = self.secret_arg(&a, "secret_key", "the secret key");
        let session_token = self.optional_secret(&a, "session_token", "the session token");
        Some(Auth::AwsSigV4(Box::new(AwsSigV4 {
            region: region?,
            service: service?,
            access_key: access_key?,
            secret_key: secret_key?,
            session_token: session_token?,
        })))
    }

    /// A region or service name as AWS writes them in a credential scope: lowercase
    /// letters, digits and `-` (an unset `env()` was already reported).
    fn aws_name(
        &mut self,
        a: &BTreeMap<&'static str, &ast::Expr>,
        key: &str,
        what: &str,
        example: &str,
    ) -> Option<String> {
        let e = a.get(key)?;
        let t = self.text(e, false, what)?;
        let fine = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if (t.value.is_empty() && self.already_reported(e.span))
            || (!t.value.is_empty() && t.value.chars().all(fine))
        {
            return Some(t.value);
        }
        self.error(
            Code::InvalidValue,
            format!(
                "{what} \"{}\" is not an AWS {key} name",
                t.value.chars().take(60).collect::<String>().escape_debug()
            ),
            e.span,
            "lowercase letters, digits and `-` only",
        )
        .help = Some(format!("for example `{example}`"));
        None
    }

    fn secret_arg(
        &mut self,
        a: &BTreeMap<&'static str, &ast::Expr>,
        key: &str,
        what: &str,
    ) -> Option<Text> {
        Some(self.text(a.get(key)?, true, what)?.into_secret())
    }

    /// `Some(None)` when the argument is not given; `None` when it is wrong.
    fn optional_secret(
        &mut self,
        a: &BTreeMap<&'static str, &ast::Expr>,
        key: &str,
        what: &str,
    ) -> Option<Option<Text>> {
        match a.get(key) {
            None => Some(None),
            Some(e) => Some(Some(self.text(e, true, what)?.into_secret())),
        }
    }

    fn optional_plain(
        &mut self,
        a: &BTreeMap<&'static str, &ast::Expr>,
        key: &str,
        what: &str,
    ) -> Option<Option<String>> {
        match a.get(key) {
            None => Some(None),
            Some(e) => Some(Some(self.text(e, false, what)?.value)),
        }
    }
}

/// Where a named argument is written, or the callee when it is not.
fn arg_span(args: &[ast::Arg], key: &str, callee: Span) -> Span {
    args.iter()
        .filter_map(|a| a.name.as_ref())
        .find(|n| n.name == key)
        .map_or(callee, |n| n.span)
}
