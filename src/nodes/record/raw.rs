//! A page whose record items are kept as their text: the body is parsed into a tree
//! except for the records array, whose items are only scanned (their JSON checked, their
//! place noted). An item becomes a record straight from its text ([`super::direct`]), so
//! a page of 500 records builds no tree of 500 objects that is dropped right after.
//!
//! The split applies where `records` is the body or a path of names (`$.data[*]`) and
//! the value there is an array. Any other shape (no such array, a member on the way that
//! is not an object, text that is not JSON) is parsed whole, as before: the split never
//! accepts what a whole parse refuses but for the depth limit, which a scan does not
//! apply (each item parsed from its text has the limit of its own).

use crate::check::PathStep;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use std::fmt;

/// The record items of a page, kept as text: the page and where each item is in it.
#[derive(Debug)]
pub struct RawRecords {
    text: String,
    /// The names that lead to the records' array.
    at: Vec<String>,
    spans: Vec<(usize, usize)>,
}

impl RawRecords {
    /// The steps of `path` below the records' array, when it leads through it.
    pub fn below<'p>(&self, path: &'p [PathStep]) -> Option<&'p [PathStep]> {
        let (to, rest) = path.split_at_checked(self.at.len())?;
        let through = to
            .iter()
            .zip(&self.at)
            .all(|(step, name)| matches!(step, PathStep::Name(n) if n == name));
        through.then_some(rest)
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The text of item `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let &(from, to) = self.spans.get(i)?;
        self.text.get(from..to)
    }

    /// Every item's text, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans
            .iter()
            .filter_map(|&(from, to)| self.text.get(from..to))
    }

    /// The items as the array a whole parse would have made.
    pub fn to_json(&self) -> Json {
        Json::Array(self.iter().map(parse_item).collect())
    }
}

/// An item's tree, parsed from its text. Its text was scanned as JSON already; only a
/// nesting deeper than the depth limit fails here, and is kept as its text.
pub fn parse_item(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string()))
}

/// Parses a body, keeping the items of the array at `steps` (names from the root; none
/// for the body itself) as text when there is one: the tree then holds `null` in the
/// array's place. `None` for the records when there is no such array.
pub fn split(bytes: Vec<u8>, steps: &[String]) -> serde_json::Result<(Json, Option<RawRecords>)> {
    let whole = |bytes: &[u8]| serde_json::from_slice::<Json>(bytes).map(|tree| (tree, None));
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return whole(e.as_bytes()),
    };
    let mut spans = None;
    let parsed = {
        let mut de = serde_json::Deserializer::from_str(&text);
        let seed = At {
            steps,
            spans: &mut spans,
            base: text.as_ptr() as usize,
        };
        seed.deserialize(&mut de)
            .and_then(|tree| de.end().map(|()| tree))
    };
    match (parsed, spans) {
        (Ok(tree), Some(spans)) => {
            let at = steps.to_vec();
            Ok((tree, Some(RawRecords { text, at, spans })))
        }
        (Ok(tree), None) => Ok((tree, None)),
        (Err(_), _) => whole(text.as_bytes()),
    }
}

/// The value at `steps` below the current one.
struct At<'s> {
    steps: &'s [String],
    spans: &'s mut Option<Vec<(usize, usize)>>,
    base: usize,
}

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        match self.steps.split_first() {
            None => {
                let items = Vec::<&'de RawValue>::deserialize(d)?;
                let spans = items
                    .iter()
                    .map(|item| {
                        let text = item.get();
                        let from = (text.as_ptr() as usize).checked_sub(self.base)?;
                        Some((from, from.checked_add(text.len())?))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| serde::de::Error::custom("an item outside the page"))?;
                *self.spans = Some(spans);
                Ok(Json::Null)
            }
            Some((name, rest)) => d.deserialize_map(Members {
                name,
                rest,
                spans: self.spans,
                base: self.base,
            }),
        }
    }
}

/// An object on the way to the records: its members as a whole parse makes them, but
/// the one named next.
struct Members<'s> {
    name: &'s str,
    rest: &'s [String],
    spans: &'s mut Option<Vec<(usize, usize)>>,
    base: usize,
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == self.name {
                map.next_value_seed(At {
                    steps: self.rest,
                    spans: &mut *self.spans,
                    base: self.base,
                })?
            } else {
                map.next_value::<Json>()?
            };
            // As a whole parse: a repeated name keeps its first place and its last value.
            members.insert(key, value);
        }
        Ok(Json::Object(members))
    }
}
