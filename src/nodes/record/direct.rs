//! Records made straight from an item's text, where every field is a literal or a
//! singular path that starts with a name (`$.id`, `$.customer.email`): one pass over the
//! item's members notes where each field's member is, unknown members are skipped, and
//! each value is read from its text — a string without escapes and a number are read
//! where they lie, a datetime parsed from the page itself. Only a member a field reads
//! below (`$.customer.email`) or keeps as `json` is parsed into a tree.
//!
//! What a field gets is exactly what [`super::Extractor`] gets from the item's tree: the
//! same null for a missing member, the same value for a number's text (serde_json keeps
//! numbers as their text here, `arbitrary_precision`), the same last value for a
//! repeated name, the same reasons. An item that is not an object is left to the tree.

use super::super::eval::{walk, Compiled, Path};
use super::super::value::{number_text_val, Val};
use crate::check::{PathStep, Type};
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

/// How each field of a source is read from an item's text.
#[derive(Debug)]
pub struct Direct {
    /// The member names the fields start with, each once.
    names: Vec<String>,
    fields: Vec<Read>,
}

#[derive(Debug)]
enum Read {
    Lit(Val),
    /// Member `names[at]`, then `rest` below it. `copy`: a field whose text is written
    /// out as it is when it is exactly what its value writes ([`Direct::copied`]).
    Member {
        at: usize,
        rest: Vec<PathStep>,
        copy: Option<Copy>,
    },
}

/// A field whose member's text may be written out as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// A `json` field: its text when serde_json would write its tree so.
    Json,
    /// A `string` field: a string without escapes, written as it is read.
    Str,
}

/// Where an item's members are: the text of each name's member, if it has one.
pub struct Found<'a>(Vec<Option<&'a str>>);

impl Direct {
    /// The plan for these fields, when every one can be read so: each field's expression,
    /// and how its text may be copied (a `json` or `string` field nothing else reads).
    pub fn plan<'e>(exprs: impl Iterator<Item = (&'e Compiled, Option<Copy>)>) -> Option<Direct> {
        let mut names: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        for (expr, copy) in exprs {
            fields.push(match expr {
                Compiled::Lit(v) => Read::Lit(v.clone()),
                Compiled::Path(Path::Singular(steps)) => match steps.split_first() {
                    Some((PathStep::Name(name), rest)) => {
                        let at = match names.iter().position(|n| n == name) {
                            Some(at) => at,
                            None => {
                                names.push(name.clone());
                                names.len().checked_sub(1)?
                            }
                        };
                        Read::Member {
                            at,
                            rest: rest.to_vec(),
                            copy,
                        }
                    }
                    _ => return None,
                },
                _ => return None,
            });
        }
        Some(Direct { names, fields })
    }

    /// The members of an item's text (JSON checked by [`super::raw::split`]), or `None`
    /// when it is not an object.
    pub fn find<'a>(&self, item: &'a str) -> Option<Found<'a>> {
        let mut found = vec![None; self.names.len()];
        // Items of one API list their members in one order: the name after the one
        // found last is tried first.
        let mut next = 0;
        super::scan::members(item, |name, value| {
            let at = match self.names.get(next) {
                Some(n) if n == name => Some(next),
                _ => self.names.iter().position(|n| n == name),
            };
            // A repeated name: its last value, as in the tree.
            if let Some(slot) = at.and_then(|at| found.get_mut(at)) {
                *slot = Some(value);
            }
            if let Some(at) = at {
                next = at.saturating_add(1);
            }
        })?;
        Some(Found(found))
    }

    /// The text of field `i`'s member to write out as it is: a field planned to be
    /// copied that reads a member whole (`$.name`), there, not null, and written exactly
    /// as its value would write it: a `json` field's tree ([`super::scan::canonical`]),
    /// a `string` field's string without escapes (checked JSON holds no control
    /// character in a string, so there is nothing [`crate::nodes::value::write_str`]
    /// would escape either).
    pub fn copied<'a>(&self, i: usize, found: &Found<'a>) -> Option<&'a str> {
        match self.fields.get(i)? {
            Read::Member {
                at,
                rest,
                copy: Some(copy),
            } if rest.is_empty() => {
                let text = found.0.get(*at).copied().flatten()?;
                let exact = match copy {
                    Copy::Json => text != "null" && super::scan::canonical(text),
                    Copy::Str => plain_str(text).is_some(),
                };
                exact.then_some(text)
            }
            _ => None,
        }
    }

    /// Field `i`'s value from the members found, as the tree would give it: converted
    /// to `ty`, a `json` field kept as the API wrote it.
    pub fn value(&self, i: usize, found: &Found, ty: Type) -> Result<Val, String> {
        let (at, rest) = match self.fields.get(i) {
            Some(Read::Member { at, rest, .. }) => (*at, rest),
            Some(Read::Lit(v)) => return v.clone().convert(ty),
            None => return Ok(Val::Null),
        };
        let Some(text) = found.0.get(at).copied().flatten() else {
            return Ok(Val::Null);
        };
        if !rest.is_empty() {
            let tree = tree(text)?;
            return Ok(match (walk(&tree, rest), ty) {
                (None | Some(Json::Null), Type::Json) => Val::Null,
                (Some(j), Type::Json) => Val::Json(j.clone()),
                (None, _) => Val::Null,
                (Some(j), _) => return Val::from_json(j).convert(ty),
            });
        }
        match ty {
            Type::Json if text == "null" => Ok(Val::Null),
            Type::Json => tree(text).map(Val::Json),
            Type::Datetime => match plain_str(text) {
                // Parsed where it lies; a string that is not one gets its reason below.
                Some(s) => match DateTime::parse_from_rfc3339(s.trim()) {
                    Ok(d) => Ok(Val::Datetime(d.with_timezone(&Utc))),
                    Err(_) => scalar(text)?.convert(ty),
                },
                None => scalar(text)?.convert(ty),
            },
            _ => scalar(text)?.convert(ty),
        }
    }
}

/// The text between the quotes of a string without escapes.
fn plain_str(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A member's value as [`Val::from_json`] makes it of the member's tree.
fn scalar(text: &str) -> Result<Val, String> {
    Ok(match text.as_bytes().first() {
        Some(b'n') => Val::Null,
        Some(b't') => Val::Bool(true),
        Some(b'f') => Val::Bool(false),
        Some(b'"') => Val::Str(match plain_str(text) {
            Some(s) => s.to_string(),
            None => serde_json::from_str::<String>(text).map_err(|e| e.to_string())?,
        }),
        Some(b'{' | b'[') => Val::Json(tree(text)?),
        _ => number_text_val(text),
    })
}

fn tree(text: &str) -> Result<Json, String> {
    serde_json::from_str(text).map_err(|e| format!("the value is not JSON that can be read ({e})"))
}
