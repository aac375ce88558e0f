//! A page's commit, atomic without sled's global write lock. sled makes a batch or a
//! transaction atomic by taking a database-wide write lock, which would stop every sink
//! writing while a source commits. Instead the whole commit is first written as one value
//! (one insert is atomic) under the source's name in the `commits` tree, then applied
//! with plain inserts, then removed. A crash in between leaves the record behind and
//! [`replay`] applies it again when the store opens: every commit is all or nothing.

use super::{Result, StateError};

/// One write of a commit: to tree `tree` (an index into the commit's tree names), put
/// `value` at `key`, or remove `key`.
pub(super) struct Op<'a> {
    pub tree: u32,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// The record of a commit: its tree names, then its writes.
pub(super) fn encode(trees: &[String], ops: &[Op]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|o| 10 + o.key.len() + o.value.map_or(0, <[u8]>::len))
        .sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(&(trees.len() as u32).to_be_bytes());
    for t in trees {
        put_bytes(&mut out, t.as_bytes());
    }
    out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
    for o in ops {
        out.extend_from_slice(&o.tree.to_be_bytes());
        put_bytes(&mut out, o.key);
        match o.value {
            Some(v) => {
                out.push(1);
                put_bytes(&mut out, v);
            }
            None => out.push(0),
        }
    }
    out
}

/// Reads a record back: tree names and writes.
pub(super) fn decode(bytes: &[u8]) -> Result<(Vec<String>, Vec<Op<'_>>)> {
    let damaged = || StateError::Damaged {
        what: "a commit record".into(),
        reason: "it is cut short".into(),
    };
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Result<u32> {
        let b = bytes.get(*at..*at + 4).ok_or_else(damaged)?;
        *at += 4;
        Ok(u32::from_be_bytes(b.try_into().map_err(|_| damaged())?))
    };
    let n_trees = u32_at(&mut at)?;
    let mut trees = Vec::new();
    for _ in 0..n_trees {
        let len = u32_at(&mut at)? as usize;
        let name = bytes.get(at..at + len).ok_or_else(damaged)?;
        at += len;
        trees.push(String::from_utf8_lossy(name).into_owned());
    }
    let n_ops = u32_at(&mut at)?;
    let mut ops = Vec::new();
    for _ in 0..n_ops {
        let tree = u32_at(&mut at)?;
        let klen = u32_at(&mut at)? as usize;
        let key = bytes.get(at..at + klen).ok_or_else(damaged)?;
        at += klen;
        let kind = *bytes.get(at).ok_or_else(damaged)?;
        at += 1;
        let value = if kind == 1 {
            let vlen = u32_at(&mut at)? as usize;
            let v = bytes.get(at..at + vlen).ok_or_else(damaged)?;
            at += vlen;
            Some(v)
        } else {
            None
        };
        ops.push(Op { tree, key, value });
    }
    Ok((trees, ops))
}

/// Applies a commit's writes with plain inserts and removes. Only the trees a write
/// goes to are opened: opening creates a tree, and every tree sled holds is an entry of
/// its root table, rewritten whole each time a tree is created (thousands of tenants'
/// empty `rejected` trees made a first run quadratic).
pub(super) fn apply(db: &sled::Db, trees: &[String], ops: &[Op]) -> Result<()> {
    let mut opened: Vec<Option<sled::Tree>> = vec![None; trees.len()];
    for o in ops {
        let at = o.tree as usize;
        let (Some(slot), Some(name)) = (opened.get_mut(at), trees.get(at)) else {
            return Err(StateError::Damaged {
                what: "a commit record".into(),
                reason: "it names a tree it does not list".into(),
            });
        };
        if slot.is_none() {
            *slot = Some(db.open_tree(name)?);
        }
        let Some(tree) = slot.as_ref() else {
            continue;
        };
        match o.value {
            Some(v) => tree.insert(o.key, v)?,
            None => tree.remove(o.key)?,
        };
    }
    Ok(())
}

/// Writes `ops` as one commit of `source`: recorded, applied, forgotten.
pub(super) fn commit(db: &sled::Db, source: &str, trees: &[String], ops: &[Op]) -> Result<()> {
    let log = db.open_tree("commits")?;
    log.insert(source.as_bytes(), encode(trees, ops))?;
    apply(db, trees, ops)?;
    log.remove(source.as_bytes())?;
    Ok(())
}

/// Applies the commits a crash left recorded but maybe not applied.
pub(super) fn replay(db: &sled::Db) -> Result<usize> {
    let log = db.open_tree("commits")?;
    let mut n = 0;
    for kv in log.iter() {
        let (source, record) = kv?;
        let (trees, ops) = decode(&record)?;
        apply(db, &trees, &ops)?;
        log.remove(&source)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_commit_is_applied_when_the_store_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let trees = vec!["a".to_string(), "b".to_string()];
        let ops = [
            Op {
                tree: 0,
                key: b"k1",
                value: Some(b"v1"),
            },
            Op {
                tree: 1,
                key: b"k2",
                value: Some(b""),
            },
            Op {
                tree: 1,
                key: b"gone",
                value: None,
            },
        ];
        db.open_tree("b").unwrap().insert("gone", "x").unwrap();
        // As a crash right after the record was written leaves it.
        db.open_tree("commits")
            .unwrap()
            .insert("src", encode(&trees, &ops))
            .unwrap();
        assert_eq!(replay(&db).unwrap(), 1);
        assert_eq!(
            db.open_tree("a").unwrap().get("k1").unwrap().unwrap(),
            b"v1"
        );
        assert!(db.open_tree("b").unwrap().get("k2").unwrap().is_some());
        assert!(db.open_tree("b").unwrap().get("gone").unwrap().is_none());
        assert_eq!(db.open_tree("commits").unwrap().len(), 0);
        assert!(
            decode(&encode(&trees, &ops)[..20]).is_err(),
            "a cut record is an error"
        );
    }
}
