//! The request of a source: `get` or `post` with its path, the `query` and the JSON
//! `body`; `{field}` placeholders in the path are checked in `for_each.rs`.

use super::expr::FieldInfo;
use super::props::Props;
use super::{BodyValue, Code, Ctx, Label, Method};
use crate::syntax::ast::{self, ExprKind, StmtValue};

impl<'e> Ctx<'e> {
    #[allow(clippy::type_complexity)]
    pub(super) fn request(
        &mut self,
        src: &ast::Source,
        props: &Props,
        parent: Option<&(String, Vec<FieldInfo>)>,
        parent_unknown: bool,
    ) -> Option<(
        Method,
        String,
        Vec<(String, super::Text)>,
        Option<BodyValue>,
    )> {
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
            Some(s) => self
                .stmt_block(s)
                .and_then(|b| self.string_map(b, true, "a query parameter")),
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
                .and_then(|b| self.body_object(b))
                .map(Some),
            None => Some(None),
        };
        let (query, body) = (query?, body?);
        ok.then(|| (method, path.clone(), query, body))
    }

    fn body_object(&mut self, block: &ast::Block) -> Option<BodyValue> {
        let mut out = Vec::new();
        let mut ok = true;
        for stmt in &block.stmts {
            let v = match &stmt.value {
                StmtValue::Block(b) => self.body_object(b),
                StmtValue::Expr(e) => self.body_value(e),
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

    fn body_value(&mut self, e: &ast::Expr) -> Option<BodyValue> {
        match &e.kind {
            ExprKind::Null => Some(BodyValue::Null),
            ExprKind::Bool(b) => Some(BodyValue::Bool(*b)),
            ExprKind::Number(n) => Some(BodyValue::Number(n.clone())),
            ExprKind::List(items) => items
                .iter()
                .map(|a| self.body_value(&a.value))
                .collect::<Option<Vec<_>>>()
                .map(BodyValue::List),
            _ => {
                let secret = matches!(&e.kind, ExprKind::Call { name, .. } if name.name == "env");
                self.text(e, secret, "a body value").map(BodyValue::Text)
            }
        }
    }
}
