//! How a source's JSON items become typed records (spec §4): the `records` path, the
//! `fields` expressions and conversions, the key, the cursor and the `where` filter.
//!
//! Items come from an API: a value that does not convert rejects its record with the
//! reason; nothing here panics on one (no indexing, no unchecked arithmetic or casts).
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

mod direct;
pub mod raw;
mod scan;

use super::eval::{Compiled, Env, Path};
use super::value::{Record, Val};
use crate::check::{Lookback, PathStep, Source, Type};
pub use direct::Copied;
use direct::Direct;
use raw::RawRecords;
use serde_json::Value as Json;
use std::borrow::Cow;
use std::sync::Arc;

/// Why an item did not become a record, with its key and cursor when they could be read.
#[derive(Debug)]
pub struct Rejection {
    pub reason: String,
    pub key: Option<Vec<u8>>,
    pub cursor: Option<Val>,
}

/// The record items of one response body. Kept as their text when the page was split
/// ([`raw`]); else, when they are one array, taken out of the body (no copy); otherwise
/// the body is kept whole with the path that selects them, and they are read by
/// reference: a match nested in another match (`$..items[*]` on a recursive body) is
/// not copied once per match that holds it.
pub struct Items(Held);

enum Held {
    Raw(RawRecords),
    Taken(Vec<Json>),
    Selected { body: Json, path: Path },
}

/// One record item: its tree, or its text (with its members where its page's split
/// found them).
#[derive(Clone, Copy)]
pub enum Item<'a> {
    Json(&'a Json),
    Text(&'a str),
    Scanned(raw::Scanned<'a>),
}

impl Item<'_> {
    /// The item's tree (parsed from its text when it is text).
    pub fn json(&self) -> Cow<'_, Json> {
        match self {
            Item::Json(j) => Cow::Borrowed(*j),
            Item::Text(t) => Cow::Owned(raw::parse_item(t)),
            Item::Scanned(s) => Cow::Owned(raw::parse_item(s.text())),
        }
    }
}

impl Items {
    /// The items, in order.
    pub fn refs(&self) -> Vec<Item<'_>> {
        match &self.0 {
            Held::Raw(items) => items.items().collect(),
            Held::Taken(items) => items.iter().map(Item::Json).collect(),
            Held::Selected { body, path } => {
                path.select(body).into_iter().map(Item::Json).collect()
            }
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Held::Raw(items) => items.len(),
            Held::Taken(items) => items.len(),
            Held::Selected { body, path } => path.select(body).len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<Json>> for Items {
    fn from(items: Vec<Json>) -> Items {
        Items(Held::Taken(items))
    }
}

/// What the records of a page are made in, one after another ([`Extractor::record_in`]):
/// the lists of the record made before, used again instead of made anew for each (the
/// fields' values, where the item's members lie, which fields' texts are copied).
#[derive(Default)]
pub struct Room<'a> {
    /// The text of each field copied from its item ([`Extractor::record_in`]).
    pub raw: Vec<Option<Copied<'a>>>,
    found: Vec<Option<&'a str>>,
    values: Vec<Val>,
}

impl Room<'_> {
    /// Takes back a record made in the room, once it is written, for the next one.
    pub fn keep(&mut self, record: Record) {
        self.values = record.values;
    }
}

/// How one source's items become records.
pub struct Extractor {
    pub names: Arc<Vec<String>>,
    /// What comes before each field's value in a record's JSON
    /// ([`crate::nodes::value::field_heads`]).
    pub heads: Vec<Box<[u8]>>,
    fields: Vec<(Type, bool, Compiled)>,
    key: Vec<usize>,
    cursor: Option<(usize, Type)>,
    /// `incremental.start`, the watermark before anything was collected.
    start: Option<Val>,
    /// `incremental.lookback`: how far below the watermark requests and keys reach.
    lookback: Option<Lookback>,
    filter: Option<Compiled>,
    records: Records,
    /// How records are read from an item's text, when every field can be so.
    direct: Option<Direct>,
}

enum Records {
    /// The body is the array.
    Body,
    /// `$.a.b[*]`: walk to the array and take it.
    Array(Vec<crate::check::PathStep>),
    General(Path),
}

impl Extractor {
    pub fn new(src: &Source) -> Extractor {
        let names: Vec<String> = src.fields.iter().map(|f| f.name.clone()).collect();
        let index = |n: &str| names.iter().position(|x| x == n);
        let fields: Vec<(Type, bool, Compiled)> = src
            .fields
            .iter()
            .map(|f| (f.ty, f.optional, Compiled::new(&f.expr, &|_| None)))
            .collect();
        let key: Vec<usize> = src.key.iter().filter_map(|k| index(k)).collect();
        let cursor = src
            .incremental
            .as_ref()
            .and_then(|i| index(i.cursor.as_deref()?))
            .and_then(|at| Some((at, src.fields.get(at)?.ty)));
        let start = src.incremental.as_ref().and_then(|i| {
            let start = super::eval::lit_value(i.start.as_ref()?);
            match cursor {
                Some((_, ty)) => start.convert(ty).ok().filter(|v| !v.is_null()),
                // Without a cursor field (a source that resumes from a token), a string
                // `start` that is a datetime is one (spec §5.2a).
                None => match start {
                    Val::Str(s) => Some(
                        Val::Str(s.clone())
                            .convert(Type::Datetime)
                            .unwrap_or(Val::Str(s)),
                    ),
                    other => Some(other).filter(|v| !v.is_null()),
                },
            }
        });
        let lookback = src.incremental.as_ref().and_then(|i| i.lookback.clone());
        let filter = src.filter.as_ref().map(|f| Compiled::new(f, &index));
        let records = match &src.records {
            None => Records::Body,
            Some(p) => match p
                .text
                .strip_suffix("[*]")
                .and_then(|prefix| jsonpath_rust::parser::parse_json_path(prefix).ok())
            {
                Some(q) => {
                    use jsonpath_rust::parser::model::{Segment, Selector};
                    let steps: Option<Vec<_>> = q
                        .segments
                        .iter()
                        .map(|s| match s {
                            Segment::Selector(Selector::Name(n)) => {
                                Some(crate::check::PathStep::Name(n.clone()))
                            }
                            Segment::Selector(Selector::Index(i)) => {
                                Some(crate::check::PathStep::Index(*i))
                            }
                            _ => None,
                        })
                        .collect();
                    match steps {
                        Some(steps) => Records::Array(steps),
                        None => Records::General(Path::compile(p)),
                    }
                }
                None => Records::General(Path::compile(p)),
            },
        };
        // A `json`, `string`, `decimal` or `datetime` field that is neither key, cursor
        // nor read by `where` may be copied from the item's text ([`Extractor::record_in`]).
        let mut read = key.clone();
        read.extend(cursor.map(|(at, _)| at));
        if let Some(f) = &filter {
            f.fields(&mut read);
        }
        let direct = Direct::plan(fields.iter().enumerate().map(|(i, (ty, _, expr))| {
            let copy = match ty {
                _ if read.contains(&i) => None,
                Type::Json => Some(direct::Verbatim::Json),
                Type::String => Some(direct::Verbatim::Str),
                Type::Decimal => Some(direct::Verbatim::Decimal),
                Type::Datetime => Some(direct::Verbatim::Datetime),
                _ => None,
            };
            (expr, copy)
        }));
        Extractor {
            heads: crate::nodes::value::field_heads(&names),
            names: Arc::new(names),
            direct,
            fields,
            key,
            cursor,
            start,
            lookback,
            filter,
            records,
        }
    }

    /// The names that lead to the records array, when a page can be split there
    /// ([`raw::split`]): none for the body itself.
    pub fn split_at(&self) -> Option<Vec<String>> {
        match &self.records {
            Records::Body => Some(Vec::new()),
            Records::Array(steps) => steps
                .iter()
                .map(|s| match s {
                    PathStep::Name(n) => Some(n.clone()),
                    PathStep::Index(_) => None,
                })
                .collect(),
            Records::General(_) => None,
        }
    }

    /// Takes the record items out of a response body, or its items kept as text.
    pub fn items(&self, body: Json, raw: Option<RawRecords>) -> Result<Items, String> {
        if let Some(raw) = raw {
            return Ok(Items(Held::Raw(raw)));
        }
        match &self.records {
            Records::Body => match body {
                Json::Array(items) => Ok(items.into()),
                _ => Err("the response body is not an array: set `records` to the path of the records, like `records = $.data[*]`".into()),
            },
            Records::Array(steps) => {
                let mut body = body;
                let mut v = &mut body;
                for step in steps {
                    v = match (step, v) {
                        (crate::check::PathStep::Name(n), Json::Object(m)) => match m.get_mut(n) {
                            Some(x) => x,
                            None => return Ok(Vec::new().into()),
                        },
                        (crate::check::PathStep::Index(i), Json::Array(a)) => {
                            match super::eval::index(*i, a.len()).and_then(|i| a.get_mut(i)) {
                                Some(x) => x,
                                None => return Ok(Vec::new().into()),
                            }
                        }
                        _ => return Ok(Vec::new().into()),
                    };
                }
                Ok(match std::mem::take(v) {
                    Json::Array(items) => items,
                    Json::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                    _ => Vec::new(),
                }
                .into())
            }
            Records::General(p) => Ok(Items(Held::Selected {
                body,
                path: p.clone(),
            })),
        }
    }

    /// How many record items a body holds, without taking them out.
    pub fn count(&self, body: &Json, raw: Option<&RawRecords>) -> Result<usize, String> {
        if let Some(raw) = raw {
            return Ok(raw.len());
        }
        match &self.records {
            Records::Body => match body {
                Json::Array(items) => Ok(items.len()),
                _ => Err("the response body is not an array: set `records` to the path of the records, like `records = $.data[*]`".into()),
            },
            Records::Array(steps) => Ok(match super::eval::walk(body, steps) {
                Some(Json::Array(a)) => a.len(),
                Some(Json::Object(m)) => m.len(),
                _ => 0,
            }),
            Records::General(p) => Ok(p.select(body).len()),
        }
    }

    /// Builds a record, or says why not (with the key when it could be read).
    pub fn record(
        &self,
        item: Item,
        parent: Option<&serde_json::Map<String, Json>>,
    ) -> Result<Record, Rejection> {
        self.record_with(item, parent, &mut Room::default(), false)
    }

    /// As [`Extractor::record`], for a record only written out: a `json`, `string`,
    /// `decimal` or `datetime` field that is neither key, cursor nor read by `where`,
    /// whose text in the item is exactly what its value would write, is not parsed (nor
    /// a string made of it). Its text goes to `room.raw` (by field) and the record holds
    /// null in its place; [`write_record_raw`] writes the two together. The record is
    /// made in the lists of the one before (given back with [`Room::keep`]).
    pub fn record_in<'a>(
        &self,
        item: Item<'a>,
        parent: Option<&serde_json::Map<String, Json>>,
        room: &mut Room<'a>,
    ) -> Result<Record, Rejection> {
        room.raw.clear();
        room.raw.resize(self.fields.len(), None);
        self.record_with(item, parent, room, true)
    }

    fn record_with<'a>(
        &self,
        item: Item<'a>,
        parent: Option<&serde_json::Map<String, Json>>,
        room: &mut Room<'a>,
        copy: bool,
    ) -> Result<Record, Rejection> {
        // Read from the item's text where the plan allows, else from its tree.
        let listed = std::mem::take(&mut room.found);
        let found = match (item, &self.direct) {
            (Item::Text(text), Some(direct)) => direct.find(text, listed).map(|f| (direct, f)),
            (Item::Scanned(item), Some(direct)) => {
                Some((direct, direct.found(item.members(), listed)))
            }
            _ => None,
        };
        let tree = match found {
            Some(_) => None,
            None => Some(item.json()),
        };
        let env = Env {
            item: tree.as_deref(),
            parent,
            fields: &[],
        };
        let mut values = std::mem::take(&mut room.values);
        values.clear();
        values.reserve(self.fields.len());
        let mut error: Option<String> = None;
        for (i, ((ty, optional, expr), name)) in
            self.fields.iter().zip(self.names.iter()).enumerate()
        {
            if let (true, Some((direct, found))) = (copy, &found) {
                if let (Some(text), Some(slot)) = (direct.copied(i, found), room.raw.get_mut(i)) {
                    *slot = Some(text);
                    values.push(Val::Null);
                    continue;
                }
            }
            let value = match &found {
                Some((direct, found)) => direct.value(i, found, *ty),
                None => field_value(expr, *ty, &env),
            };
            let v = match value {
                Ok(Val::Null) if !optional => {
                    error.get_or_insert_with(|| {
                        format!("required field `{name}` is missing or null")
                    });
                    Val::Null
                }
                Ok(v) => v,
                Err(e) => {
                    error.get_or_insert_with(|| format!("field `{name}`: {e}"));
                    Val::Null
                }
            };
            values.push(v);
        }
        if let Some((_, found)) = found {
            room.found = found.into_room();
        }
        let record = Record { values };
        match error {
            None => Ok(record),
            Some(e) => {
                let key_ok = self
                    .key
                    .iter()
                    .all(|&i| record.values.get(i).is_some_and(|v| !v.is_null()));
                let key = (key_ok && !self.key.is_empty()).then(|| self.key_of(&record));
                let cursor = self.cursor_of(&record).filter(|c| !c.is_null()).cloned();
                Err(Rejection {
                    reason: e,
                    key,
                    cursor,
                })
            }
        }
    }

    /// Each field's value for an item, or why it has none: what `hamstr try` shows of
    /// the items a record was not made of, and how it finds fields null everywhere.
    pub fn field_values(
        &self,
        item: &Json,
        parent: Option<&serde_json::Map<String, Json>>,
    ) -> Vec<Result<Val, String>> {
        let env = Env {
            item: Some(item),
            parent,
            fields: &[],
        };
        self.fields
            .iter()
            .map(|(ty, _, expr)| field_value(expr, *ty, &env))
            .collect()
    }

    /// The record's key as the store spells it ([`crate::state::keys`]): two records
    /// with different key values never share it.
    pub fn key_of(&self, r: &Record) -> Vec<u8> {
        // A string's own text, not a copy of it.
        crate::state::keys::compose(self.key.iter().map(|&i| match r.values.get(i) {
            Some(Val::Str(s)) => Cow::Borrowed(s.as_bytes()),
            Some(v) => Cow::Owned(v.to_text().into_bytes()),
            None => Cow::Borrowed(&b""[..]),
        }))
    }

    pub fn is_keyed(&self) -> bool {
        !self.key.is_empty()
    }

    pub fn cursor_of<'a>(&self, r: &'a Record) -> Option<&'a Val> {
        self.cursor.and_then(|(i, _)| r.values.get(i))
    }

    /// The cursor of a raw item, for a newest-first source's early stop.
    pub fn item_cursor(
        &self,
        item: Item,
        parent: Option<&serde_json::Map<String, Json>>,
    ) -> Option<Val> {
        let (i, ty) = self.cursor?;
        let item = item.json();
        let env = Env {
            item: Some(&item),
            parent,
            fields: &[],
        };
        let (_, _, expr) = self.fields.get(i)?;
        field_value(expr, ty, &env).ok().filter(|v| !v.is_null())
    }

    /// The watermark in effect: the stored one, else `incremental.start`.
    pub fn watermark(&self, stored: Option<&Json>) -> Option<Val> {
        stored
            .and_then(|w| self.cursor_value(w))
            .or_else(|| self.start.clone())
    }

    /// The watermark minus `lookback`: what requests carry, where a newest-first listing
    /// stops, and below which records are old and keys forgotten (spec §5.2). Without a
    /// lookback, the watermark itself; a value the subtraction cannot make (out of
    /// range) is the lowest the type holds, so nothing is skipped.
    pub fn floor(&self, watermark: Val) -> Val {
        let Some(lookback) = &self.lookback else {
            return watermark;
        };
        match (watermark, lookback) {
            (Val::Datetime(d), Lookback::Millis(ms)) => Val::Datetime(
                i64::try_from(*ms)
                    .ok()
                    .map(chrono::TimeDelta::milliseconds)
                    .and_then(|back| d.checked_sub_signed(back))
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            ),
            (Val::Int(i), Lookback::Number(n)) => Val::Int(
                rust_decimal::prelude::ToPrimitive::to_i64(&n.ceil())
                    .and_then(|n| i.checked_sub(n))
                    .unwrap_or(i64::MIN),
            ),
            (Val::Decimal(d), Lookback::Number(n)) => {
                Val::Decimal(d.checked_sub(*n).unwrap_or(rust_decimal::Decimal::MIN))
            }
            (Val::Float(f), Lookback::Number(n)) => {
                let back = rust_decimal::prelude::ToPrimitive::to_f64(n).unwrap_or(0.0);
                Val::Float(f - back)
            }
            (other, _) => other,
        }
    }

    /// A stored watermark as a value of the cursor's type.
    pub fn cursor_value(&self, json: &Json) -> Option<Val> {
        let (_, ty) = self.cursor?;
        Val::from_json(json)
            .convert(ty)
            .ok()
            .filter(|v| !v.is_null())
    }

    pub fn passes(&self, r: &Record) -> bool {
        match &self.filter {
            None => true,
            Some(f) => f.test(&Env {
                item: None,
                parent: None,
                fields: &r.values,
            }),
        }
    }
}

/// A field's value converted to its type: a `json` field keeps what a bare path selects
/// exactly as the API wrote it (spec §4), the others convert what the expression gives.
fn field_value(expr: &Compiled, ty: Type, env: &Env) -> Result<Val, String> {
    match ty {
        Type::Json => expr.eval_json(env),
        _ => expr.eval(env).and_then(|v| v.convert(ty)),
    }
}
