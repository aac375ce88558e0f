//! Expressions: names resolved by scope (spec §2), types inferred and checked, and the
//! AST lowered to the span-free [`Expr`]; JSONPath is checked in `jsonpath.rs`.

use super::diagnostic::did_you_mean;
use super::{Code, Ctx, Expr, Func, Lit, Type};
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
    fn numeric(self) -> bool {
        matches!(self, ETy::Any | ETy::Null) || matches!(self, ETy::Known(t) if t.is_numeric())
    }
    fn is(self, t: Type) -> bool {
        matches!(self, ETy::Any | ETy::Null) || self == ETy::Known(t)
    }
}

pub const FUNCTIONS: &[(&str, Func, usize, usize)] = &[
    ("lower", Func::Lower, 1, 1),
    ("upper", Func::Upper, 1, 1),
    ("trim", Func::Trim, 1, 1),
    ("concat", Func::Concat, 1, 64),
    ("coalesce", Func::Coalesce, 1, 64),
    ("to_string", Func::ToString, 1, 1),
    ("to_int", Func::ToInt, 1, 1),
    ("to_float", Func::ToFloat, 1, 1),
    ("to_decimal", Func::ToDecimal, 1, 1),
    ("parse_datetime", Func::ParseDatetime, 2, 2),
    ("from_unix", Func::FromUnix, 1, 1),
    ("from_unix_ms", Func::FromUnixMs, 1, 1),
    ("now", Func::Now, 0, 0),
    ("day", Func::Day, 1, 1),
    ("hour", Func::Hour, 1, 1),
    ("month", Func::Month, 1, 1),
    ("year", Func::Year, 1, 1),
    ("round", Func::Round, 1, 2),
    ("abs", Func::Abs, 1, 1),
    ("length", Func::Length, 1, 1),
];

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

    fn call(
        &mut self,
        name: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        scope: &Scope,
    ) -> Option<(Expr, ETy)> {
        if name.name == "env" {
            let t = self.text(
                &ast::Expr {
                    kind: ExprKind::Call {
                        name: name.clone(),
                        args: args.to_vec(),
                    },
                    span,
                },
                false,
                "`env`",
            )?;
            return Some((Expr::Lit(Lit::Str(t.value)), ETy::Known(Type::String)));
        }
        let Some(&(fname, func, min, max)) = FUNCTIONS.iter().find(|(n, ..)| *n == name.name)
        else {
            let help = did_you_mean(&name.name, FUNCTIONS.iter().map(|(n, ..)| *n));
            self.error(
                Code::UnknownFunction,
                format!("unknown function `{}`", name.name),
                name.span,
                "unknown function",
            )
            .help = help;
            // Still check the arguments, for their own errors.
            for a in args {
                let _ = self.lower(&a.value, scope);
            }
            return None;
        };
        if let Some(n) = args.iter().find_map(|a| a.name.as_ref()) {
            self.error(
                Code::UnknownArgument,
                format!("`{fname}` takes no named arguments"),
                n.span,
                "named argument",
            );
            return None;
        }
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            self.error(
                Code::MissingArgument,
                format!(
                    "`{fname}` takes {want} argument{}, found {}",
                    if max == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
                "wrong number of arguments",
            );
            return None;
        }
        let mut lowered = Vec::new();
        let mut types = Vec::new();
        let mut ok = true;
        for a in args {
            match self.lower(&a.value, scope) {
                Some((x, t)) => {
                    lowered.push(x);
                    types.push(t);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let arg_error = |ctx: &mut Self, i: usize, want: &str| {
            ctx.error(
                Code::TypeError,
                format!("`{fname}` expects {want}, found {}", types[i].describe()),
                args[i].value.span,
                format!("this is {}", types[i].describe()),
            );
        };
        let ty = match func {
            Func::Lower | Func::Upper | Func::Trim => {
                if !types[0].is(Type::String) {
                    arg_error(self, 0, "a string");
                    return None;
                }
                ETy::Known(Type::String)
            }
            Func::Concat | Func::ToString => ETy::Known(Type::String),
            Func::Coalesce => types
                .iter()
                .copied()
                .find(|t| matches!(t, ETy::Known(_)))
                .unwrap_or(ETy::Any),
            Func::ToInt => ETy::Known(Type::Int),
            Func::ToFloat => ETy::Known(Type::Float),
            Func::ToDecimal => ETy::Known(Type::Decimal),
            Func::ParseDatetime => {
                match &args[1].value.kind {
                    ExprKind::Str(fmt) => {
                        let bad = chrono::format::StrftimeItems::new(fmt)
                            .any(|i| matches!(i, chrono::format::Item::Error));
                        if bad {
                            self.error(
                                Code::InvalidValue,
                                format!("invalid datetime format `{fmt}`"),
                                args[1].value.span,
                                "bad format",
                            )
                            .help = Some(
                                "use strftime codes, for example \"%Y-%m-%d %H:%M:%S\"".into(),
                            );
                            return None;
                        }
                    }
                    _ => {
                        self.error(
                            Code::InvalidValue,
                            "the format of `parse_datetime` must be a string literal",
                            args[1].value.span,
                            "expected a string",
                        );
                        return None;
                    }
                }
                ETy::Known(Type::Datetime)
            }
            Func::FromUnix | Func::FromUnixMs => {
                if !(types[0].numeric() || types[0] == ETy::Known(Type::String)) {
                    arg_error(self, 0, "a number");
                    return None;
                }
                ETy::Known(Type::Datetime)
            }
            Func::Now => ETy::Known(Type::Datetime),
            Func::Day | Func::Hour | Func::Month | Func::Year => {
                if !types[0].is(Type::Datetime) && types[0] != ETy::Known(Type::String) {
                    arg_error(self, 0, "a datetime");
                    return None;
                }
                ETy::Known(Type::String)
            }
            Func::Round | Func::Abs => {
                if !types[0].numeric() {
                    arg_error(self, 0, "a number");
                    return None;
                }
                if types.len() == 2 && !types[1].is(Type::Int) {
                    arg_error(self, 1, "a whole number of places");
                    return None;
                }
                match types[0] {
                    ETy::Known(t) => ETy::Known(t),
                    _ => ETy::Known(Type::Decimal),
                }
            }
            Func::Length => ETy::Known(Type::Int),
        };
        Some((Expr::Call(func, lowered), ty))
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

    /// Whether a value of type `from` can fill a field of type `to`; literal strings are
    /// also tried against the conversion rules of spec §4.
    pub fn check_assignable(
        &mut self,
        field: &str,
        to: Type,
        optional: bool,
        value: &ast::Expr,
        from: ETy,
    ) -> bool {
        let literal = match &value.kind {
            ExprKind::Str(s) => Some(s.as_str()),
            _ => None,
        };
        let number = number_literal(value);
        let ok = match (from, to) {
            (ETy::Null, _) => optional,
            (ETy::Any, _) | (_, Type::Json) => true,
            (ETy::Known(Type::Json), _) => false,
            (ETy::Known(f), t) if f == t => true,
            (ETy::Known(f), Type::String) => f != Type::Json,
            (ETy::Known(Type::String), t) => match literal {
                Some(s) => convertible_literal(s, t),
                None => true,
            },
            (ETy::Known(f), t) if f.is_numeric() && t.is_numeric() => {
                number.as_ref().is_none_or(|(_, d)| number_converts(*d, t))
            }
            _ => false,
        };
        if !ok {
            let (msg, label, help) = match (from, literal) {
                (ETy::Null, _) => (format!("field `{field}` is a required {}, but is given null", to.name()), "null".to_string(), Some(format!("make it optional in the model: `{}?`", to.name()))),
                (ETy::Known(Type::Json), _) if !matches!(value.kind, ExprKind::Path(_)) => (format!("field `{field}` is {}, but this gives a JSON value", to.name()), "json".to_string(), None),
                (ETy::Known(Type::Json), _) => (
                    format!("field `{field}` is {}, but this path may select many values", to.name()),
                    "not a singular path".to_string(),
                    Some("use a path of names and indexes only (like `$.a.b[0]`), or make the field `json`".into()),
                ),
                (_, Some(s)) => (format!("field `{field}` is {}, but \"{s}\" does not convert to {}", to.name(), to.name()), "does not convert".to_string(), None),
                (ETy::Known(_), None) if number.is_some() => (
                    format!("field `{field}` is {}, but {} does not convert to {}", to.name(), number.as_ref().map_or("", |(text, _)| text.as_str()), to.name()),
                    "does not convert".to_string(),
                    Some(INT_RANGE.into()),
                ),
                (t, None) => (format!("field `{field}` is {}, but this is {}", to.name(), t.describe()), format!("this is {}", t.describe()), None),
            };
            let code = if from == ETy::Known(Type::Json) && matches!(value.kind, ExprKind::Path(_))
            {
                Code::NotSingular
            } else {
                Code::TypeMismatch
            };
            self.error(code, msg, value.span, label).help = help;
        }
        ok
    }
}

/// What an `int` holds, for the help of a number that does not convert to one.
pub const INT_RANGE: &str =
    "an int is a whole number from -9223372036854775808 to 9223372036854775807";

/// A number literal, possibly negated (`2.5`, `-3`): its text and value. `None` for
/// anything else, and for a number too large to hold (reported where it is lowered).
pub fn number_literal(e: &ast::Expr) -> Option<(String, Decimal)> {
    match &e.kind {
        ExprKind::Number(n) => Some((n.clone(), Decimal::from_str(n).ok()?)),
        ExprKind::Unary(UnaryOp::Neg, x) => {
            let (text, d) = number_literal(x)?;
            Some((format!("-{text}"), -d))
        }
        _ => None,
    }
}

/// Whether a number converts to a type as spec §4 says (an `int` must be whole and in
/// range, as at run time).
pub fn number_converts(d: Decimal, to: Type) -> bool {
    use rust_decimal::prelude::ToPrimitive;
    match to {
        Type::Int => d.fract().is_zero() && d.to_i64().is_some(),
        Type::Float | Type::Decimal | Type::String | Type::Json => true,
        Type::Bool | Type::Datetime => false,
    }
}

/// Whether a string literal converts to a type (spec §4).
pub fn convertible_literal(s: &str, to: Type) -> bool {
    match to {
        Type::String | Type::Json => true,
        Type::Int => s.trim().parse::<i64>().is_ok(),
        Type::Float => s.trim().parse::<f64>().is_ok(),
        Type::Decimal => {
            Decimal::from_str(s.trim()).is_ok() || Decimal::from_scientific(s.trim()).is_ok()
        }
        Type::Bool => s == "true" || s == "false",
        Type::Datetime => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
    }
}
