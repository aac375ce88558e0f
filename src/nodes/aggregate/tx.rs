//! The writes of one batch: read through before the store, then applied behind a redo
//! entry so that a crash in the middle is finished on the next open.

use super::codec::{
    decode, decode_count, encode, encode_ops, order, values_key, values_prefix, GroupState, Op,
    Space,
};
use super::View;
use crate::state::StateStore;
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

pub(super) const REDO_KEY: &[u8] = b"redo";
pub(super) const SCAN_PAGE: usize = 512;

pub(super) type StoreResult<T> = Result<T, String>;

pub(super) fn io(e: crate::state::StateError) -> String {
    e.to_string()
}

/// The smallest key greater than `k`.
pub(super) fn after(k: &[u8]) -> Vec<u8> {
    let mut next = k.to_vec();
    next.push(0);
    next
}

/// The writes of one batch, read through before the store. Groups are kept decoded
/// until the batch ends: a page's records mostly fall in a few groups.
pub(super) struct Tx<'s> {
    store: &'s dyn StateStore,
    writes: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; 4],
    groups: HashMap<String, Option<GroupState>>,
    pub(super) changed: usize,
}

impl<'s> Tx<'s> {
    pub(super) fn new(store: &'s dyn StateStore) -> Tx<'s> {
        Tx {
            store,
            writes: Default::default(),
            groups: HashMap::new(),
            changed: 0,
        }
    }

    pub(super) fn get(
        &self,
        view: &View,
        space: Space,
        key: &[u8],
    ) -> StoreResult<Option<Vec<u8>>> {
        if let Some(w) = self.writes[space as usize].get(key) {
            return Ok(w.clone());
        }
        self.store.kv_get(view.spaces.name(space), key).map_err(io)
    }

    pub(super) fn put(&mut self, space: Space, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.writes[space as usize].insert(key, value);
    }

    /// Takes a group out to change it; [`Tx::put_group`] puts it back.
    pub(super) fn take_group(&mut self, view: &View, g: &str) -> StoreResult<Option<GroupState>> {
        if let Some(gs) = self.groups.get_mut(g) {
            return Ok(gs.take());
        }
        self.store
            .kv_get(view.spaces.name(Space::Groups), g.as_bytes())
            .map_err(io)?
            .map(|b| decode(&b, "a group"))
            .transpose()
    }

    /// Puts a group back; `None` removes it.
    pub(super) fn put_group(&mut self, g: &str, gs: Option<GroupState>) {
        self.groups.insert(g.to_string(), gs);
    }

    /// The least (or greatest) value left in a group's multiset, with how it is shown.
    pub(super) fn extreme(
        &self,
        view: &View,
        g: &str,
        compute: usize,
        least: bool,
    ) -> StoreResult<Option<(String, Json)>> {
        let prefix = values_prefix(g, compute);
        let written = &self.writes[Space::Values as usize];
        let mut best: Option<String> = None;
        let mut consider = |c: &[u8]| {
            let c = String::from_utf8_lossy(c).into_owned();
            let wanted = if least {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            if best.as_ref().is_none_or(|b| order(&c, b) == wanted) {
                best = Some(c);
            }
        };
        let mut from = prefix.clone();
        'pages: loop {
            let page = self
                .store
                .kv_scan_from(view.spaces.name(Space::Values), &from, SCAN_PAGE)
                .map_err(io)?;
            for (k, _) in &page {
                if !k.starts_with(&prefix) {
                    break 'pages;
                }
                if !matches!(written.get(k), Some(None)) {
                    consider(&k[prefix.len()..]);
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == SCAN_PAGE => from = after(k),
                _ => break,
            }
        }
        for (k, v) in written.range(prefix.clone()..) {
            if !k.starts_with(&prefix) {
                break;
            }
            if v.is_some() {
                consider(&k[prefix.len()..]);
            }
        }
        let Some(best) = best else { return Ok(None) };
        let key = values_key(g, compute, &best);
        let shown = match self.get(view, Space::Values, &key)? {
            Some(b) => decode_count(&b)?.1,
            None => Json::Null,
        };
        Ok(Some((best, shown)))
    }

    /// Every write of the batch, groups encoded; the batch is left empty.
    pub(super) fn ops(&mut self) -> Vec<Op> {
        for (g, gs) in std::mem::take(&mut self.groups) {
            self.put(Space::Groups, g.into_bytes(), gs.as_ref().map(encode));
        }
        let mut ops = Vec::new();
        for space in Space::ALL {
            let writes = std::mem::take(&mut self.writes[space as usize]);
            ops.extend(writes.into_iter().map(|(k, v)| (space, k, v)));
        }
        ops
    }

    /// Writes the redo entry, then every write, then drops the redo entry.
    pub(super) fn commit(&mut self, view: &View) -> StoreResult<()> {
        let ops = self.ops();
        if ops.is_empty() {
            return Ok(());
        }
        let redo = &view.spaces.redo;
        self.store
            .kv_apply(redo, &[(REDO_KEY.to_vec(), Some(encode_ops(&ops)))])
            .map_err(io)?;
        view.write(self.store, &ops)?;
        self.store
            .kv_apply(redo, &[(REDO_KEY.to_vec(), None)])
            .map_err(io)
    }
}
