//! A page whose record items are kept as their text: the body is parsed into a tree
//! except for the records array, whose items are only scanned (their JSON checked, their
//! place noted). An item becomes a record straight from its text ([`super::direct`]), so
//! a page of 500 records builds no tree of 500 objects that is dropped right after.
//!
//! Where every item is an object with members and names without escapes (what APIs
//! send), the same pass notes where each item's members are: each name and its value's
//! text, read by serde_json as it checks them, so that making a record does not walk the
//! item's text again ([`Scanned`]). A page where that does not hold is split as before,
//! its items kept as their text alone.
//!
//! The split applies where `records` is the body or a path of names (`$.data[*]`) and
//! the value there is an array. Any other shape (no such array, a member on the way that
//! is not an object, text that is not JSON) is parsed whole, as before: the split never
//! accepts what a whole parse refuses but for the depth limit, which a scan does not
//! apply (each item parsed from its text has the limit of its own).

use super::Item;
use crate::check::PathStep;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use std::cell::Cell;
use std::fmt;

/// The record items of a page, kept as text: the page and where each item is in it.
#[derive(Debug)]
pub struct RawRecords {
    text: String,
    /// The names that lead to the records' array.
    at: Vec<String>,
    spans: Vec<(usize, usize)>,
    /// Where each item's members are, when the split found them.
    members: Option<Members>,
}

/// The members of a page's items: for each member, where its name (between the quotes)
/// and its value's text are in the page; item `i`'s are `list[at[i]..at[i + 1]]`.
#[derive(Debug, Default)]
struct Members {
    at: Vec<u32>,
    list: Vec<[u32; 4]>,
}

/// An item's text with its members as the split found them, in order: each name (no
/// escapes in it) and its value's text. (Item `i` of its page: as small as a text.)
#[derive(Clone, Copy)]
pub struct Scanned<'a> {
    page: &'a RawRecords,
    i: usize,
}

impl<'a> Scanned<'a> {
    pub fn text(&self) -> &'a str {
        self.page.get(self.i).unwrap_or_default()
    }

    pub fn members(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let text = self.page.text.as_str();
        let list = self.page.members.as_ref().and_then(|m| {
            let from = *m.at.get(self.i)? as usize;
            let to = *m.at.get(self.i.checked_add(1)?)? as usize;
            m.list.get(from..to)
        });
        list.unwrap_or_default()
            .iter()
            .filter_map(move |&[nf, nt, vf, vt]| {
                let name = text.get(nf as usize..nt as usize)?;
                let value = text.get(vf as usize..vt as usize)?;
                Some((name, value))
            })
    }
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

    /// Lets go of where the items' members are (once their records are made): the
    /// items are kept as their text alone.
    pub fn forget_members(&mut self) {
        if let Some(members) = self.members.take() {
            give_back(members);
        }
    }

    /// Every item, in order: its text, with its members where the split found them.
    pub fn items(&self) -> impl Iterator<Item = Item<'_>> {
        (0..self.spans.len()).filter_map(move |i| match &self.members {
            Some(_) => Some(Item::Scanned(Scanned { page: self, i })),
            None => self.get(i).map(Item::Text),
        })
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
    // Offsets are kept in 32 bits.
    let mut members = (u32::try_from(text.len()).is_ok()).then(spare);
    let mut parsed = split_text(&text, steps, members.as_mut());
    if parsed.is_err() {
        if let Some(members) = members.take() {
            // An item that is not an object with members, or a name with an escape: the
            // page is split again, its items kept as their text alone.
            give_back(members);
            parsed = split_text(&text, steps, None);
        }
    }
    match parsed {
        Ok((tree, Some(spans))) => {
            let at = steps.to_vec();
            Ok((
                tree,
                Some(RawRecords {
                    text,
                    at,
                    spans,
                    members,
                }),
            ))
        }
        Ok((tree, None)) => {
            if let Some(members) = members {
                give_back(members);
            }
            Ok((tree, None))
        }
        Err(_) => whole(text.as_bytes()),
    }
}

impl Drop for RawRecords {
    fn drop(&mut self) {
        self.forget_members();
    }
}

thread_local! {
    /// A page's members buffer, given back when its page lets go of it and taken by
    /// the next page split on the thread: a page of 500 items of 11 fields notes 88 KB
    /// of members, and with a buffer made for each page a keyed jsonl run peaked at
    /// 49.4 MiB against 46.9 before members were noted (medians of 15 runs); with the
    /// buffer given back, at 48.4 against 47.7.
    static SPARE: Cell<Members> = Cell::new(Members::default());
}

/// The most members a buffer given back may have room for (1 MiB).
const SPARE_MAX: usize = 65_536;

/// The buffer kept on this thread (a new one when there is none, or when the thread is
/// ending and its keeping is gone).
fn spare() -> Members {
    SPARE.try_with(Cell::take).unwrap_or_default()
}

/// Keeps `members` for the next page split on this thread, if there is room.
fn give_back(mut members: Members) {
    if members.list.capacity() > SPARE_MAX {
        return;
    }
    members.at.clear();
    members.list.clear();
    // A page dropped while its thread ends lets its buffer go.
    let _ = SPARE.try_with(|kept| {
        let held = kept.take();
        // The larger of the two stays.
        kept.set(if held.list.capacity() > members.list.capacity() {
            held
        } else {
            members
        });
    });
}

/// Where each item of a page is: from and to.
type Spans = Vec<(usize, usize)>;

/// The tree of `text` without the array at `steps`, and its items' spans; with their
/// members in `members` when given (then an item that is not an object with members,
/// or a name with an escape, fails the split).
fn split_text(
    text: &str,
    steps: &[String],
    members: Option<&mut Members>,
) -> serde_json::Result<(Json, Option<Spans>)> {
    let mut spans = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = At {
        steps,
        out: Out {
            spans: &mut spans,
            members,
            text,
        },
    };
    let tree = seed.deserialize(&mut de)?;
    de.end()?;
    Ok((tree, spans))
}

/// Where the split notes what it finds of the records' array.
struct Out<'s, 'de> {
    spans: &'s mut Option<Spans>,
    members: Option<&'s mut Members>,
    text: &'de str,
}

impl<'de> Out<'_, 'de> {
    fn reborrow(&mut self) -> Out<'_, 'de> {
        Out {
            spans: &mut *self.spans,
            members: self.members.as_deref_mut(),
            text: self.text,
        }
    }
}

/// Where `part` (a slice of `page`) starts in the page.
fn offset(page: &str, part: &str) -> Option<usize> {
    (part.as_ptr() as usize).checked_sub(page.as_ptr() as usize)
}

/// The value at `steps` below the current one.
struct At<'s, 'de> {
    steps: &'s [String],
    out: Out<'s, 'de>,
}

impl<'de> DeserializeSeed<'de> for At<'_, 'de> {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        let Out {
            spans,
            members,
            text: page,
        } = self.out;
        match (self.steps.split_first(), members) {
            (None, Some(members)) => {
                d.deserialize_seq(Array {
                    spans,
                    members,
                    page,
                })?;
                Ok(Json::Null)
            }
            (None, None) => {
                let items = Vec::<&'de RawValue>::deserialize(d)?;
                let found = items
                    .iter()
                    .map(|item| {
                        let text = item.get();
                        let from = offset(page, text)?;
                        Some((from, from.checked_add(text.len())?))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| serde::de::Error::custom("an item outside the page"))?;
                *spans = Some(found);
                Ok(Json::Null)
            }
            (Some((name, rest)), members) => d.deserialize_map(Through {
                name,
                rest,
                out: Out {
                    spans,
                    members,
                    text: page,
                },
            }),
        }
    }
}

/// An object on the way to the records: its members as a whole parse makes them, but
/// the one named next.
struct Through<'s, 'de> {
    name: &'s str,
    rest: &'s [String],
    out: Out<'s, 'de>,
}

impl<'de> Visitor<'de> for Through<'_, 'de> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == self.name {
                map.next_value_seed(At {
                    steps: self.rest,
                    out: self.out.reborrow(),
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

/// The records' array, each item read as an object whose members are noted.
struct Array<'s, 'de> {
    spans: &'s mut Option<Spans>,
    members: &'s mut Members,
    page: &'de str,
}

impl<'de> Visitor<'de> for Array<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Array {
            spans: out,
            members,
            page,
        } = self;
        // A name repeated on the way: the last array is the records', as in the tree.
        members.at.clear();
        members.list.clear();
        let mut spans = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let first = members.list.len();
            let at = u32::try_from(first).map_err(serde::de::Error::custom)?;
            let item = Object {
                members: &mut *members,
                page,
            };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
            members.at.push(at);
            let found = members.list.get(first..).unwrap_or_default();
            let span = item_span(page, found)
                .ok_or_else(|| serde::de::Error::custom("an item outside the page"))?;
            spans.push(span);
        }
        let end = u32::try_from(members.list.len()).map_err(serde::de::Error::custom)?;
        members.at.push(end);
        *out = Some(spans);
        Ok(())
    }
}

/// Where an object item is in the page, from its first name and last value: the `{`
/// before the one, the `}` after the other, with nothing between but space.
fn item_span(page: &str, members: &[[u32; 4]]) -> Option<(usize, usize)> {
    let b = page.as_bytes();
    let space = |c: &u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t');
    // The name's opening quote, then space back to the `{`.
    let quote = (members.first()?[0] as usize).checked_sub(1)?;
    let before = b.get(..quote)?;
    let open = before.iter().rposition(|c| !space(c))?;
    let after_value = members.last()?[3] as usize;
    let close = after_value.checked_add(b.get(after_value..)?.iter().position(|c| !space(c))?)?;
    (b.get(open) == Some(&b'{') && b.get(close) == Some(&b'}'))
        .then_some((open, close.checked_add(1)?))
}

/// An item: an object whose members, each a name without escapes, are noted.
struct Object<'s, 'de> {
    members: &'s mut Members,
    page: &'de str,
}

impl<'de> DeserializeSeed<'de> for Object<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Object<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Where a part of the page starts and ends in it.
        let span = |part: &str| -> Option<[u32; 2]> {
            let from = offset(self.page, part)?;
            let to = from.checked_add(part.len())?;
            Some([u32::try_from(from).ok()?, u32::try_from(to).ok()?])
        };
        let mut any = false;
        while let Some(Name(name)) = map.next_key()? {
            let value = map.next_value::<&'de RawValue>()?.get();
            let (Some([nf, nt]), Some([vf, vt])) = (span(name), span(value)) else {
                return Err(serde::de::Error::custom("a member outside the page"));
            };
            self.members.list.push([nf, nt, vf, vt]);
            any = true;
        }
        if !any {
            return Err(serde::de::Error::custom("an object without members"));
        }
        Ok(())
    }
}

/// A member's name as it lies in the page: one with an escape fails.
struct Name<'de>(&'de str);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name<'de>, D::Error> {
        struct Borrowed;
        impl<'de> Visitor<'de> for Borrowed {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name without escapes")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                name: &'de str,
            ) -> Result<Name<'de>, E> {
                Ok(Name(name))
            }
        }
        d.deserialize_str(Borrowed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{split, Item};

    type Pairs = Option<Vec<(String, String)>>;

    fn items(page: &str) -> Vec<(String, Pairs)> {
        let (_, raw) = split(page.as_bytes().to_vec(), &["data".to_string()]).unwrap();
        let raw = raw.unwrap();
        raw.items()
            .map(|item| match item {
                Item::Scanned(s) => (
                    s.text().to_string(),
                    Some(
                        s.members()
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .collect(),
                    ),
                ),
                Item::Text(t) => (t.to_string(), None),
                Item::Json(_) => unreachable!(),
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Pairs {
        Some(
            p.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn object_items_are_split_with_their_members() {
        let page = "{\"n\":1, \"data\" : [ {\"a\":1,\"b\":\"x,}\"} ,\n  {\n \"c\" : {\"d\":[1,2]} , \"a\":null ,\"a\":2 }\t] }";
        assert_eq!(
            items(page),
            vec![
                (
                    "{\"a\":1,\"b\":\"x,}\"}".to_string(),
                    pairs(&[("a", "1"), ("b", "\"x,}\"")])
                ),
                (
                    "{\n \"c\" : {\"d\":[1,2]} , \"a\":null ,\"a\":2 }".to_string(),
                    pairs(&[("c", "{\"d\":[1,2]}"), ("a", "null"), ("a", "2")])
                ),
            ]
        );
        assert_eq!(items("{\"data\":[]}"), vec![]);
        // A name given twice: its last value, as in the tree.
        assert_eq!(
            items("{\"data\":[{\"a\":1}],\"data\":[{\"b\":2},{\"c\":3}]}"),
            vec![
                ("{\"b\":2}".to_string(), pairs(&[("b", "2")])),
                ("{\"c\":3}".to_string(), pairs(&[("c", "3")])),
            ]
        );
    }

    /// An item that is not an object with members, or a name with an escape: the page's
    /// items are kept as their text alone.
    #[test]
    fn other_items_are_kept_as_text() {
        for (page, texts) in [
            ("{\"data\":[{\"a\":1},{}]}", vec!["{\"a\":1}", "{}"]),
            (
                "{\"data\":[{\"a\":1}, 2, \"s\"]}",
                vec!["{\"a\":1}", "2", "\"s\""],
            ),
            ("{\"data\":[{\"\\u0061\":1}]}", vec!["{\"\\u0061\":1}"]),
            ("{\"data\":[[{\"a\":1}]]}", vec!["[{\"a\":1}]"]),
        ] {
            let got = items(page);
            assert_eq!(
                got,
                texts
                    .iter()
                    .map(|t| (t.to_string(), None))
                    .collect::<Vec<_>>(),
                "{page}"
            );
        }
    }

    /// A page's members buffer goes back to the thread when the page is dropped, for
    /// the next page; one larger than the bound does not.
    #[test]
    fn members_buffers_are_given_back() {
        let spare = || {
            super::SPARE.with(|s| {
                let m = s.take();
                let room = m.list.capacity();
                s.set(m);
                room
            })
        };
        let page = |n: usize| {
            let items = vec!["{\"a\":1,\"b\":2}"; n].join(",");
            split(
                format!("{{\"data\":[{items}]}}").into_bytes(),
                &["data".to_string()],
            )
            .unwrap()
        };
        super::SPARE.with(|s| s.take());
        drop(page(100));
        let room = spare();
        assert!(room >= 200, "{room}");
        drop(page(50));
        assert_eq!(spare(), room);
        super::SPARE.with(|s| s.take());
        drop(page(super::SPARE_MAX));
        assert_eq!(spare(), 0);
    }

    /// A page dropped by a thread-local's destructor, as its thread ends, is dropped
    /// without a panic whichever of the two goes first.
    #[test]
    fn a_page_dropped_as_its_thread_ends_is_let_go() {
        struct Holder(Option<super::RawRecords>);
        impl Drop for Holder {
            fn drop(&mut self) {
                drop(self.0.take());
            }
        }
        thread_local! {
            static HELD: std::cell::RefCell<Holder> = const { std::cell::RefCell::new(Holder(None)) };
        }
        for holder_first in [true, false] {
            std::thread::spawn(move || {
                if holder_first {
                    // Made before the split's buffer, it goes after it.
                    HELD.with(|_| ());
                }
                let (_, raw) =
                    split(b"{\"data\":[{\"a\":1}]}".to_vec(), &["data".to_string()]).unwrap();
                HELD.with(|h| h.borrow_mut().0 = raw);
            })
            .join()
            .unwrap();
        }
    }

    /// Text that is not JSON is refused, as a whole parse refuses it.
    #[test]
    fn bad_pages_are_refused() {
        for page in [
            "{\"data\":[{\"a\":1},]}",
            "{\"data\":[{\"a\":1}",
            "{\"data\":[{\"a\" 1}]}",
            "{\"data\":[{\"a\":\"\u{1}\"}]}",
        ] {
            assert!(
                split(page.as_bytes().to_vec(), &["data".to_string()]).is_err(),
                "{page}"
            );
        }
    }
}
