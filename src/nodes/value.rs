//! Typed record values: conversion from JSON by the rules of spec §4, comparison, and
//! writing records as JSON objects.
//!
//! Every value here may come from an API, so nothing in this file may panic on one:
//! arithmetic is checked, casts are checked, nothing is indexed, and a value that does
//! not convert is an `Err` with a short, one-line reason (see [`quoted`]).
#![deny(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::record::Copied;
use crate::check::Type;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::cmp::Ordering;

mod numeral;

pub use numeral::{number_text_val, number_val, parse_decimal};

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
            // Spec §4: a `json` field keeps a number a number (`12.50`, not `"12.50"`).
            (Type::Json, Val::Decimal(d)) => Ok(Val::Json(decimal_number(&d))),
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
            // A JSON number no decimal holds exactly (kept as its text, see `number_val`).
            (ty, Val::Json(Json::Number(n))) => match ty {
                Type::Float => n
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(Val::Float)
                    .ok_or_else(|| format!("number {} is out of range for float", brief_text(&n))),
                Type::Decimal => Err(format!(
                    "number {} cannot be kept exactly: a decimal holds 28 or 29 significant digits and at most 28 after the point",
                    brief_text(&n)
                )),
                Type::String => Ok(Val::Str(n.to_string())),
                _ => Err(format!(
                    "number {} does not convert to {}",
                    brief_text(&n),
                    ty.name()
                )),
            },
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
            (Type::Float, Val::Float(f)) if f.is_finite() => Ok(Val::Float(f)),
            // The nearest float: a float field asks for no more.
            (Type::Float, Val::Int(i)) => Ok(Val::Float(i as f64)),
            (Type::Float, Val::Decimal(d)) => d
                .to_f64()
                .filter(|f| f.is_finite())
                .map(Val::Float)
                .ok_or_else(|| format!("{d} is out of range for float")),
            (Type::Float, Val::Str(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Val::Float)
                .ok_or_else(|| format!("string {} is not a finite number", quoted(&s))),
            (Type::Decimal, Val::Decimal(d)) => Ok(Val::Decimal(d)),
            (Type::Decimal, Val::Int(i)) => Ok(Val::Decimal(Decimal::from(i))),
            (Type::Decimal, Val::Float(f)) => Decimal::from_f64(f)
                .map(Val::Decimal)
                .ok_or_else(|| format!("{} does not fit a decimal", cut(&f.to_string()))),
            (Type::Decimal, Val::Str(s)) => match parse_decimal(s.trim()) {
                Some(d) => Ok(Val::Decimal(d)),
                None if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => Err(format!(
                    "string {} cannot be kept exactly: a decimal holds 28 or 29 significant digits and at most 28 after the point",
                    quoted(&s)
                )),
                None => Err(format!("string {} is not a decimal number", quoted(&s))),
            },
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

    /// The value as a reason shows it: strings quoted, at most 40 characters, one line.
    pub fn brief(&self) -> String {
        match self {
            Val::Str(s) => quoted(s),
            other => cut(&other.to_text()),
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
        use std::io::Write;
        // Written into `out` as they are formatted: no text of their own per value.
        match self {
            Val::Null => out.extend_from_slice(b"null"),
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Val::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f}");
            }
            Val::Float(_) => out.extend_from_slice(b"null"),
            Val::Decimal(d) => {
                let _ = write!(out, "\"{d}\"");
            }
            Val::Str(s) => write_str(s, out),
            Val::Datetime(d) => {
                out.push(b'"');
                write_datetime(d, out);
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
            Val::Json(Json::Number(n)) => n.as_f64(),
            _ => None,
        }
    }
}

/// How many characters of a value a reason shows: enough to find the record, while a
/// 100,000-character string does not become a 100,000-character reason.
const BRIEF: usize = 40;

/// A number's text, cut to 40 characters for a reason.
pub fn brief_text(n: &serde_json::Number) -> String {
    cut(&n.to_string())
}

/// Text cut to [`BRIEF`] characters, control and invisible characters escaped: a reason
/// stays one readable line in a log or `dump --rejected`.
fn cut(t: &str) -> String {
    let (mut out, more) = escaped(t);
    if more {
        out.push('…');
    }
    out
}

/// A string from a record as a reason quotes it: its first 40 characters with control
/// and invisible characters escaped (`"a\nb"`), and `…` when there was more.
pub fn quoted(s: &str) -> String {
    let (short, more) = escaped(s);
    format!("\"{short}\"{}", if more { "…" } else { "" })
}

/// The start of `t` with what cannot be seen escaped, at most [`BRIEF`] characters
/// once escaped, and whether there was more.
fn escaped(t: &str) -> (String, bool) {
    let mut out = String::new();
    let mut shown = 0usize;
    let mut chars = t.chars();
    while shown < BRIEF {
        let Some(c) = chars.next() else {
            return (out, false);
        };
        match c {
            // JSON text keeps its own quoting; only what cannot be seen is escaped.
            '"' | '\'' | '\\' => {
                out.push(c);
                shown = shown.saturating_add(1);
            }
            c => {
                let e = c.escape_debug();
                shown = shown.saturating_add(e.len());
                out.extend(e);
            }
        }
    }
    (out, chars.next().is_some())
}

/// A decimal as a JSON number with the same digits (`12.50`): serde_json is built with
/// `arbitrary_precision`, so the text is kept as written.
fn decimal_number(d: &Decimal) -> Json {
    let text = d.to_string();
    match text.parse::<serde_json::Number>() {
        Ok(n) => Json::Number(n),
        Err(_) => Json::String(text),
    }
}

/// A datetime as RFC 3339 in UTC, as `to_rfc3339_opts(SecondsFormat::AutoSi, true)`
/// writes it (a fraction of 3, 6 or 9 digits, only as long as it needs), digit by digit
/// into `out`; years outside 0–9999 and leap seconds are left to chrono.
fn write_datetime(d: &DateTime<Utc>, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    let t = d.naive_utc();
    let nano = t.nanosecond();
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999);
    let Some(year) = year.filter(|_| nano < 1_000_000_000) else {
        out.extend_from_slice(d.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
        return;
    };
    digits(out, year, 4);
    for (sep, n) in [
        (b'-', t.month()),
        (b'-', t.day()),
        (b'T', t.hour()),
        (b':', t.minute()),
        (b':', t.second()),
    ] {
        out.push(sep);
        digits(out, n, 2);
    }
    let (fraction, width) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (nano / 1_000_000, 3)
    } else if nano.is_multiple_of(1_000) {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    if width > 0 {
        out.push(b'.');
        digits(out, fraction, width);
    }
    out.push(b'Z');
}

/// `n` in decimal, zeros in front up to `width` digits.
fn digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let text = buf.format(n);
    out.resize(
        out.len().saturating_add(width.saturating_sub(text.len())),
        b'0',
    );
    out.extend_from_slice(text.as_bytes());
}

/// The start of a value's JSON text, at most `max` bytes (cut on a character
/// boundary), and whether it was cut. The writing stops at `max`: a value of hundreds of
/// megabytes is not written out whole to keep its first kilobyte.
pub fn json_prefix(v: &Json, max: usize) -> (String, bool) {
    struct Capped {
        out: Vec<u8>,
        max: usize,
        cut: bool,
    }
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = self.max.saturating_sub(self.out.len());
            match buf.get(..room) {
                Some(part) if part.len() < buf.len() => {
                    self.out.extend_from_slice(part);
                    self.cut = true;
                    Err(std::io::Error::other("the excerpt is full"))
                }
                _ => {
                    self.out.extend_from_slice(buf);
                    Ok(buf.len())
                }
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Capped {
        out: Vec::new(),
        max,
        cut: false,
    };
    let _ = serde_json::to_writer(&mut w, v);
    let text = match String::from_utf8(w.out) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    };
    (text, w.cut)
}

/// Writes a JSON string with escapes. A string with nothing to escape (no control
/// character, quote or backslash: most of what APIs send) is copied as it is.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len().saturating_add(2));
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes a record as a JSON object of its fields.
pub fn write_record(names: &[String], record: &Record, out: &mut Vec<u8>) {
    write_record_raw(&field_heads(names), record, &[], out);
}

/// What comes before each field's value in a record's JSON, from the field names:
/// `"name":`, after a comma but for the first. Made once for a source's records instead
/// of each name escaped again for each record.
pub fn field_heads(names: &[String]) -> Vec<Box<[u8]>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut head = Vec::with_capacity(name.len().saturating_add(4));
            if i > 0 {
                head.push(b',');
            }
            write_str(name, &mut head);
            head.push(b':');
            head.into_boxed_slice()
        })
        .collect()
}

/// As [`write_record`], with the fields' [`field_heads`], a field's text from `raw`
/// where it has one ([`crate::nodes::record::Extractor::record_in`]).
pub fn write_record_raw(
    heads: &[Box<[u8]>],
    record: &Record,
    raw: &[Option<Copied>],
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (head, v)) in heads.iter().zip(&record.values).enumerate() {
        out.extend_from_slice(head);
        match raw.get(i).copied().flatten() {
            Some(copied) => copied.write(out),
            None => v.write_json(out),
        }
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
            // Written as it was kept (spec §4): read as JSON, not as a value anew.
            Some(v) if *ty == Type::Json => Val::Json(v.clone()),
            Some(v) => Val::from_json(v).convert(*ty).unwrap_or(Val::Null),
        })
        .collect();
    Some(Record { values })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
