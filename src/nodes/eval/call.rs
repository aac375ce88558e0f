//! The functions of spec §2 (and the extensions `to_float year round abs length`) on
//! values from an API: a value a function cannot take is an `Err` with the reason,
//! never a panic, and a timestamp beyond chrono's ±262,143 years is "timestamp out of
//! range".

use super::arith::{to_decimal, OUT_OF_RANGE};
use super::{Compiled, Env};
use crate::check::{Func, Type};
use crate::nodes::value::{quoted, Val};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde_json::Value as Json;

const TIMESTAMP_OUT_OF_RANGE: &str = "timestamp out of range";

/// The most places `round` keeps: all a decimal holds.
const MAX_PLACES: i64 = 28;

pub(super) fn call(f: Func, args: &[Compiled], env: &Env) -> Result<Val, String> {
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(a.eval(env)?);
    }
    let text = |v: &Val| -> Option<String> {
        match v {
            Val::Null => None,
            Val::Json(Json::Null) => None,
            other => Some(other.to_text()),
        }
    };
    let first = vals.first().cloned().unwrap_or(Val::Null);
    Ok(match f {
        Func::Lower => text(&first).map_or(Val::Null, |s| Val::Str(s.to_lowercase())),
        Func::Upper => text(&first).map_or(Val::Null, |s| Val::Str(s.to_uppercase())),
        Func::Trim => text(&first).map_or(Val::Null, |s| Val::Str(s.trim().to_string())),
        Func::Concat => Val::Str(vals.iter().filter_map(text).collect()),
        Func::Coalesce => vals.into_iter().find(|v| !v.is_null()).unwrap_or(Val::Null),
        Func::ToString => text(&first).map_or(Val::Null, Val::Str),
        Func::ToInt => match first {
            Val::Null => Val::Null,
            v => match v.clone().convert(Type::Int) {
                Ok(i) => i,
                Err(_) => Val::Int(whole(&v)?),
            },
        },
        Func::ToFloat => match first {
            Val::Null => Val::Null,
            v => v.convert(Type::Float)?,
        },
        Func::ToDecimal => match first {
            Val::Null => Val::Null,
            v => Val::Decimal(to_decimal(&v)?),
        },
        Func::ParseDatetime => {
            let (Some(s), Some(fmt)) = (text(&first), vals.get(1).and_then(text)) else {
                return Ok(Val::Null);
            };
            parse_datetime(&s, &fmt)?
        }
        Func::FromUnix | Func::FromUnixMs if first.is_null() => Val::Null,
        Func::FromUnix => from_unix(&first, 1000)?,
        Func::FromUnixMs => from_unix(&first, 1)?,
        Func::Now => Val::Datetime(Utc::now()),
        Func::Day | Func::Hour | Func::Month | Func::Year => {
            let Some(dt) = datetime(first)? else {
                return Ok(Val::Null);
            };
            let fmt = match f {
                Func::Day => "%Y-%m-%d",
                Func::Hour => "%Y-%m-%dT%H",
                Func::Month => "%Y-%m",
                _ => "%Y",
            };
            Val::Str(dt.format(fmt).to_string())
        }
        Func::Round => {
            if first.is_null() {
                return Ok(Val::Null);
            }
            let places = match vals.get(1) {
                Some(Val::Int(p)) => u32::try_from((*p).clamp(0, MAX_PLACES)).unwrap_or(0),
                _ => 0,
            };
            Val::Decimal(to_decimal(&first)?.round_dp(places))
        }
        Func::Abs => match first {
            Val::Int(i) => Val::Int(i.checked_abs().ok_or(OUT_OF_RANGE)?),
            Val::Float(x) => Val::Float(x.abs()),
            Val::Null => Val::Null,
            other => Val::Decimal(to_decimal(&other)?.abs()),
        },
        Func::Unix | Func::UnixMs => {
            let ms_per_unit = if f == Func::Unix { 1000 } else { 1 };
            match first {
                Val::Null => Val::Null,
                Val::Datetime(d) => Val::Int(epoch(d, ms_per_unit)),
                Val::Str(s) => match DateTime::parse_from_rfc3339(&s) {
                    Ok(d) => Val::Int(epoch(d.with_timezone(&Utc), ms_per_unit)),
                    Err(_) => Val::Int(whole(&Val::Str(s))?),
                },
                // A number is taken as already counted in the unit asked for.
                other => Val::Int(whole(&other)?),
            }
        }
        Func::FormatDatetime => {
            let Some(dt) = datetime(first)? else {
                return Ok(Val::Null);
            };
            let Some(fmt) = vals.get(1).and_then(text) else {
                return Ok(Val::Null);
            };
            let mut out = String::new();
            // A pattern chrono cannot write is an error, never a panic (checked
            // patterns are literals, validated by the checker).
            std::fmt::Write::write_fmt(&mut out, format_args!("{}", dt.format(&fmt)))
                .map_err(|_| format!("cannot format a datetime with {}", quoted(&fmt)))?;
            Val::Str(out)
        }
        Func::Length => match first {
            Val::Str(s) => count(s.chars().count())?,
            Val::Json(Json::Array(a)) => count(a.len())?,
            Val::Json(Json::Object(o)) => count(o.len())?,
            Val::Null => Val::Null,
            other => count(other.to_text().chars().count())?,
        },
    })
}

/// A datetime as whole seconds (`ms_per_unit` 1000) or milliseconds (1) since 1970.
/// A datetime argument: a datetime, or a string in RFC 3339; `None` for null.
fn datetime(v: Val) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        Val::Datetime(d) => Ok(Some(d)),
        Val::Str(s) => DateTime::parse_from_rfc3339(&s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| format!("string {} is not a datetime", quoted(&s))),
        Val::Null => Ok(None),
        other => Err(format!("{} is not a datetime", other.type_name())),
    }
}

fn epoch(d: DateTime<Utc>, ms_per_unit: i64) -> i64 {
    d.timestamp_millis()
        .checked_div_euclid(ms_per_unit)
        .unwrap_or_default()
}

/// A length as an int.
fn count(n: usize) -> Result<Val, String> {
    i64::try_from(n)
        .map(Val::Int)
        .map_err(|_| OUT_OF_RANGE.into())
}

/// `to_int` of what is not already an int: the whole part, if an int holds it.
fn whole(v: &Val) -> Result<i64, String> {
    match v {
        // A JSON number no decimal holds (`1e400`, `1e-40`) is read as the float nearest.
        Val::Json(Json::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .and_then(|f| f.trunc().to_i64())
            .ok_or_else(|| OUT_OF_RANGE.into()),
        other => to_decimal(other)?
            .trunc()
            .to_i64()
            .ok_or_else(|| OUT_OF_RANGE.into()),
    }
}

/// `from_unix` (`ms_per_unit` 1000) and `from_unix_ms` (1): a number of seconds or
/// milliseconds since 1970 as a datetime, or "timestamp out of range" when it names
/// no instant chrono can hold (or no decimal holds it at all).
fn from_unix(v: &Val, ms_per_unit: i64) -> Result<Val, String> {
    let n = match v {
        Val::Json(Json::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .and_then(Decimal::from_f64)
            .ok_or(TIMESTAMP_OUT_OF_RANGE)?,
        Val::Float(f) => Decimal::from_f64(*f).ok_or(TIMESTAMP_OUT_OF_RANGE)?,
        other => to_decimal(other)?,
    };
    let ms = n
        .checked_mul(Decimal::from(ms_per_unit))
        .and_then(|ms| ms.trunc().to_i64())
        .ok_or(TIMESTAMP_OUT_OF_RANGE)?;
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(Val::Datetime)
        .ok_or_else(|| TIMESTAMP_OUT_OF_RANGE.into())
}

fn parse_datetime(s: &str, fmt: &str) -> Result<Val, String> {
    if let Ok(d) = DateTime::parse_from_str(s, fmt) {
        return Ok(Val::Datetime(d.with_timezone(&Utc)));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
        return Ok(Val::Datetime(Utc.from_utc_datetime(&n)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, fmt) {
        if let Some(midnight) = d.and_hms_opt(0, 0, 0) {
            return Ok(Val::Datetime(Utc.from_utc_datetime(&midnight)));
        }
    }
    Err(format!(
        "string {} does not match the format {}",
        quoted(s),
        quoted(fmt)
    ))
}
