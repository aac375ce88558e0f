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
        copy: Option<Verbatim>,
    },
}

/// A field whose member's text may be written out as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbatim {
    /// A `json` field: its text when serde_json would write its tree so.
    Json,
    /// A `string` field: a string without escapes, written as it is read.
    Str,
    /// A `decimal` field: a number, or a string of one, written as the decimal writes
    /// (`12.50`: no leading zero, no exponent, at most 28 digits).
    Decimal,
    /// A `datetime` field: a string written as the datetime writes
    /// (`2024-03-01T12:00:00.250Z`: UTC as `Z`, a fraction of 3, 6 or 9 digits that
    /// cannot be shorter).
    Datetime,
}

/// A member's text written out in place of its value: as it is, or between quotes (a
/// decimal given as a JSON number is written as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied<'a> {
    Text(&'a str),
    Quoted(&'a str),
}

impl Copied<'_> {
    /// Appends the text as the value would write.
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Copied::Text(t) => out.extend_from_slice(t.as_bytes()),
            Copied::Quoted(t) => {
                out.push(b'"');
                out.extend_from_slice(t.as_bytes());
                out.push(b'"');
            }
        }
    }
}

/// Where an item's members are: the text of each name's member, if it has one.
pub struct Found<'a>(Vec<Option<&'a str>>);

impl<'a> Found<'a> {
    /// Its list, for the next item's ([`Direct::find`], [`Direct::found`]).
    pub fn into_room(self) -> Vec<Option<&'a str>> {
        self.0
    }
}

/// Notes an item's members, one after another, in their places.
struct Finder<'d, 'a> {
    names: &'d [String],
    found: Found<'a>,
    /// Items of one API list their members in one order: the name after the one found
    /// last is tried first.
    next: usize,
}

impl<'d, 'a> Finder<'d, 'a> {
    /// A finder noting into `room` (the list of an item before, or a new one).
    fn new(direct: &'d Direct, mut room: Vec<Option<&'a str>>) -> Self {
        room.clear();
        room.resize(direct.names.len(), None);
        Finder {
            names: &direct.names,
            found: Found(room),
            next: 0,
        }
    }

    fn member(&mut self, name: &str, value: &'a str) {
        let at = match self.names.get(self.next) {
            Some(n) if n == name => Some(self.next),
            _ => self.names.iter().position(|n| n == name),
        };
        // A repeated name: its last value, as in the tree.
        if let Some(slot) = at.and_then(|at| self.found.0.get_mut(at)) {
            *slot = Some(value);
        }
        if let Some(at) = at {
            self.next = at.saturating_add(1);
        }
    }
}

impl Direct {
    /// The plan for these fields, when every one can be read so: each field's expression,
    /// and how its text may be copied (a `json`, `string`, `decimal` or `datetime` field
    /// nothing else reads).
    pub fn plan<'e>(
        exprs: impl Iterator<Item = (&'e Compiled, Option<Verbatim>)>,
    ) -> Option<Direct> {
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
    /// `room` is a list to note them in (see [`Found::into_room`]).
    pub fn find<'a>(&self, item: &'a str, room: Vec<Option<&'a str>>) -> Option<Found<'a>> {
        let mut finder = Finder::new(self, room);
        super::scan::members(item, |name, value| finder.member(name, value))?;
        Some(finder.found)
    }

    /// Where an item's members are, from its members (names decoded, value texts) in
    /// order, noted in `room`.
    pub fn found<'a>(
        &self,
        members: impl Iterator<Item = (&'a str, &'a str)>,
        room: Vec<Option<&'a str>>,
    ) -> Found<'a> {
        let mut finder = Finder::new(self, room);
        for (name, value) in members {
            finder.member(name, value);
        }
        finder.found
    }

    /// The text of field `i`'s member to write out in place of its value: a field
    /// planned to be copied that reads a member whole (`$.name`), there, not null, and
    /// written exactly as its value would write it: a `json` field's tree
    /// ([`super::scan::canonical`]), a `string` field's string without escapes (checked
    /// JSON holds no control character in a string, so there is nothing
    /// [`crate::nodes::value::write_str`] would escape either), a decimal or datetime
    /// written as [`crate::nodes::value::Val::write_json`] writes it.
    pub fn copied<'a>(&self, i: usize, found: &Found<'a>) -> Option<Copied<'a>> {
        match self.fields.get(i)? {
            Read::Member {
                at,
                rest,
                copy: Some(copy),
            } if rest.is_empty() => {
                let text = found.0.get(*at).copied().flatten()?;
                match copy {
                    Verbatim::Json => (text != "null" && super::scan::canonical(text))
                        .then_some(Copied::Text(text)),
                    Verbatim::Str => plain_str(text).map(|_| Copied::Text(text)),
                    Verbatim::Decimal => match plain_str(text) {
                        Some(s) => plain_decimal(s).then_some(Copied::Text(text)),
                        None => plain_decimal(text).then_some(Copied::Quoted(text)),
                    },
                    Verbatim::Datetime => plain_str(text)
                        .is_some_and(plain_datetime)
                        .then_some(Copied::Text(text)),
                }
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

/// Whether `s` is a decimal written as its value writes it: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`,
/// at most 28 digits (a decimal holds them all, its scale the digits after the point),
/// not a negative zero.
fn plain_decimal(s: &str) -> bool {
    let (negative, number) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    let whole_ok = digits(whole) && (whole.len() == 1 || !whole.starts_with('0'));
    let fraction_ok = fraction.is_none_or(digits);
    let count = whole.len().saturating_add(fraction.map_or(0, str::len));
    let zero = number.bytes().all(|c| c == b'0' || c == b'.');
    whole_ok && fraction_ok && count <= 28 && !(negative && zero)
}

/// Whether `s` is a datetime written as its value writes it
/// (`YYYY-MM-DDThh:mm:ss[.fff[fff[fff]]]Z`, a real date and time of the years 1 to 9999,
/// no leap second, a fraction that its value would not write shorter).
fn plain_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let number = |from: usize, len: usize| -> Option<u32> {
        let d = b.get(from..from.checked_add(len)?)?;
        d.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| {
                n.saturating_mul(10)
                    .saturating_add(u32::from(c.saturating_sub(b'0')))
            })
        })
    };
    let fixed = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
        .iter()
        .all(|&(at, c)| b.get(at) == Some(&c));
    let fraction = match (b.get(19), b.len()) {
        (Some(b'Z'), 20) => true,
        (Some(b'.'), len @ (24 | 27 | 30)) => {
            // The digits between the point and the `Z`, and their last three.
            let width = len.saturating_sub(21);
            let last3 = b.get(len.saturating_sub(4)..len.saturating_sub(1));
            b.last() == Some(&b'Z') && number(20, width).is_some() && last3 != Some(&b"000"[..])
        }
        _ => false,
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0, 4),
        number(5, 2),
        number(8, 2),
        number(11, 2),
        number(14, 2),
        number(17, 2),
    ) else {
        return false;
    };
    fixed
        && fraction
        && year >= 1
        && hour < 24
        && minute < 60
        && second < 60
        && i32::try_from(year)
            .ok()
            .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, month, day))
            .is_some()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{plain_datetime, plain_decimal};
    use crate::check::Type;
    use crate::nodes::value::{number_text_val, Val};
    use proptest::prelude::*;

    /// What the value of `text` (a string's inner text, or a number's) writes.
    fn written(v: Val, ty: Type) -> Option<String> {
        let mut out = Vec::new();
        v.convert(ty).ok()?.write_json(&mut out);
        String::from_utf8(out).ok()
    }

    /// A copied decimal is what its value writes, from a string and from a number.
    fn decimal_copy_is_exact(s: &str) {
        if plain_decimal(s) {
            let quoted = format!("\"{s}\"");
            assert_eq!(
                written(Val::Str(s.into()), Type::Decimal),
                Some(quoted.clone()),
                "{s}"
            );
            assert_eq!(
                written(number_text_val(s), Type::Decimal),
                Some(quoted),
                "{s}"
            );
        }
    }

    /// A copied datetime is what its value writes.
    fn datetime_copy_is_exact(s: &str) {
        if plain_datetime(s) {
            assert_eq!(
                written(Val::Str(s.into()), Type::Datetime),
                Some(format!("\"{s}\"")),
                "{s}"
            );
        }
    }

    #[test]
    fn decimals_copied_are_those_written_alike() {
        for s in [
            "0",
            "12.50",
            "-3.1",
            "0.001",
            "1234567890123456789012345678",
            "1.0",
        ] {
            assert!(plain_decimal(s), "{s}");
            decimal_copy_is_exact(s);
        }
        for s in [
            "",
            "-",
            "01",
            "-0",
            "-0.00",
            "1.",
            ".5",
            "1e3",
            "1E3",
            "+1",
            " 1",
            "1 ",
            "1,5",
            "12345678901234567890123456789",
            "0x10",
            "1..2",
        ] {
            assert!(!plain_decimal(s), "{s}");
        }
    }

    #[test]
    fn datetimes_copied_are_those_written_alike() {
        for s in [
            "2024-02-29T23:59:59Z",
            "2024-03-01T12:00:00.250Z",
            "2024-03-01T12:00:00.000001Z",
            "2024-03-01T12:00:00.000000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert!(plain_datetime(s), "{s}");
            datetime_copy_is_exact(s);
        }
        for s in [
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-03-01T12:00:00.000Z",
            "2024-03-01T12:00:00.120000Z",
            "2024-03-01T12:00:00.100000000Z",
            "2024-03-01T12:00:00.1Z",
            "2024-03-01T24:00:00Z",
            "2024-03-01T12:60:00Z",
            "2024-03-01T12:00:60Z",
            "2024-03-01t12:00:00Z",
            "2024-03-01 12:00:00Z",
            "2024-03-01T12:00:00z",
            "2024-03-01T12:00:00+00:00",
            "2024-13-01T12:00:00Z",
            "2024-00-01T12:00:00Z",
            "0000-01-01T00:00:00Z",
            "2024-03-01T12:00:00",
            "2024-3-01T12:00:00Z",
            "2024-03-01T12:00:00.12a4Z",
        ] {
            assert!(!plain_datetime(s), "{s}");
        }
    }

    proptest! {
        #[test]
        fn a_copied_decimal_writes_as_its_value(
            s in "-?[0-9]{1,30}(\\.[0-9]{1,30})?",
        ) {
            decimal_copy_is_exact(&s);
        }

        #[test]
        fn a_copied_datetime_writes_as_its_value(
            s in "[0-9]{4}-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.([0-9]{3}|[0-9]{6}|[0-9]{9}|0{3}|[0-9]{3}0{3}|[0-9]{6}0{3}))?Z",
        ) {
            datetime_copy_is_exact(&s);
        }
    }
}
