//! Typed record values: conversion from JSON by the rules of spec §4, comparison, and
//! writing records as JSON objects.

use crate::check::Type;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::str::FromStr;

/// One field's value in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Str(String),
    Datetime(DateTime<Utc>),
    Json(Json),
}

/// A record: values in the order of its schema's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub values: Vec<Val>,
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Decimal(_) => "decimal",
            Val::Str(_) => "string",
            Val::Datetime(_) => "datetime",
            Val::Json(_) => "json",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null | Val::Json(Json::Null))
    }

    /// A JSON value read from a record, as a dynamic value.
    pub fn from_json(v: &Json) -> Val {
        match v {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::String(s) => Val::Str(s.clone()),
            Json::Number(n) => number_val(n),
            other => Val::Json(other.clone()),
        }
    }

    /// Converts to a field's type (spec §4); `Err` says why not.
    pub fn convert(self, ty: Type) -> Result<Val, String> {
        if let Val::Json(Json::Null) = self {
            return Ok(Val::Null);
        }
        if let Val::Null = self {
            return Ok(Val::Null);
        }
        let fail = |v: &Val| {
            Err(format!(
                "{} {} does not convert to {}",
                v.type_name(),
                v.brief(),
                ty.name()
            ))
        };
        match (ty, self) {
            (Type::Json, Val::Json(j)) => Ok(Val::Json(j)),
            (Type::Json, v) => Ok(Val::Json(v.to_json())),
            (Type::String, Val::Str(s)) => Ok(Val::Str(s)),
            (
                Type::String,
                v @ (Val::Int(_)
                | Val::Float(_)
                | Val::Decimal(_)
                | Val::Bool(_)
                | Val::Datetime(_)),
            ) => Ok(Val::Str(v.to_text())),
            (Type::Int, Val::Int(i)) => Ok(Val::Int(i)),
            (Type::Int, Val::Decimal(d)) if d.fract().is_zero() => d
                .to_i64()
                .map(Val::Int)
                .ok_or_else(|| format!("{d} is out of range for int")),
            (Type::Int, Val::Str(s)) => s
                .trim()
                .parse::<i64>()
                .map(Val::Int)
                .map_err(|_| format!("string {} is not an integer", quoted(&s))),
            (Type::Float, Val::Float(f)) => Ok(Val::Float(f)),
            (Type::Float, Val::Int(i)) => Ok(Val::Float(i as f64)),
            (Type::Float, Val::Decimal(d)) => Ok(Val::Float(d.to_f64().unwrap_or(f64::NAN))),
            (Type::Float, Val::Str(s)) => s
                .trim()
                .parse::<f64>()
                .map(Val::Float)
                .map_err(|_| format!("string {} is not a number", quoted(&s))),
            (Type::Decimal, Val::Decimal(d)) => Ok(Val::Decimal(d)),
            (Type::Decimal, Val::Int(i)) => Ok(Val::Decimal(Decimal::from(i))),
            (Type::Decimal, Val::Float(f)) => Decimal::from_f64(f)
                .map(Val::Decimal)
                .ok_or_else(|| format!("{f} does not fit a decimal")),
            (Type::Decimal, Val::Str(s)) => parse_decimal(s.trim())
                .map(Val::Decimal)
                .ok_or_else(|| format!("string {} is not a decimal number", quoted(&s))),
            (Type::Bool, Val::Bool(b)) => Ok(Val::Bool(b)),
            (Type::Bool, Val::Str(s)) if s == "true" || s == "false" => Ok(Val::Bool(s == "true")),
            (Type::Datetime, Val::Datetime(d)) => Ok(Val::Datetime(d)),
            (Type::Datetime, Val::Str(s)) => DateTime::parse_from_rfc3339(s.trim())
                .map(|d| Val::Datetime(d.with_timezone(&Utc)))
                .map_err(|e| format!("string {} is not an RFC 3339 datetime ({e})", quoted(&s))),
            (_, v) => fail(&v),
        }
    }

    /// Plain text, as `to_string` and placeholders use it.
    pub fn to_text(&self) -> String {
        match self {
            Val::Null => String::new(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Decimal(d) => d.to_string(),
            Val::Str(s) => s.clone(),
            Val::Datetime(d) => d.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            Val::Json(j) => j.to_string(),
        }
    }

    fn brief(&self) -> String {
        let t = match self {
            Val::Str(s) => quoted(s),
            other => other.to_text(),
        };
        if t.chars().count() > 40 {
            format!("{}…", t.chars().take(40).collect::<String>())
        } else {
            t
        }
    }

    /// The value as JSON, written the way sinks write it (spec §4).
    pub fn to_json(&self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Int(i) => Json::from(*i),
            Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Val::Decimal(d) => Json::String(d.to_string()),
            Val::Str(s) => Json::String(s.clone()),
            Val::Datetime(d) => Json::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Val::Json(j) => j.clone(),
        }
    }

    /// Appends the value as JSON text.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Null => out.extend_from_slice(b"null"),
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Int(i) => out.extend_from_slice(itoa(*i).as_bytes()),
            Val::Float(f) if f.is_finite() => out.extend_from_slice(f.to_string().as_bytes()),
            Val::Float(_) => out.extend_from_slice(b"null"),
            Val::Decimal(d) => {
                out.push(b'"');
                out.extend_from_slice(d.to_string().as_bytes());
                out.push(b'"');
            }
            Val::Str(s) => write_str(s, out),
            Val::Datetime(d) => {
                out.push(b'"');
                out.extend_from_slice(d.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
                out.push(b'"');
            }
            Val::Json(j) => {
                let _ = serde_json::to_writer(&mut *out, j);
            }
        }
    }

    /// Compares two values across numeric types; `None` when they do not compare
    /// (different kinds, or a null).
    pub fn compare(&self, other: &Val) -> Option<Ordering> {
        match (self, other) {
            (Val::Null, _) | (_, Val::Null) => None,
            (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
            (Val::Str(a), Val::Str(b)) => Some(a.cmp(b)),
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Datetime(a), Val::Datetime(b)) => Some(a.cmp(b)),
            (Val::Float(a), Val::Float(b)) => a.partial_cmp(b),
            (a, b) => match (a.as_decimal(), b.as_decimal()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => None,
                },
            },
        }
    }

    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Val::Int(i) => Some(Decimal::from(*i)),
            Val::Decimal(d) => Some(*d),
            Val::Float(f) => Decimal::from_f64(*f),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Decimal(d) => d.to_f64(),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

fn quoted(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    format!("\"{short}\"")
}

fn itoa(i: i64) -> String {
    i.to_string()
}

/// A JSON number as the narrowest exact value: an int, else an exact decimal, else a float.
pub fn number_val(n: &serde_json::Number) -> Val {
    if let Some(i) = n.as_i64() {
        return Val::Int(i);
    }
    let text = n.to_string();
    match parse_decimal(&text) {
        Some(d) => Val::Decimal(d),
        None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// `12.50`, `-3`, `1e3`: exact where a decimal can hold it.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.is_empty() {
        return None;
    }
    Decimal::from_str(s)
        .ok()
        .or_else(|| Decimal::from_scientific(s).ok())
}

/// Writes a JSON string with escapes.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes a record as a JSON object of its fields.
pub fn write_record(names: &[String], record: &Record, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, v)) in names.iter().zip(&record.values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(name, out);
        out.push(b':');
        v.write_json(out);
    }
    out.push(b'}');
}

/// Reads back a record written by [`write_record`], typed by its schema.
pub fn read_record(fields: &[(String, Type, bool)], bytes: &[u8]) -> Option<Record> {
    let obj: serde_json::Map<String, Json> = serde_json::from_slice(bytes).ok()?;
    let values = fields
        .iter()
        .map(|(name, ty, _)| match obj.get(name) {
            None | Some(Json::Null) => Val::Null,
            Some(v) => Val::from_json(v).convert(*ty).unwrap_or(Val::Null),
        })
        .collect();
    Some(Record { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Val {
        let v: Json = serde_json::from_str(s).unwrap();
        Val::from_json(&v)
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(
            num("12.50").convert(Type::Decimal).unwrap().to_json(),
            Json::String("12.50".into())
        );
        assert_eq!(
            Val::Str("0.10".into())
                .convert(Type::Decimal)
                .unwrap()
                .to_json(),
            Json::String("0.10".into())
        );
        assert!(Val::Str("ten".into()).convert(Type::Decimal).is_err());
    }

    #[test]
    fn conversions_follow_the_spec() {
        assert_eq!(Val::Str("42".into()).convert(Type::Int), Ok(Val::Int(42)));
        assert!(num("4.5").convert(Type::Int).is_err());
        assert_eq!(num("7").convert(Type::String), Ok(Val::Str("7".into())));
        assert_eq!(
            Val::Bool(true).convert(Type::String),
            Ok(Val::Str("true".into()))
        );
        assert_eq!(
            Val::Str("false".into()).convert(Type::Bool),
            Ok(Val::Bool(false))
        );
        let dt = Val::Str("2026-01-01T10:00:00+02:00".into())
            .convert(Type::Datetime)
            .unwrap();
        assert_eq!(dt.to_json(), Json::String("2026-01-01T08:00:00Z".into()));
        assert!(num("1700000000").convert(Type::Datetime).is_err());
        assert!(Val::Json(serde_json::json!({"a": 1}))
            .convert(Type::String)
            .is_err());
    }

    #[test]
    fn cross_type_comparison() {
        assert_eq!(
            Val::Int(2).compare(&Val::Decimal(Decimal::new(15, 1))),
            Some(Ordering::Greater)
        );
        assert_eq!(Val::Null.compare(&Val::Int(1)), None);
        assert_eq!(Val::Str("a".into()).compare(&Val::Int(1)), None);
    }
}
