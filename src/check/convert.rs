//! Whether a value can fill a field of a type: the conversion rules of spec §4 applied
//! to the static types and literals the checker sees.

use super::expr::ETy;
use super::{Code, Ctx, Type};
use crate::syntax::ast::{self, ExprKind, UnaryOp};
use rust_decimal::Decimal;
use std::str::FromStr;

impl<'e> Ctx<'e> {
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
