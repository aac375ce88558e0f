//! Reading a view: the output object of a group, every group for `dump`, and the
//! outbox of groups changed but not yet delivered to the sinks.

use super::codec::{decode, decode_ops, Acc, GroupState, Space};
use super::tx::{after, io, StoreResult, REDO_KEY, SCAN_PAGE};
use super::View;
use crate::check::{AggFunc, Type};
use crate::nodes::extract::Emitted;
use crate::nodes::value::Val;
use crate::state::StateStore;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::collections::BTreeMap;

impl View {
    /// The output object of a group (zero counts and nulls for a group that is gone).
    pub fn row(&self, shown: &[Json], gs: Option<&GroupState>) -> Emitted {
        let mut obj = serde_json::Map::new();
        let mut key = Vec::new();
        for (i, (name, v)) in self.names.iter().zip(shown).enumerate() {
            if i > 0 {
                key.push(0x1f);
            }
            match v {
                Json::String(s) => key.extend_from_slice(s.as_bytes()),
                Json::Null => {}
                other => key.extend_from_slice(other.to_string().as_bytes()),
            }
            obj.insert(name.clone(), v.clone());
        }
        let names = &self.names[self.group_types.len()..];
        for (i, ((func, ty), name)) in self.computes.iter().zip(names).enumerate() {
            let (n, acc) = match gs {
                Some(gs) => (gs.n, gs.c.get(i).cloned().unwrap_or_default()),
                None => (0, Acc::default()),
            };
            let v = match func {
                AggFunc::Count => Json::from(n),
                AggFunc::CountDistinct => Json::from(acc.n),
                _ if acc.n == 0 => Json::Null,
                AggFunc::Sum => number(acc.sum(), *ty),
                AggFunc::Avg => acc
                    .sum()
                    .checked_div(Decimal::from(acc.n))
                    .map_or(Json::Null, |d| number(d, *ty)),
                AggFunc::Min | AggFunc::Max => acc.xv.unwrap_or(Json::Null),
            };
            obj.insert(name.clone(), v);
        }
        Emitted {
            key: Some(key),
            json: serde_json::to_vec(&obj).unwrap_or_default().into(),
        }
    }

    /// The output row of one group by id: `shown` stands in for a group that is gone.
    pub fn row_of(&self, store: &dyn StateStore, g: &[u8], shown: &[Json]) -> StoreResult<Emitted> {
        let gs = store
            .kv_get(self.spaces.name(Space::Groups), g)
            .map_err(io)?
            .map(|b| decode::<GroupState>(&b, "a group"))
            .transpose()?;
        Ok(self.row(gs.as_ref().map_or(shown, |gs| &gs.v), gs.as_ref()))
    }

    /// Every group's row, in group id order.
    pub fn rows(&self, store: &dyn StateStore) -> StoreResult<Vec<Emitted>> {
        // Read-only: a batch being applied (or left by a crash) is read through its redo
        // entry rather than applied, as a running node may be applying it right now.
        let mut pending: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        if let Some(bytes) = store.kv_get(&self.spaces.redo, REDO_KEY).map_err(io)? {
            for (space, k, v) in decode_ops(&bytes)? {
                if space == Space::Groups {
                    pending.insert(k, v);
                }
            }
        }
        let mut groups: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut from = Vec::new();
        loop {
            let page = store
                .kv_scan_from(self.spaces.name(Space::Groups), &from, SCAN_PAGE)
                .map_err(io)?;
            let full = page.len() == SCAN_PAGE;
            if let Some((k, _)) = page.last() {
                from = after(k);
            }
            groups.extend(page);
            if !full {
                break;
            }
        }
        for (k, v) in pending {
            match v {
                Some(v) => groups.insert(k, v),
                None => groups.remove(&k),
            };
        }
        groups
            .values()
            .map(|v| {
                let gs: GroupState = decode(v, "a group")?;
                Ok(self.row(&gs.v, Some(&gs)))
            })
            .collect()
    }

    /// Up to `limit` groups waiting for the sinks: (group id, output row).
    pub fn outbox(
        &self,
        store: &dyn StateStore,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Emitted)>> {
        store
            .kv_scan(self.spaces.name(Space::Outbox), limit)
            .map_err(io)?
            .into_iter()
            .map(|(g, v)| {
                let shown: Vec<Json> = decode(&v, "an outbox entry")?;
                let row = self.row_of(store, &g, &shown)?;
                Ok((g, row))
            })
            .collect()
    }

    /// Forgets groups the sinks now hold.
    pub fn delivered(&self, store: &dyn StateStore, groups: &[Vec<u8>]) -> StoreResult<()> {
        let ops: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            groups.iter().map(|g| (g.clone(), None)).collect();
        store
            .kv_apply(self.spaces.name(Space::Outbox), &ops)
            .map_err(io)
    }

    pub fn has_outbox(&self, store: &dyn StateStore) -> bool {
        store
            .kv_len(self.spaces.name(Space::Outbox))
            .is_ok_and(|n| n > 0)
    }
}

fn number(d: Decimal, ty: Type) -> Json {
    match ty {
        Type::Int => d
            .to_i64()
            .map_or_else(|| Val::Decimal(d).to_json(), Json::from),
        Type::Float => Val::Float(d.to_f64().unwrap_or(f64::NAN)).to_json(),
        _ => Val::Decimal(d).to_json(),
    }
}
