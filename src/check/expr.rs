//! Expressions: names resolved by scope (spec §2), types inferred and checked, and the
//! AST lowered to the span-free [`Expr`]; JSONPath is checked in `jsonpath.rs`, function
//! calls in `functions.rs`, and whether a value fits a field in `convert.rs`.

use super::diagnostic::did_you_mean;
use super::{Code, Ctx, Expr, Lit, Type};
use crate::syntax::ast::{self, BinaryOp, ExprKind, UnaryOp};
use crate::syntax::Span;
use rust_decimal::Decimal;
use std::str::FromStr;

/// A field that bare names may refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    pub name: String,
    pub ty: Type,
    pub optional: bool,
}

/// What a bare name or a `$` path means where an expression stands.
pub enum Scope<'a> {
    /// `fields` right-hand sides: `$` is the record item, `parent.x` a parent field.
    Record { parent: Parent<'a> },
    /// `where`, `key`, `incremental` and aggregate clauses: names are fields. When the
    /// fields are not all `known` (an earlier error hid some), an unknown name is not
    /// reported again.
    Fields {
        fields: &'a [FieldInfo],
        owner: &'a str,
        known: bool,
    },
    /// `query` and `body` values: the only name is `watermark`, typed as the cursor
    /// (`None`: the source has no `incremental`).
    Request {
        watermark: Option<ETy>,
        owner: &'a str,
    },
}

/// The parent record that `parent.x` reads in a `fields` block.
#[derive(Clone, Copy)]
pub enum Parent<'a> {
    /// Not a child source: `parent` is out of scope.
    None,
    /// A child source whose parent's fields are not known because of an earlier error:
    /// any `parent.x` is accepted, untyped.
    Unknown,
    Known(&'a str, &'a [FieldInfo]),
}

/// The static type of an expression; `Any` is a JSON value not known until run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ETy {
    Any,
    Null,
    Known(Type),
}

impl ETy {
    pub fn describe(self) -> &'static str {
        match self {
            ETy::Any => "any",
            ETy::Null => "null",
            ETy::Known(t) => t.name(),
        }
    }
    pub(super) fn numeric(self) -> bool {
        matches!(self, ETy::Any | ETy::Null) || matches!(self, ETy::Known(t) if t.is_numeric())
    }
    pub(super) fn is(self, t: Type) -> bool {
        matches!(self, ETy::Any | ETy::Null) || self == ETy::Known(t)
    }
}

impl<'e> Ctx<'e> {
    /// Lowers an expression, inferring its type. `None` means an error was reported.
    pub fn lower(&mut self, e: &ast::Expr, scope: &Scope) -> Option<(Expr, ETy)> {
        match &e.kind {
            ExprKind::Str(s) => Some((Expr::Lit(Lit::Str(s.clone())), ETy::Known(Type::String))),
            ExprKind::Number(n) => self.number(n, e.span),
            ExprKind::Bool(b) => Some((Expr::Lit(Lit::Bool(*b)), ETy::Known(Type::Bool))),
            ExprKind::Null => Some((Expr::Lit(Lit::Null), ETy::Null)),
            ExprKind::Duration(_) | ExprKind::Rate(_) => {
                self.error(
                    Code::TypeError,
                    "durations and rates are not values of a record",
                    e.span,
                    "not allowed here",
                );
                None
            }
            ExprKind::Object(_) => {
                self.error(
                    Code::TypeError,
                    "an object is not allowed in an expression",
                    e.span,
                    "not allowed here",
                )
                .help = Some("objects `{ name = value }` are values of a `body`".into());
                None
            }
            ExprKind::List(_) => {
                self.error(
                    Code::TypeError,
                    "a list is not allowed in an expression",
                    e.span,
                    "not allowed here",
                );
                None
            }
            ExprKind::Path(text) => {
                if let Scope::Request { .. } = scope {
                    self.error(
                        Code::OutOfScope,
                        "a `$` path cannot be used in a `query` or `body` value",
                        e.span,
                        "no response yet",
                    )
                    .help = Some(
                        "a request is built before its answer: use constants, `env(...)` or `watermark`; a paginator puts values from a response into the next request"
                            .into(),
                    );
                    return None;
                }
                if let Scope::Fields { owner, .. } = scope {
                    self.error(
                        Code::OutOfScope,
                        format!("a `$` path cannot be used in {owner}"),
                        e.span,
                        "no JSON record here",
                    )
                    .help = Some(
                        "refer to the source's fields by name; paths belong in `fields`".into(),
                    );
                    return None;
                }
                let path = self.json_path(text, e.span)?;
                let ty = if path.singular.is_some() {
                    ETy::Any
                } else {
                    ETy::Known(Type::Json)
                };
                Some((Expr::Path(path), ty))
            }
            ExprKind::Name(parts) => self.name(parts, e.span, scope),
            ExprKind::Call { name, args } => self.call(name, args, e.span, scope),
            ExprKind::Unary(op, inner) => {
                let (x, t) = self.lower(inner, scope)?;
                match op {
                    UnaryOp::Neg if t.numeric() => Some((Expr::Neg(Box::new(x)), t)),
                    UnaryOp::Not if t.is(Type::Bool) => {
                        Some((Expr::Not(Box::new(x)), ETy::Known(Type::Bool)))
                    }
                    _ => {
                        let want = if *op == UnaryOp::Neg {
                            "a number"
                        } else {
                            "a bool"
                        };
                        self.error(
                            Code::TypeError,
                            format!("expected {want}, found {}", t.describe()),
                            inner.span,
                            format!("this is {}", t.describe()),
                        );
                        None
                    }
                }
            }
            ExprKind::Binary(op, l, r) => {
                let lhs = self.lower(l, scope);
                let rhs = self.lower(r, scope);
                let ((lx, lt), (rx, rt)) = (lhs?, rhs?);
                let ty = self.binary_type(*op, lt, rt, l.span, r.span)?;
                Some((Expr::Binary(*op, Box::new(lx), Box::new(rx)), ty))
            }
        }
    }

    fn number(&mut self, n: &str, span: Span) -> Option<(Expr, ETy)> {
        if !n.contains('.') {
            if let Ok(v) = n.parse::<i64>() {
                return Some((Expr::Lit(Lit::Int(v)), ETy::Known(Type::Int)));
            }
        }
        match Decimal::from_str(n) {
            Ok(d) => Some((Expr::Lit(Lit::Decimal(d)), ETy::Known(Type::Decimal))),
            Err(_) => {
                self.error(
                    Code::InvalidValue,
                    format!("number `{n}` is too large"),
                    span,
                    "too large",
                );
                None
            }
        }
    }

    fn name(&mut self, parts: &[ast::Ident], span: Span, scope: &Scope) -> Option<(Expr, ETy)> {
        match scope {
            Scope::Record { parent } => {
                if parts[0].name == "parent" {
                    let (parent_name, fields) = match *parent {
                        Parent::Known(name, fields) => (name, fields),
                        Parent::Unknown => {
                            let field = parts.get(1).map_or("", |f| f.name.as_str());
                            return Some((Expr::Parent(field.to_string()), ETy::Any));
                        }
                        Parent::None => {
                            self.error(
                                Code::OutOfScope,
                                "`parent` exists only in a child source (one with `for_each`)",
                                parts[0].span,
                                "no parent here",
                            );
                            return None;
                        }
                    };
                    let Some(field) = parts.get(1) else {
                        self.error(
                            Code::UnknownField,
                            "name one of the parent's fields: `parent.id`",
                            span,
                            "which field?",
                        );
                        return None;
                    };
                    return match fields.iter().find(|f| f.name == field.name) {
                        Some(f) if parts.len() == 2 => {
                            Some((Expr::Parent(f.name.clone()), ETy::Known(f.ty)))
                        }
                        Some(_) => {
                            self.error(
                                Code::UnknownField,
                                "a parent field has no parts",
                                span,
                                "too many parts",
                            );
                            None
                        }
                        None => {
                            let help =
                                did_you_mean(&field.name, fields.iter().map(|f| f.name.as_str()));
                            self.error(
                                Code::UnknownField,
                                format!(
                                    "parent source `{parent_name}` has no field `{}`",
                                    field.name
                                ),
                                field.span,
                                "not a parent field",
                            )
                            .help = help;
                            None
                        }
                    };
                }
                self.error(
                    Code::UnknownField,
                    format!("`{}` is not known here", parts[0].name),
                    span,
                    "unknown name",
                )
                .help = Some(format!(
                    "to read the record, write a path: `$.{}`",
                    parts[0].name
                ));
                None
            }
            Scope::Request { watermark, owner } => {
                if parts.len() == 1 && parts[0].name == super::WATERMARK {
                    return match watermark {
                        Some(t) => Some((Expr::Field(super::WATERMARK.into()), *t)),
                        None => {
                            self.error(
                                Code::OutOfScope,
                                format!(
                                    "`watermark` is used in {owner}, which has no `incremental`"
                                ),
                                span,
                                "no watermark here",
                            )
                            .help = Some(
                                "add `incremental { cursor = FIELD }` to keep a watermark".into(),
                            );
                            None
                        }
                    };
                }
                self.error(
                    Code::UnknownField,
                    format!("`{}` is not known in a request value", parts[0].name),
                    span,
                    "unknown name",
                )
                .help = Some(
                    "`query` and `body` values are constants, `env(...)`, or expressions of `watermark`"
                        .into(),
                );
                None
            }
            Scope::Fields {
                fields,
                owner,
                known,
            } => {
                if !known && !fields.iter().any(|f| f.name == parts[0].name) {
                    return Some((Expr::Field(parts[0].name.clone()), ETy::Any));
                }
                if parts.len() > 1 {
                    self.error(
                        Code::UnknownField,
                        format!("fields have no parts in {owner}"),
                        span,
                        "dotted name",
                    );
                    return None;
                }
                match fields.iter().find(|f| f.name == parts[0].name) {
                    Some(f) => Some((Expr::Field(f.name.clone()), ETy::Known(f.ty))),
                    None => {
                        let help =
                            did_you_mean(&parts[0].name, fields.iter().map(|f| f.name.as_str()));
                        self.error(
                            Code::UnknownField,
                            format!("{owner} has no field `{}`", parts[0].name),
                            parts[0].span,
                            "unknown field",
                        )
                        .help = help;
                        None
                    }
                }
            }
        }
    }

    fn binary_type(&mut self, op: BinaryOp, lt: ETy, rt: ETy, ls: Span, rs: Span) -> Option<ETy> {
        use ETy::*;
        // One label on each operand: a label on the whole expression too would cover
        // both and make the picture hard to read.
        let mismatch = |ctx: &mut Self, what: String| {
            ctx.error(
                Code::TypeError,
                what,
                ls,
                format!("this is {}", lt.describe()),
            )
            .labels
            .push(super::Label {
                span: rs,
                text: format!("this is {}", rt.describe()),
            });
        };
        match op {
            BinaryOp::And | BinaryOp::Or => {
                if lt.is(Type::Bool) && rt.is(Type::Bool) {
                    Some(Known(Type::Bool))
                } else {
                    mismatch(
                        self,
                        format!(
                            "`{}` joins bools, not {} and {}",
                            op.symbol(),
                            lt.describe(),
                            rt.describe()
                        ),
                    );
                    None
                }
            }
            BinaryOp::Coalesce => Some(match (lt, rt) {
                (Known(t), _) | (_, Known(t)) => Known(t),
                _ => Any,
            }),
            op if op.is_comparison() => {
                let ok = match (lt, rt) {
                    (Any | Null, _) | (_, Any | Null) => true,
                    (Known(a), Known(b)) => a == b || (a.is_numeric() && b.is_numeric()),
                };
                if ok {
                    Some(Known(Type::Bool))
                } else {
                    mismatch(
                        self,
                        format!("cannot compare {} with {}", lt.describe(), rt.describe()),
                    );
                    None
                }
            }
            BinaryOp::Add if lt == Known(Type::String) || rt == Known(Type::String) => {
                if lt.is(Type::String) && rt.is(Type::String) {
                    Some(Known(Type::String))
                } else {
                    mismatch(
                        self,
                        format!("cannot add {} and {}", lt.describe(), rt.describe()),
                    );
                    None
                }
            }
            _ => {
                if !(lt.numeric() && rt.numeric()) {
                    mismatch(
                        self,
                        format!(
                            "`{}` needs numbers, found {} and {}",
                            op.symbol(),
                            lt.describe(),
                            rt.describe()
                        ),
                    );
                    return None;
                }
                Some(match (lt, rt) {
                    (Known(Type::Float), _) | (_, Known(Type::Float)) => Known(Type::Float),
                    (Known(Type::Decimal), _) | (_, Known(Type::Decimal)) => Known(Type::Decimal),
                    (Known(Type::Int), Known(Type::Int)) if op == BinaryOp::Div => {
                        Known(Type::Decimal)
                    }
                    (Known(Type::Int), Known(Type::Int)) => Known(Type::Int),
                    (Known(t), _) | (_, Known(t)) if op != BinaryOp::Div => Known(t),
                    _ => Known(Type::Decimal),
                })
            }
        }
    }
}
