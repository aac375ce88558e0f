//! Arithmetic (`+ - * /`, unary `-`) and the numeric reading of values: every operation
//! checked, so a result beyond what its type holds is "number out of range", never a
//! panic or an infinite float.

use crate::check::BinOp;
use crate::nodes::value::{brief_text, parse_decimal, quoted, Val};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value as Json;

pub(super) const OUT_OF_RANGE: &str = "number out of range";

/// The value as an exact decimal, or why it is not one.
pub(super) fn to_decimal(v: &Val) -> Result<Decimal, String> {
    match v {
        Val::Str(s) => {
            parse_decimal(s.trim()).ok_or_else(|| format!("string {} is not a number", quoted(s)))
        }
        Val::Json(Json::Number(n)) => Err(format!(
            "{} cannot be kept exactly: a decimal holds 28 or 29 significant digits and at most 28 after the point",
            brief_text(n)
        )),
        Val::Bool(_) | Val::Datetime(_) | Val::Json(_) | Val::Null => {
            Err(format!("{} is not a number", v.type_name()))
        }
        other => other.as_decimal().ok_or_else(|| OUT_OF_RANGE.to_string()),
    }
}

/// `-d`: flipping a decimal's sign bit cannot overflow, unlike an integer's.
pub(super) fn negate(mut d: Decimal) -> Decimal {
    d.set_sign_negative(!d.is_sign_negative());
    d
}

/// Strings that hold numbers or datetimes compare as such when the other side is one.
pub(super) fn coerce_pair(a: Val, b: Val) -> (Val, Val) {
    match (&a, &b) {
        (Val::Str(s), Val::Datetime(_)) => match DateTime::parse_from_rfc3339(s) {
            Ok(d) => (Val::Datetime(d.with_timezone(&Utc)), b),
            Err(_) => (a, b),
        },
        (Val::Datetime(_), Val::Str(_)) => {
            let (y, x) = coerce_pair(b, a);
            (x, y)
        }
        (Val::Str(s), Val::Int(_) | Val::Decimal(_) | Val::Float(_)) => {
            match parse_decimal(s.trim()) {
                Some(d) => (Val::Decimal(d), b),
                None => (a, b),
            }
        }
        (Val::Int(_) | Val::Decimal(_) | Val::Float(_), Val::Str(_)) => {
            let (y, x) = coerce_pair(b, a);
            (x, y)
        }
        _ => (a, b),
    }
}

/// `a op b` for `+ - * /`: ints while they fit, then exact decimals; floats when either
/// side is one (or a JSON number no decimal holds). Null in, null out.
pub(super) fn arithmetic(op: BinOp, a: Val, b: Val) -> Result<Val, String> {
    if a.is_null() || b.is_null() {
        return Ok(Val::Null);
    }
    if let (BinOp::Add, Val::Str(x), Val::Str(y)) = (op, &a, &b) {
        return Ok(Val::Str(format!("{x}{y}")));
    }
    if let (Val::Int(x), Val::Int(y)) = (&a, &b) {
        let r = match op {
            BinOp::Add => x.checked_add(*y),
            BinOp::Sub => x.checked_sub(*y),
            BinOp::Mul => x.checked_mul(*y),
            _ => None,
        };
        // An int result that does not fit an int is computed again as a decimal.
        if let Some(r) = r {
            return Ok(Val::Int(r));
        }
    }
    let float = |v: &Val| matches!(v, Val::Float(_) | Val::Json(Json::Number(_)));
    if float(&a) || float(&b) {
        return float_arithmetic(op, as_finite(&a)?, as_finite(&b)?).map(Val::Float);
    }
    let (x, y) = (to_decimal(&a)?, to_decimal(&b)?);
    let r = match op {
        BinOp::Add => x.checked_add(y),
        BinOp::Sub => x.checked_sub(y),
        BinOp::Mul => x.checked_mul(y),
        _ if y.is_zero() => return Err("division by zero".into()),
        _ => x.checked_div(y),
    };
    r.map(|d| Val::Decimal(normalize_if_long(d)))
        .ok_or_else(|| OUT_OF_RANGE.into())
}

/// A float operand: a JSON number like `1e400` reads as infinity, which is out of range.
fn as_finite(v: &Val) -> Result<f64, String> {
    match v.as_f64() {
        Some(f) if f.is_finite() => Ok(f),
        Some(_) => Err(OUT_OF_RANGE.into()),
        None => Err(format!("{} is not a number", v.type_name())),
    }
}

/// Float arithmetic whose result is finite: `1e308 * 10` is out of range, not infinity,
/// and `x / 0` is a division by zero, as it is for decimals.
fn float_arithmetic(op: BinOp, x: f64, y: f64) -> Result<f64, String> {
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        _ if y == 0.0 => return Err("division by zero".into()),
        _ => x / y,
    };
    if r.is_finite() {
        Ok(r)
    } else {
        Err(OUT_OF_RANGE.into())
    }
}

/// Division can leave 28 digits of scale; trailing zeros of such results are noise.
fn normalize_if_long(d: Decimal) -> Decimal {
    if d.scale() > 12 {
        d.normalize()
    } else {
        d
    }
}
