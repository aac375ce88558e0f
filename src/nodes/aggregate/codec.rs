//! How an aggregate's view is persisted: its key-value spaces, their keys, the canonical
//! text of a value, and versioned entries (every stored value starts with [`VERSION`]).

use crate::nodes::value::{parse_decimal, Val};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::cmp::Ordering;

/// The version of every entry below; a later release reads or migrates by it.
pub const VERSION: u8 = 1;

/// The spaces a view is kept in, written together through the redo log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// (source, record key) → the record's [`Contrib`].
    Contrib,
    /// group id → [`GroupState`].
    Groups,
    /// (group id, compute, canonical value) → how many records hold the value: the
    /// multisets behind min, max and count_distinct, one entry per distinct value.
    Values,
    /// group id → its group values: groups changed but not yet delivered to the sinks.
    Outbox,
}

impl Space {
    pub const ALL: [Space; 4] = [Space::Contrib, Space::Groups, Space::Values, Space::Outbox];

    fn tag(self) -> u8 {
        self as u8
    }

    fn from_tag(t: u8) -> Option<Space> {
        Space::ALL.get(usize::from(t)).copied()
    }

    fn suffix(self) -> &'static str {
        match self {
            Space::Contrib => "contrib",
            Space::Groups => "groups",
            Space::Values => "values",
            Space::Outbox => "outbox",
        }
    }
}

/// The store names of one aggregate's spaces.
#[derive(Debug, Clone)]
pub struct Spaces {
    names: [String; 4],
    /// One entry while a batch is being applied: the writes to redo after a crash.
    pub redo: String,
    /// The fingerprint of the definition the view was built by.
    pub meta: String,
}

impl Spaces {
    pub fn new(aggregate: &str) -> Spaces {
        Spaces {
            names: Space::ALL.map(|s| format!("agg/{aggregate}/{}", s.suffix())),
            redo: format!("agg/{aggregate}/redo"),
            meta: format!("agg/{aggregate}/meta"),
        }
    }

    pub fn name(&self, s: Space) -> &str {
        &self.names[s as usize]
    }
}

/// What one record adds to its group, remembered so that an update can take it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contrib {
    /// The group id.
    pub g: String,
    /// Per computed field: the exact decimal (sum, avg) or canonical value (min, max,
    /// count_distinct) the record added; `None` for count and for nulls.
    pub a: Vec<Option<String>>,
}

/// One group of the view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupState {
    /// The group values, as first seen.
    pub v: Vec<Json>,
    /// Records in the group.
    pub n: u64,
    /// Per computed field.
    pub c: Vec<Acc>,
}

/// The running state of one computed field of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    /// Non-null values added (sum, avg), or distinct values held (min, max, count_distinct).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub n: u64,
    /// The exact sum (sum, avg).
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub s: Decimal,
    /// Values added by their decimal scale (sum, avg): a recomputation's sum has the
    /// greatest scale among the values held, which a retraction may lower.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub k: std::collections::BTreeMap<u32, u64>,
    /// The canonical text of the current extreme (min, max) and its value as shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xv: Option<Json>,
}

impl Acc {
    /// The sum at the scale a recomputation over the values held would give it. A view
    /// written before scales were counted keeps its sum as it is.
    pub fn sum(&self) -> Decimal {
        let counted: u64 = self.k.values().sum();
        match self.k.keys().next_back() {
            Some(&scale) if counted == self.n && scale != self.s.scale() => {
                let mut s = self.s;
                // Exact both ways: every value held has at most this scale, so a lower
                // one drops only zeros; a higher one (a zero sum is stored without its
                // scale) adds them.
                s.rescale(scale);
                s
            }
            _ => self.s,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A versioned JSON entry.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serialising these plain structs cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            serde_json::from_slice(rest).map_err(|e| format!("damaged {what}: {e}"))
        }
        Some((v, _)) => Err(format!(
            "{what} was written by another hamstr (entry version {v})"
        )),
        None => Err(format!("damaged {what}: empty entry")),
    }
}

/// A multiset entry: how many records hold the value, and the value as first seen.
pub fn encode_count(count: u64, shown: &Json) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&count.to_be_bytes());
    let _ = serde_json::to_writer(&mut out, shown);
    out
}

pub fn decode_count(bytes: &[u8]) -> Result<(u64, Json), String> {
    match bytes.split_first() {
        Some((&VERSION, rest)) if rest.len() >= 8 => {
            let (n, shown) = rest.split_at(8);
            let n = u64::from_be_bytes(n.try_into().map_err(|_| "damaged value count")?);
            let shown = serde_json::from_slice(shown).map_err(|e| format!("damaged value: {e}"))?;
            Ok((n, shown))
        }
        _ => Err("damaged or foreign value count entry".into()),
    }
}

/// The key of a record's contribution: its source, a zero byte, its key.
pub fn contrib_key(source: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(source.len() + 1 + key.len());
    out.extend_from_slice(source.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

/// The prefix of one group's multiset for one computed field; the canonical value follows.
pub fn values_prefix(group: &str, compute: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + group.len());
    out.extend_from_slice(&(group.len() as u32).to_be_bytes());
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&(compute as u16).to_be_bytes());
    out
}

pub fn values_key(group: &str, compute: usize, canon: &str) -> Vec<u8> {
    let mut out = values_prefix(group, compute);
    out.extend_from_slice(canon.as_bytes());
    out
}

/// The id of a group: its values as a JSON array, decimals without trailing zeros, so
/// that `12.5` and `12.50` are one group and a null is not an empty string.
pub fn group_id(values: &[Val]) -> String {
    Json::Array(
        values
            .iter()
            .map(|v| match v {
                Val::Decimal(d) => Json::String(d.normalize().to_string()),
                other => other.to_json(),
            })
            .collect(),
    )
    .to_string()
}

/// A value as text that is equal exactly when the values are: a kind letter, then the
/// value (numbers normalised, datetimes in UTC). Nulls have none.
pub fn canon(v: &Val) -> Option<String> {
    Some(match v {
        Val::Null | Val::Json(Json::Null) => return None,
        Val::Int(i) => format!("n{i}"),
        Val::Decimal(d) => format!("n{}", d.normalize()),
        Val::Float(f) => format!("f{f}"),
        Val::Str(s) => format!("s{s}"),
        Val::Bool(b) => format!("b{b}"),
        Val::Datetime(d) => format!("t{}", d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        Val::Json(j) => format!("j{j}"),
    })
}

/// The value a canonical text stands for.
pub fn uncanon(c: &str) -> Val {
    let (kind, text) = c.split_at(c.len().min(1));
    match kind {
        "n" => parse_decimal(text).map_or(Val::Null, Val::Decimal),
        "f" => text.parse().map_or(Val::Null, Val::Float),
        "s" => Val::Str(text.to_string()),
        "b" => Val::Bool(text == "true"),
        "t" => DateTime::parse_from_rfc3339(text)
            .map_or(Val::Null, |d| Val::Datetime(d.with_timezone(&Utc))),
        "j" => serde_json::from_str(text).map_or(Val::Null, Val::Json),
        _ => Val::Null,
    }
}

/// The order of two canonical values: by value, and by text where values do not compare
/// (so min and max are always defined).
pub fn order(a: &str, b: &str) -> Ordering {
    uncanon(a).compare(&uncanon(b)).unwrap_or_else(|| a.cmp(b))
}

/// One write of a batch: space, key, and the new value or `None` for a removal.
pub type Op = (Space, Vec<u8>, Option<Vec<u8>>);

/// The redo entry: every write of a batch, applied again after a crash.
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = vec![VERSION];
    for (space, key, value) in ops {
        out.push(space.tag());
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        match value {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
    }
    out
}

pub fn decode_ops(bytes: &[u8]) -> Result<Vec<Op>, String> {
    let damaged = || "damaged redo entry".to_string();
    let Some((&VERSION, mut rest)) = bytes.split_first() else {
        return Err("redo entry written by another hamstr".into());
    };
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(damaged());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut ops = Vec::new();
    while let Ok(tag) = take(1) {
        let space = Space::from_tag(tag[0]).ok_or_else(damaged)?;
        let klen = u32::from_be_bytes(take(4)?.try_into().map_err(|_| damaged())?);
        let key = take(klen as usize)?.to_vec();
        let value = match take(1)?[0] {
            0 => None,
            _ => {
                let vlen = u32::from_be_bytes(take(4)?.try_into().map_err(|_| damaged())?);
                Some(take(vlen as usize)?.to_vec())
            }
        };
        ops.push((space, key, value));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_values_are_equal_when_the_values_are() {
        let d = |s: &str| Val::Decimal(parse_decimal(s).unwrap());
        assert_eq!(canon(&d("12.50")), canon(&d("12.5")));
        assert_eq!(canon(&Val::Int(3)), canon(&d("3.00")));
        assert_ne!(canon(&Val::Str("3".into())), canon(&Val::Int(3)));
        assert_eq!(canon(&Val::Null), None);
        for v in [d("-0.25"), Val::Float(0.1), Val::Str("a\u{1f}b".into())] {
            let c = canon(&v).unwrap();
            assert_eq!(uncanon(&c).compare(&v), Some(Ordering::Equal));
        }
        assert_eq!(order("n-2", "n10"), Ordering::Less);
        assert_eq!(order("sb", "sa"), Ordering::Greater);
    }

    #[test]
    fn redo_entries_round_trip() {
        let ops = vec![
            (Space::Groups, b"[\"a\"]".to_vec(), Some(vec![1, 2, 3])),
            (Space::Values, vec![0, 0, 0, 1, b'x', 0, 2], None),
            (Space::Outbox, Vec::new(), Some(Vec::new())),
        ];
        assert_eq!(decode_ops(&encode_ops(&ops)).unwrap(), ops);
        assert!(decode_ops(&encode_ops(&ops)[..7]).is_err());
    }
}
