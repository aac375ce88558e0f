//! The request of a source: `get` or `post` with its path, the `query` and the JSON
//! `body` (objects and lists, nested), whose values may be expressions of `watermark`
//! (spec §5.2a); `{field}` placeholders in the path are checked in `for_each.rs`.

use super::expr::{ETy, FieldInfo, Scope};
use super::props::Props;
use super::{BodyValue, Code, Ctx, Label, Method, ParamValue};
use crate::syntax::ast::{self, ExprKind, StmtValue, UnaryOp};

/// A checked request: method, path, query and body.
pub(super) type Request = (Method, String, Vec<(String, ParamValue)>, Option<BodyValue>);

impl<'e> Ctx<'e> {
    /// `watermark` is what `watermark` means in `query` and `body` values: its type, or
    /// `None` for a source without `incremental`.
    pub(super) fn request(
        &mut self,
        src: &ast::Source,
        props: &Props,
        parent: Option<&(String, Vec<FieldInfo>)>,
        parent_unknown: bool,
        watermark: Option<ETy>,
    ) -> Option<Request> {
        let owner = format!("source `{}`", src.name.name);
        let scope = Scope::Request {
            watermark,
            owner: &owner,
        };
        let (method, stmt) = match (props.get("get"), props.get("post")) {
            (Some(g), Some(p)) => {
                self.error(
                    Code::ConflictingProperties,
                    format!("source `{}` has both `get` and `post`", src.name.name),
                    p.name.span,
                    "second method",
                )
                .labels
                .push(Label {
                    span: g.name.span,
                    text: "first method".into(),
                });
                return None;
            }
            (Some(g), None) => (Method::Get, g),
            (None, Some(p)) => (Method::Post, p),
            (None, None) => {
                self.missing("source", &src.name, "get");
                return None;
            }
        };
        let expr = self.stmt_expr(stmt)?;
        let ExprKind::Str(path) = &expr.kind else {
            self.error(
                Code::InvalidValue,
                "the path must be a string like \"/orders\"",
                expr.span,
                "expected a string",
            );
            return None;
        };
        let mut ok = parent_unknown || self.placeholders(path, expr.span, parent);
        let query = match props.get("query") {
            Some(s) => self.stmt_block(s).and_then(|b| self.query(b, &scope)),
            None => Some(Vec::new()),
        };
        let body = match props.get("body") {
            Some(s) if method == Method::Get => {
                self.error(
                    Code::ConflictingProperties,
                    "a `body` is sent only with `post`",
                    s.name.span,
                    "GET has no body",
                );
                ok = false;
                None
            }
            Some(s) => self
                .stmt_block(s)
                .and_then(|b| self.body_object(b, &scope))
                .map(Some),
            None => Some(None),
        };
        let (query, body) = (query?, body?);
        ok.then(|| (method, path.clone(), query, body))
    }

    /// `query { name = value ... }`: constants as text (an `env(...)` one is a
    /// secret), anything else an expression computed once a run.
    fn query(&mut self, block: &ast::Block, scope: &Scope) -> Option<Vec<(String, ParamValue)>> {
        let mut out: Vec<(String, ParamValue)> = Vec::new();
        let mut ok = true;
        for stmt in &block.stmts {
            if let Some(first) = block
                .stmts
                .iter()
                .take_while(|s| !std::ptr::eq(*s, stmt))
                .find(|s| s.name.text == stmt.name.text)
            {
                self.set_twice(
                    format!("a query parameter `{}` is set twice", stmt.name.text),
                    stmt.name.span,
                    first.name.span,
                );
                ok = false;
                continue;
            }
            let value = self.stmt_expr(stmt).and_then(|e| {
                if constant(e) {
                    let secret = is_env(e);
                    self.scalar_text(e, secret, "a query parameter's value")
                        .map(ParamValue::Text)
                } else {
                    self.computed(e, scope).map(ParamValue::Computed)
                }
            });
            match value {
                Some(v) => out.push((stmt.name.text.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An expression in a request value: any type but `json`.
    fn computed(&mut self, e: &ast::Expr, scope: &Scope) -> Option<super::Expr> {
        let (x, _) = self.lower(e, scope)?;
        Some(x)
    }

    fn body_object(&mut self, block: &ast::Block, scope: &Scope) -> Option<BodyValue> {
        let mut out = Vec::new();
        let mut ok = true;
        for stmt in &block.stmts {
            let v = match &stmt.value {
                StmtValue::Block(b) => self.body_object(b, scope),
                StmtValue::Expr(e) => self.body_value(e, scope),
                StmtValue::Typed(t, _) => {
                    self.error(
                        Code::InvalidValue,
                        "a body value takes no type",
                        t.span,
                        "no type expected",
                    );
                    None
                }
            };
            match v {
                Some(v) => out.push((stmt.name.text.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(BodyValue::Object(out))
    }

    fn body_value(&mut self, e: &ast::Expr, scope: &Scope) -> Option<BodyValue> {
        match &e.kind {
            ExprKind::Null => Some(BodyValue::Null),
            ExprKind::Bool(b) => Some(BodyValue::Bool(*b)),
            ExprKind::Number(n) => Some(BodyValue::Number(n.clone())),
            ExprKind::Unary(UnaryOp::Neg, inner) if matches!(inner.kind, ExprKind::Number(_)) => {
                let ExprKind::Number(n) = &inner.kind else {
                    return None;
                };
                Some(BodyValue::Number(format!("-{n}")))
            }
            ExprKind::Object(b) => self.body_object(b, scope),
            ExprKind::List(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for a in items {
                    if let Some(n) = &a.name {
                        self.error(
                            Code::InvalidValue,
                            "a list in a body holds values, not names",
                            n.span,
                            "named item",
                        )
                        .help = Some("write an object: `[{ name = value }]`".into());
                        ok = false;
                        continue;
                    }
                    match self.body_value(&a.value, scope) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(BodyValue::List(out))
            }
            ExprKind::Str(_) => self.text(e, false, "a body value").map(BodyValue::Text),
            _ if is_env(e) => self.text(e, true, "a body value").map(BodyValue::Text),
            _ => self.computed(e, scope).map(BodyValue::Computed),
        }
    }
}

fn is_env(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { name, .. } if name.name == "env")
}

/// A value written as it is sent: a string, number, boolean or `env(...)`.
fn constant(e: &ast::Expr) -> bool {
    match &e.kind {
        ExprKind::Str(_) | ExprKind::Number(_) | ExprKind::Bool(_) => true,
        ExprKind::Unary(UnaryOp::Neg, inner) => matches!(inner.kind, ExprKind::Number(_)),
        _ => is_env(e),
    }
}
