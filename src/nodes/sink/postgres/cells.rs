//! A page of records as typed columns, one array parameter each. The records arrive as
//! the JSON objects of `value::write_record` (decimals and datetimes as strings); they
//! are read straight into the columns, without an intermediate value tree: this is a
//! third of the sink's work otherwise.

use crate::check::Type;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value as Json;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::str::FromStr;
use tokio_postgres::types::ToSql;

/// The values of one column of a page.
pub enum Cells {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Decimal(Vec<Option<Decimal>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Json(Vec<Option<Json>>),
}

impl Cells {
    pub fn new(ty: Type, n: usize) -> Cells {
        match ty {
            Type::String => Cells::Text(Vec::with_capacity(n)),
            Type::Int => Cells::Int(Vec::with_capacity(n)),
            Type::Float => Cells::Float(Vec::with_capacity(n)),
            Type::Decimal => Cells::Decimal(Vec::with_capacity(n)),
            Type::Bool => Cells::Bool(Vec::with_capacity(n)),
            Type::Datetime => Cells::Time(Vec::with_capacity(n)),
            Type::Json => Cells::Json(Vec::with_capacity(n)),
        }
    }

    fn push_null(&mut self) {
        match self {
            Cells::Text(c) => c.push(None),
            Cells::Int(c) => c.push(None),
            Cells::Float(c) => c.push(None),
            Cells::Decimal(c) => c.push(None),
            Cells::Bool(c) => c.push(None),
            Cells::Time(c) => c.push(None),
            Cells::Json(c) => c.push(None),
        }
    }

    fn len(&self) -> usize {
        match self {
            Cells::Text(c) => c.len(),
            Cells::Int(c) => c.len(),
            Cells::Float(c) => c.len(),
            Cells::Decimal(c) => c.len(),
            Cells::Bool(c) => c.len(),
            Cells::Time(c) => c.len(),
            Cells::Json(c) => c.len(),
        }
    }

    /// The type of this column's array parameter, as the insert casts it
    /// ([`super::sql_type`]): a statement sent with its types needs no round trip to
    /// prepare it.
    pub fn array_type(&self) -> tokio_postgres::types::Type {
        use tokio_postgres::types::Type as T;
        match self {
            Cells::Text(_) => T::TEXT_ARRAY,
            Cells::Int(_) => T::INT8_ARRAY,
            Cells::Float(_) => T::FLOAT8_ARRAY,
            Cells::Decimal(_) => T::NUMERIC_ARRAY,
            Cells::Bool(_) => T::BOOL_ARRAY,
            Cells::Time(_) => T::TIMESTAMPTZ_ARRAY,
            Cells::Json(_) => T::JSONB_ARRAY,
        }
    }

    /// Rows `r` of this column as one array parameter.
    pub fn slice(&self, r: Range<usize>) -> Box<dyn ToSql + Sync + Send + '_> {
        match self {
            Cells::Text(c) => Box::new(&c[r]),
            Cells::Int(c) => Box::new(&c[r]),
            Cells::Float(c) => Box::new(&c[r]),
            Cells::Decimal(c) => Box::new(&c[r]),
            Cells::Bool(c) => Box::new(&c[r]),
            Cells::Time(c) => Box::new(&c[r]),
            Cells::Json(c) => Box::new(&c[r]),
        }
    }
}

/// Appends one record (a JSON object) to the columns named `names`; a field it lacks is
/// null, a field no column has is skipped.
pub fn push_record(cols: &mut [Cells], names: &[String], json: &[u8]) -> Result<(), String> {
    let before = cols.first().map_or(0, Cells::len);
    let mut de = serde_json::Deserializer::from_slice(json);
    let pushed = RecordSeed { cols, names }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Err(e) = pushed {
        // Leave every column as long as before, whatever was read.
        for c in cols.iter_mut() {
            truncate(c, before);
        }
        return Err(e.to_string());
    }
    for c in cols.iter_mut() {
        if c.len() == before {
            c.push_null();
        }
    }
    Ok(())
}

fn truncate(c: &mut Cells, n: usize) {
    match c {
        Cells::Text(v) => v.truncate(n),
        Cells::Int(v) => v.truncate(n),
        Cells::Float(v) => v.truncate(n),
        Cells::Decimal(v) => v.truncate(n),
        Cells::Bool(v) => v.truncate(n),
        Cells::Time(v) => v.truncate(n),
        Cells::Json(v) => v.truncate(n),
    }
}

struct RecordSeed<'a> {
    cols: &'a mut [Cells],
    names: &'a [String],
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(i) = map.next_key_seed(KeySeed(self.names))? {
            let Some(i) = i else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let name = &self.names[i];
            let bad = |e: String| de::Error::custom(format!("field `{name}`: {e}"));
            match &mut self.cols[i] {
                Cells::Text(c) => {
                    let v: Option<String> = map.next_value()?;
                    c.push(v.map(|s| without_nul(s, name)));
                }
                Cells::Int(c) => c.push(map.next_value()?),
                Cells::Float(c) => c.push(map.next_value()?),
                Cells::Bool(c) => c.push(map.next_value()?),
                Cells::Json(c) => {
                    let v: Option<Json> = map.next_value()?;
                    c.push(v.map(|mut j| {
                        json_without_nul(&mut j, name);
                        j
                    }));
                }
                Cells::Decimal(c) => {
                    let v = map.next_value_seed(Parsed(PhantomData::<Decimal>))?;
                    c.push(v.transpose().map_err(bad)?);
                }
                Cells::Time(c) => {
                    let v = map.next_value_seed(Parsed(PhantomData::<DateTime<Utc>>))?;
                    c.push(v.transpose().map_err(bad)?);
                }
            }
        }
        Ok(())
    }
}

/// A key as the index of its column, `None` for a name without one.
/// PostgreSQL's `text` and `jsonb` cannot hold the NUL character (U+0000) at all: it is
/// left out, with a warning, rather than the whole page refused for good.
fn without_nul(s: String, field: &str) -> String {
    if !s.contains('\0') {
        return s;
    }
    tracing::warn!(field = %field, "PostgreSQL cannot store the NUL character: it is left out of this value");
    s.replace('\0', "")
}

fn json_without_nul(j: &mut Json, field: &str) {
    match j {
        Json::String(s) if s.contains('\0') => *s = without_nul(std::mem::take(s), field),
        Json::Array(items) => items.iter_mut().for_each(|i| json_without_nul(i, field)),
        Json::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(k, v)| (without_nul(k, field), v))
                    .collect();
            }
            map.values_mut().for_each(|v| json_without_nul(v, field));
        }
        _ => {}
    }
}

struct KeySeed<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| n == v))
    }
}

/// A value written as a string (decimal, datetime), parsed; null as `None`.
trait FromText: Sized {
    fn from_text(s: &str) -> Result<Self, String>;
}

impl FromText for Decimal {
    fn from_text(s: &str) -> Result<Self, String> {
        Decimal::from_str(s)
            .or_else(|_| Decimal::from_scientific(s))
            .map_err(|_| format!("`{s}` is not a decimal"))
    }
}

impl FromText for DateTime<Utc> {
    fn from_text(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("`{s}` is not an RFC 3339 datetime: {e}"))
    }
}

struct Parsed<T>(PhantomData<T>);

impl<'de, T: FromText> DeserializeSeed<'de> for Parsed<T> {
    type Value = Option<Result<T, String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: FromText> Visitor<'de> for Parsed<T> {
    type Value = Option<Result<T, String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(ParseStr(PhantomData::<T>)).map(Some)
    }
}

/// A string, parsed as `T`.
struct ParseStr<T>(PhantomData<T>);

impl<'de, T: FromText> Visitor<'de> for ParseStr<T> {
    type Value = Result<T, String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(T::from_text(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_typed_columns() {
        let names: Vec<String> = ["id", "n", "amount", "at", "raw", "note"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let types = [
            Type::String,
            Type::Int,
            Type::Decimal,
            Type::Datetime,
            Type::Json,
            Type::String,
        ];
        let mut cols: Vec<Cells> = types.iter().map(|t| Cells::new(*t, 2)).collect();
        push_record(
            &mut cols,
            &names,
            br#"{"id":"a\"b","n":7,"amount":"12.50","at":"2026-01-01T00:00:00Z","raw":{"x":[1]},"extra":1}"#,
        )
        .unwrap();
        push_record(
            &mut cols,
            &names,
            br#"{"id":"c","n":null,"amount":null,"at":null,"raw":null}"#,
        )
        .unwrap();
        let err = push_record(&mut cols, &names, br#"{"id":"d","amount":"ten"}"#).unwrap_err();
        assert!(err.contains("field `amount`"), "{err}");
        let Cells::Text(ids) = &cols[0] else { panic!() };
        assert_eq!(ids, &[Some("a\"b".to_string()), Some("c".to_string())]);
        let Cells::Decimal(d) = &cols[2] else {
            panic!()
        };
        assert_eq!(d, &[Some(Decimal::new(1250, 2)), None]);
        let Cells::Json(j) = &cols[4] else { panic!() };
        assert_eq!(j, &[Some(serde_json::json!({"x": [1]})), None]);
        let Cells::Text(notes) = &cols[5] else {
            panic!()
        };
        assert_eq!(notes, &[None, None]);
        assert!(cols.iter().all(|c| c.len() == 2));
    }
}
