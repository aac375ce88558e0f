//! A page's commit in parts, and its rejected items held compactly until then.
//!
//! sled keeps every tree node a transaction rewrites until the transaction ends, a few
//! kilobytes a write: one transaction for a page of 100,000 small items needs about half
//! a gigabyte, whatever the page's size. So a page commits in parts of at most
//! [`PART_WRITES`] writes, each part one transaction, and everything one item writes (its
//! key, cursor index entry, rejection, child requests) in the same part. A crash between
//! two parts is a crash between two pages: the items of the committed parts are known,
//! the others come again with the page, which is fetched again; the watermark moves with
//! the last part only.
//!
//! A rejected item waits for its commit as the start of its JSON text (at most
//! [`ITEM_TEXT`] bytes) in one buffer per part, its reason shared with the item before
//! it when they agree: a page of a million tiny rejected items holds tens of bytes per
//! item, not a JSON object with a copy of the item and its own reason and timestamp.

use crate::state::PageCommit;
use serde_json::Value as Json;

/// The most writes (keys, index entries, rejections, child requests) one part commits.
pub const PART_WRITES: usize = 1000;

/// How much of a rejected item's JSON text its entry keeps: enough to find it at its
/// source; a larger item is kept as `item_excerpt`, its text cut there.
pub const ITEM_TEXT: usize = 4096;

/// One transaction's worth of a page's commit.
#[derive(Default)]
pub struct Part {
    pub commit: PageCommit,
    /// The (start of the) JSON text of each rejected item, one after another.
    text: String,
    rejected: Vec<Rejected>,
    reasons: Vec<String>,
}

/// 24 bytes and the item's text: a part's text stays below 4 GiB (`PART_WRITES` items
/// of at most `ITEM_TEXT` bytes), so offsets are `u32`.
struct Rejected {
    /// The record's key; an item without one gets a sequence number when committed.
    key: Option<Box<[u8]>>,
    reason: u32,
    /// Where its text ends in `Part::text` (it starts where the previous one ends); a
    /// text that was cut ends with `…`, which no whole JSON text ends with.
    end: u32,
}

impl Part {
    fn with_room(keys: usize) -> Part {
        let mut part = Part::default();
        part.commit.keys.reserve_exact(keys);
        part.commit.hashes.reserve_exact(keys);
        part
    }

    fn writes(&self) -> usize {
        let c = &self.commit;
        c.keys.len()
            + c.index.len()
            + c.unrejected.len()
            + c.child_requests.len()
            + self.rejected.len()
    }

    /// Notes a rejected item: its key (when it could be read), the reason and the item.
    pub fn reject(&mut self, key: Option<Vec<u8>>, reason: String, item: &Json) {
        if self.reasons.last() != Some(&reason) {
            self.reasons.push(reason);
        }
        let (text, cut) = crate::nodes::value::json_prefix(item, ITEM_TEXT);
        self.text.push_str(&text);
        if cut {
            self.text.push('…');
        }
        let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.rejected.push(Rejected {
            key: key.map(Vec::into_boxed_slice),
            reason: as_u32(self.reasons.len().saturating_sub(1)),
            end: as_u32(self.text.len()),
        });
    }

    /// The commit of this part, its rejected items as entries `{reason, item, at}` (or
    /// `item_excerpt` for a cut item); `next_id` numbers the items without a key.
    pub fn into_commit(self, at: &str, next_id: &dyn Fn() -> u64) -> PageCommit {
        let Part {
            mut commit,
            text,
            rejected,
            reasons,
        } = self;
        let mut start = 0;
        for r in rejected {
            let end = r.end as usize;
            let piece = text.get(start..end).unwrap_or_default();
            start = end;
            let mut entry = serde_json::Map::new();
            let reason = reasons.get(r.reason as usize).cloned().unwrap_or_default();
            entry.insert("reason".into(), Json::String(reason));
            match serde_json::from_str::<Json>(piece) {
                Ok(item) if !piece.ends_with('…') => entry.insert("item".into(), item),
                _ => entry.insert("item_excerpt".into(), Json::String(piece.to_string())),
            };
            entry.insert("at".into(), Json::String(at.to_string()));
            let id = match r.key {
                Some(k) => k.into_vec(),
                None => next_id().to_be_bytes().to_vec(),
            };
            commit.rejected.push((id, Json::Object(entry)));
        }
        commit
    }
}

/// The parts of one page, filled item by item.
pub struct Parts {
    done: Vec<Part>,
    current: Part,
    /// The items of the page: each part has room made at once for the keys of as many
    /// (at most [`PART_WRITES`]), rather than growing by doubling and copying.
    room: usize,
}

impl Parts {
    /// The parts of a page of `items` items.
    pub fn new(items: usize) -> Parts {
        Parts {
            done: Vec::new(),
            current: Part::with_room(items.min(PART_WRITES)),
            room: items,
        }
    }

    /// The part the next item writes to: the current one, or a new one when it is full.
    pub fn open(&mut self) -> &mut Part {
        if self.current.writes() >= PART_WRITES {
            let next = Part::with_room(self.room.min(PART_WRITES));
            self.done.push(std::mem::replace(&mut self.current, next));
        }
        &mut self.current
    }

    /// Every part, in order; at least one, so that even an empty page commits.
    pub fn into_vec(mut self) -> Vec<Part> {
        self.done.push(self.current);
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejected_items_become_entries_with_their_reason_and_item() {
        let mut parts = Parts::new(0);
        let big = json!({ "id": 3, "pad": "x".repeat(2 * ITEM_TEXT) });
        for (key, reason, item) in [
            (Some(b"1".to_vec()), "no id", json!({"a": 1})),
            (None, "no id", json!([])),
            (None, "too big", big.clone()),
        ] {
            parts.open().reject(key, reason.into(), &item);
        }
        let parts = parts.into_vec();
        assert_eq!(parts.len(), 1);
        let ids = std::cell::Cell::new(7u64);
        let next = || {
            ids.set(ids.get() + 1);
            ids.get()
        };
        let commit = parts.into_iter().next().unwrap().into_commit("T", &next);
        let entries: Vec<_> = commit
            .rejected
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            entries[0],
            (
                b"1".to_vec(),
                json!({"reason": "no id", "item": {"a": 1}, "at": "T"})
            )
        );
        assert_eq!(
            entries[1],
            (
                8u64.to_be_bytes().to_vec(),
                json!({"reason": "no id", "item": [], "at": "T"})
            )
        );
        let excerpt = entries[2].1["item_excerpt"].as_str().unwrap();
        assert!(excerpt.starts_with(r#"{"id":3,"pad":"xxx"#), "{excerpt}");
        assert_eq!(excerpt.chars().count(), ITEM_TEXT + 1);
        assert_eq!(entries[2].1["reason"], "too big");
    }

    #[test]
    fn a_page_is_cut_into_parts_between_items() {
        let mut parts = Parts::new(0);
        for i in 0..(2 * PART_WRITES + 1) {
            let part = parts.open();
            part.commit.keys.push((
                i.to_string().into_bytes(),
                crate::state::KeyEntry {
                    fingerprint: 0,
                    cursor: None,
                },
            ));
            part.commit.index.push((Vec::new(), Vec::new()));
        }
        let sizes: Vec<usize> = parts
            .into_vec()
            .iter()
            .map(|p| p.commit.keys.len())
            .collect();
        assert_eq!(
            sizes,
            [
                PART_WRITES / 2,
                PART_WRITES / 2,
                PART_WRITES / 2,
                PART_WRITES / 2,
                1
            ]
        );
    }
}
