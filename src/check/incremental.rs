//! `incremental { cursor, param, order, start, format, lookback, resume }`: which field
//! grows, where the watermark goes in the request and how it is written, the first
//! watermark, how far back requests reach, and an opaque resume token (spec §5.2a).

use super::diagnostic::did_you_mean;
use super::expr::FieldInfo;
use super::{Code, Ctx, Incremental, Lit, Lookback, TimeFormat, Type};
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
            &[
                "cursor", "param", "order", "start", "format", "lookback", "resume",
            ],
            &format!("`incremental` of {owner}"),
        );
        let resume = match props.get("resume").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.pick(e, "`resume`").map(Some),
            Some(None) => None,
            None => Some(None),
        };
        if let (Some(stmt), None) = (props.get("resume"), props.get("param")) {
            self.error(
                Code::MissingProperty,
                format!("`incremental` of {owner} has `resume` but no `param`"),
                block_name.span,
                "`param` is required with `resume`",
            )
            .labels
            .push(super::Label {
                span: stmt.name.span,
                text: "the token needs a parameter".into(),
            });
        }
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
                    Some(f) => Some(Some(f.clone())),
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
            // A source that resumes from a token needs no cursor field.
            None if props.get("resume").is_some() => Some(None),
            None => {
                self.error(
                    Code::MissingProperty,
                    format!("`incremental` of {owner} has no `cursor`"),
                    block_name.span,
                    "`cursor` is required",
                )
                .help = Some(
                    "name the field that grows, like `cursor = updated_at`, or resume from a token: `resume = $.next_token`"
                        .into(),
                );
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
                match (lit, cursor_field.as_ref().and_then(|c| c.as_ref())) {
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
        let cursor_ty = cursor_field.as_ref().map(|c| c.as_ref().map(|f| f.ty));
        let format = match props.get("format").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.time_format(e, cursor_ty),
            Some(None) => None,
            None => Some(TimeFormat::Rfc3339),
        };
        let lookback = match props.get("lookback").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.lookback(e, cursor_ty).map(Some),
            Some(None) => None,
            None => Some(None),
        };
        let (cursor, param, newest_first, start) = (cursor_field?, param?, newest_first?, start?);
        Some(Incremental {
            cursor: cursor.map(|f| f.name),
            param,
            newest_first,
            start,
            format: format?,
            lookback: lookback?,
            resume: resume?,
        })
    }

    /// `format = "unix"`: how `param` carries a datetime watermark. `cursor` is the
    /// cursor's type: `None` when it could not be known (nothing more is said), `Some(None)`
    /// when there is no cursor field.
    fn time_format(&mut self, e: &ast::Expr, cursor: Option<Option<Type>>) -> Option<TimeFormat> {
        let ExprKind::Str(text) = &e.kind else {
            self.error(
                Code::InvalidValue,
                "`format` must be a string: \"rfc3339\", \"unix\", \"unix_ms\" or a strftime pattern",
                e.span,
                "expected a string",
            );
            return None;
        };
        let format = match text.as_str() {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            t if t.contains('%') => {
                if !self.strftime(t, e.span) {
                    return None;
                }
                TimeFormat::Strftime(t.to_string())
            }
            other => {
                let help = did_you_mean(other, ["rfc3339", "unix", "unix_ms"]);
                self.error(
                    Code::InvalidValue,
                    format!("unknown format \"{other}\""),
                    e.span,
                    "not a datetime format",
                )
                .help = help.or_else(|| {
                    Some("use \"rfc3339\", \"unix\", \"unix_ms\" or a strftime pattern like \"%Y-%m-%d\"".into())
                });
                return None;
            }
        };
        match cursor {
            Some(Some(Type::Datetime)) | None => Some(format),
            Some(ty) => {
                let what = ty.map_or("no cursor field".to_string(), |t| {
                    format!("a cursor of type {}", t.name())
                });
                self.error(
                    Code::TypeMismatch,
                    format!("`format` says how a datetime watermark is written, but this source has {what}"),
                    e.span,
                    "not a datetime cursor",
                )
                .help = Some("leave `format` out: the watermark is sent as it is".into());
                None
            }
        }
    }

    /// `lookback = 5m` for a datetime cursor, a number for a numeric one.
    fn lookback(&mut self, e: &ast::Expr, cursor: Option<Option<Type>>) -> Option<Lookback> {
        match (cursor, &e.kind) {
            (Some(Some(Type::Datetime)) | None, ExprKind::Duration(_)) => {
                self.duration(e, "`lookback`").map(Lookback::Millis)
            }
            (Some(Some(t)), ExprKind::Number(n)) if t.is_numeric() => {
                match n.parse::<rust_decimal::Decimal>() {
                    Ok(d) => Some(Lookback::Number(d)),
                    Err(_) => {
                        self.error(
                            Code::InvalidValue,
                            format!("number `{n}` is too large"),
                            e.span,
                            "too large",
                        );
                        None
                    }
                }
            }
            (None, ExprKind::Number(_)) => None,
            (Some(ty), _) => {
                let (want, help) = match ty {
                    Some(Type::Datetime) => ("a duration", "like `lookback = 5m`"),
                    Some(t) if t.is_numeric() => ("a number", "like `lookback = 100`"),
                    _ => (
                        "a datetime or numeric cursor",
                        "a cursor of this type has no distance to look back by",
                    ),
                };
                let what = ty.map_or("no cursor field".to_string(), |t| {
                    format!("a cursor of type {}", t.name())
                });
                self.error(
                    Code::TypeMismatch,
                    format!("`lookback` needs {want}; this source has {what}"),
                    e.span,
                    "does not fit the cursor",
                )
                .help = Some(help.into());
                None
            }
            (None, _) => {
                self.error(
                    Code::InvalidValue,
                    "`lookback` must be a duration or a number",
                    e.span,
                    "expected a duration or a number",
                );
                None
            }
        }
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
