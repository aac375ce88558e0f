//! Numerals from an API read exactly: a JSON number as the narrowest exact value, and
//! a decimal only when it holds the number without rounding. Exponents may be any size
//! (`1e9223372036854775807`), so magnitudes are counted with checked arithmetic.

use super::Val;
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::str::FromStr;

/// A JSON number as the narrowest exact value: an int, else an exact decimal, else the
/// number itself (its text kept), which arithmetic treats as a float and a `decimal`
/// field refuses rather than rounding it.
pub fn number_val(n: &serde_json::Number) -> Val {
    if let Some(i) = n.as_i64() {
        return Val::Int(i);
    }
    match parse_decimal(&n.to_string()) {
        Some(d) => Val::Decimal(d),
        None => Val::Json(Json::Number(n.clone())),
    }
}

/// [`number_val`] of a number's JSON text (serde_json keeps a number as its text, so
/// `as_i64` and `to_string` above read exactly this); text that is not a number is null.
pub fn number_text_val(text: &str) -> Val {
    if let Ok(i) = text.parse::<i64>() {
        return Val::Int(i);
    }
    match parse_decimal(text) {
        Some(d) => Val::Decimal(d),
        None => text
            .parse::<serde_json::Number>()
            .map_or(Val::Null, |n| Val::Json(Json::Number(n))),
    }
}

/// `12.50`, `-3`, `1e3`: the decimal that holds exactly this number, or `None` when a
/// decimal cannot (more than 28 significant digits, or out of range): never rounded.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.is_empty() {
        return None;
    }
    let d = match Decimal::from_str_exact(s) {
        Ok(d) => d,
        // Rounded, or written with an exponent: keep it only when nothing was lost.
        Err(_) => Decimal::from_str(s)
            .or_else(|_| Decimal::from_scientific(s))
            .ok()
            .filter(|d| same_number(s, &d.to_string()))?,
    };
    Some(d)
}

/// Whether two decimal numerals (`-1.50`, `15e-1`) name the same number: compares their
/// sign, significant digits and magnitude as text, so nothing is rounded on the way.
pub(super) fn same_number(a: &str, b: &str) -> bool {
    let a = digits_of(a);
    a.is_some() && a == digits_of(b)
}

/// (negative, significant digits, exponent of the first digit) of a numeral; `None` when
/// it is not one, or its exponent is beyond any `i64` (`1e9223372036854775807`).
pub(super) fn digits_of(s: &str) -> Option<(bool, String, i64)> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((mantissa, exp)) => (mantissa, exp.parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0').to_string();
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    // The first significant digit stands `int.len() - lead` places left of the point.
    let lead = all.len().checked_sub(significant.len())?;
    let first = i64::try_from(int.len())
        .ok()?
        .checked_sub(i64::try_from(lead).ok()?)?;
    Some((neg, digits, exp.checked_add(first)?))
}
