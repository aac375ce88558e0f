//! `incremental { cursor, param, order, start }`: which field grows, where the
//! watermark goes in the request, and the first watermark.

use super::diagnostic::did_you_mean;
use super::expr::FieldInfo;
use super::{Code, Ctx, Incremental, Lit, Type};
use crate::syntax::ast::{self, ExprKind};

impl<'e> Ctx<'e> {
    pub(super) fn incremental(
        &mut self,
        block: &ast::Block,
        block_name: &ast::PropName,
        fields: &[FieldInfo],
        owner: &str,
    ) -> Option<Incremental> {
        let props = self.props(
            block,
            &["cursor", "param", "order", "start"],
            &format!("`incremental` of {owner}"),
        );
        let cursor_field = match props.get("cursor") {
            Some(stmt) => {
                let ident = self
                    .stmt_expr(stmt)
                    .and_then(|e| self.bare_name(e, "`cursor`"));
                ident.and_then(|ident| match fields.iter().find(|f| f.name == ident.name) {
                    Some(f) if f.optional => {
                        self.error(
                            Code::InvalidCursor,
                            format!("cursor field `{}` is optional", f.name),
                            ident.span,
                            "may be null",
                        )
                        .help =
                            Some("a cursor must always be there: make the field required".into());
                        None
                    }
                    Some(f) if matches!(f.ty, Type::Json | Type::Bool) => {
                        self.error(
                            Code::InvalidCursor,
                            format!(
                                "cursor field `{}` is {}, which has no order",
                                f.name,
                                f.ty.name()
                            ),
                            ident.span,
                            "not orderable",
                        );
                        None
                    }
                    Some(f) => Some(f.clone()),
                    None => {
                        let help =
                            did_you_mean(&ident.name, fields.iter().map(|f| f.name.as_str()));
                        self.error(
                            Code::InvalidCursor,
                            format!("{owner} has no field `{}` for its cursor", ident.name),
                            ident.span,
                            "unknown field",
                        )
                        .help = help;
                        None
                    }
                })
            }
            None => {
                self.error(
                    Code::MissingProperty,
                    format!("`incremental` of {owner} has no `cursor`"),
                    block_name.span,
                    "`cursor` is required",
                )
                .help = Some("name the field that grows, like `cursor = updated_at`".into());
                None
            }
        };
        let param = match props.get("param").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.text(e, false, "`param`").map(|t| Some(t.value)),
            Some(None) => None,
            None => Some(None),
        };
        let newest_first = match props.get("order").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => match self.bare_name(e, "`order`").map(|n| n.name.as_str()) {
                Some("newest_first") => Some(true),
                Some("oldest_first") => Some(false),
                Some(other) => {
                    let help = did_you_mean(other, ["newest_first", "oldest_first"]);
                    self.error(
                        Code::InvalidValue,
                        format!("unknown order `{other}`"),
                        e.span,
                        "expected `newest_first` or `oldest_first`",
                    )
                    .help = help;
                    None
                }
                None => None,
            },
            Some(None) => None,
            None => Some(false),
        };
        let start = match props.get("start").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => {
                let lit = match &e.kind {
                    ExprKind::Str(s) => Some(Lit::Str(s.clone())),
                    ExprKind::Number(n) => n
                        .parse::<i64>()
                        .ok()
                        .map(Lit::Int)
                        .or_else(|| n.parse().ok().map(Lit::Decimal)),
                    _ => None,
                };
                match (lit, &cursor_field) {
                    (Some(l), Some(f)) if !start_converts(&l, f.ty) => {
                        let shown = match (&l, &e.kind) {
                            (Lit::Str(s), _) => format!("\"{s}\""),
                            (_, ExprKind::Number(n)) => n.clone(),
                            _ => String::new(),
                        };
                        let help = match f.ty {
                            Type::Datetime => Some(
                                "a datetime cursor starts at an RFC 3339 string, like \
                                 `\"2024-01-01T00:00:00Z\"`"
                                    .to_string(),
                            ),
                            Type::Int => Some(super::convert::INT_RANGE.to_string()),
                            _ => None,
                        };
                        self.error(
                            Code::TypeMismatch,
                            format!(
                                "`start` {shown} does not convert to the cursor's type {}",
                                f.ty.name()
                            ),
                            e.span,
                            "does not convert",
                        )
                        .help = help;
                        None
                    }
                    (Some(l), _) => Some(Some(l)),
                    (None, _) => {
                        self.error(
                            Code::InvalidValue,
                            "`start` must be a string or a number",
                            e.span,
                            "expected a literal",
                        );
                        None
                    }
                }
            }
            Some(None) => None,
            None => Some(None),
        };
        let (cursor, param, newest_first, start) = (cursor_field?, param?, newest_first?, start?);
        Some(Incremental {
            cursor: cursor.name,
            param,
            newest_first,
            start,
        })
    }
}

/// Whether a `start` literal converts to the cursor field's type (spec §4), as the
/// first watermark must.
fn start_converts(l: &Lit, ty: Type) -> bool {
    use super::convert::{convertible_literal, number_converts};
    match l {
        Lit::Str(s) => convertible_literal(s, ty),
        Lit::Int(i) => number_converts((*i).into(), ty),
        Lit::Decimal(d) => number_converts(*d, ty),
        Lit::Null | Lit::Bool(_) => false,
    }
}
