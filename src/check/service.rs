//! `service NAME { ... }`: base URL, auth, headers, limits, timeout, retries.

use super::{Auth, Code, Ctx, Retry, Service, Text};
use crate::syntax::ast::{self, ExprKind};
use crate::syntax::Span;

pub(crate) const PROPS: &[&str] = &[
    "base_url",
    "auth",
    "headers",
    "rate_limit",
    "concurrency",
    "timeout",
    "retry",
    "max_body",
];
const DEFAULT_MAX_BODY: u64 = 64 * 1024 * 1024;

impl<'e> Ctx<'e> {
    /// A `base_url` has no query or fragment: a source's `get` path is appended to it,
    /// so `http://h/v2?tenant=1` would request `/v2?tenant=1/orders`.
    fn base_url_only(&mut self, text: &Text, span: Span) -> bool {
        let Ok(url) = url::Url::parse(&text.value) else {
            return true;
        };
        let (what, help) = match (url.query(), url.fragment()) {
            (Some(_), _) => (
                "a query",
                "put query parameters in `query { }`, in each source that needs them",
            ),
            (None, Some(_)) => ("a fragment", "remove the `#...`: it is never sent"),
            (None, None) => return true,
        };
        self.error(
            Code::InvalidUrl,
            format!(
                "`base_url` `{}` has {what}: the path of each request is appended to it",
                text.shown()
            ),
            span,
            format!("{what} in `base_url`"),
        )
        .help = Some(help.into());
        false
    }

    pub(super) fn service(&mut self, svc: &ast::Service) -> Option<Service> {
        let owner = format!("service `{}`", svc.name.name);
        let props = self.props(&svc.body, PROPS, &owner);
        let base_url = match props.get("base_url") {
            Some(stmt) => self
                .stmt_expr(stmt)
                .and_then(|e| self.text(e, false, "`base_url`").map(|t| (t, e.span)))
                .and_then(|(t, span)| {
                    let url = self.url(&t, span, "`base_url`")?;
                    self.base_url_only(&t, span).then_some(url)
                }),
            None => {
                self.missing("service", &svc.name, "base_url");
                None
            }
        };
        let auth = match props.get("auth") {
            Some(stmt) => self.stmt_expr(stmt).and_then(|e| self.auth(e)),
            None => Some(Auth::None),
        };
        let headers = match props.get("headers") {
            Some(stmt) => self
                .stmt_block(stmt)
                .and_then(|b| self.string_map(b, true, "a header")),
            None => Some(Vec::new()),
        };
        let rate_limit = match props.get("rate_limit").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.rate(e, "`rate_limit`").map(Some),
            Some(None) => None,
            None => Some(None),
        };
        let concurrency = match props.get("concurrency").and_then(|s| self.stmt_expr(s)) {
            Some(e) => self
                .int(e, "`concurrency`", 1)
                .map(|v| v.min(10_000) as u32),
            None if props.get("concurrency").is_some() => None,
            None => Some(8),
        };
        let timeout_ms = match props.get("timeout").and_then(|s| self.stmt_expr(s)) {
            Some(e) => self.duration(e, "`timeout`"),
            None if props.get("timeout").is_some() => None,
            None => Some(30_000),
        };
        let max_body = match props.get("max_body").and_then(|s| self.stmt_expr(s)) {
            Some(e) => self.int(e, "`max_body` (bytes)", 1).map(|v| v as u64),
            None if props.get("max_body").is_some() => None,
            None => Some(DEFAULT_MAX_BODY),
        };
        let retry = match props.get("retry") {
            Some(stmt) => self.stmt_block(stmt).and_then(|b| self.retry(b, &owner)),
            None => Some(Retry::default()),
        };

        let (
            Some(base_url),
            Some(auth),
            Some(headers),
            Some(rate_limit),
            Some(concurrency),
            Some(timeout_ms),
            Some(retry),
            Some(max_body),
        ) = (
            base_url,
            auth,
            headers,
            rate_limit,
            concurrency,
            timeout_ms,
            retry,
            max_body,
        )
        else {
            return None;
        };
        Some(Service {
            name: svc.name.name.clone(),
            base_url,
            auth,
            headers,
            rate_limit,
            concurrency,
            timeout_ms,
            retry,
            max_body,
        })
    }

    fn retry(&mut self, block: &ast::Block, owner: &str) -> Option<Retry> {
        let props = self.props(
            block,
            &["attempts", "backoff", "max_backoff"],
            &format!("`retry` of {owner}"),
        );
        let mut r = Retry::default();
        let mut ok = true;
        if let Some(e) = props.get("attempts").and_then(|s| self.stmt_expr(s)) {
            match self.int(e, "`attempts`", 1) {
                Some(v) => r.attempts = v.min(1_000) as u32,
                None => ok = false,
            }
        }
        if let Some(e) = props.get("backoff").and_then(|s| self.stmt_expr(s)) {
            match self.duration(e, "`backoff`") {
                Some(v) => r.backoff_ms = v,
                None => ok = false,
            }
        }
        if let Some(e) = props.get("max_backoff").and_then(|s| self.stmt_expr(s)) {
            match self.duration(e, "`max_backoff`") {
                Some(v) => r.max_backoff_ms = v,
                None => ok = false,
            }
        }
        ok.then_some(r)
    }

    /// `{ "Name" = "value" ... }` as pairs in order: `headers` and `query`.
    pub(super) fn string_map(
        &mut self,
        block: &ast::Block,
        secret: bool,
        what: &str,
    ) -> Option<Vec<(String, Text)>> {
        let mut out: Vec<(String, Text)> = Vec::new();
        let mut first_set: std::collections::BTreeMap<&str, crate::syntax::Span> =
            std::collections::BTreeMap::new();
        let mut ok = true;
        for stmt in &block.stmts {
            if let Some(first) = first_set.get(stmt.name.text.as_str()) {
                self.set_twice(
                    format!("{what} `{}` is set twice", stmt.name.text),
                    stmt.name.span,
                    *first,
                );
                ok = false;
                continue;
            }
            first_set.insert(&stmt.name.text, stmt.name.span);
            match self
                .stmt_expr(stmt)
                .and_then(|e| self.scalar_text(e, secret && is_env(e), &format!("{what}'s value")))
            {
                Some(t) => out.push((stmt.name.text.clone(), t)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

fn is_env(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { name, .. } if name.name == "env")
}
