//! The exact view of one aggregate. Per record: take back its previous contribution,
//! add the new one, in the batch's overlay ([`super::tx`]).

use super::codec::{
    canon, contrib_key, decode, decode_count, decode_ops, encode, encode_count, group_id, order,
    values_key, Acc, Contrib, GroupState, Op, Space, Spaces,
};
use super::tx::{io, StoreResult, Tx, REDO_KEY, SCAN_PAGE};
use crate::check::{AggFunc, Aggregate, Pipeline, Schema, Type};
use crate::nodes::eval::{Compiled, Env};
use crate::nodes::extract::Emitted;
use crate::nodes::value::{read_record, Record, Val};
use crate::state::StateStore;
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const DEFINITION_KEY: &[u8] = b"definition";

/// A compiled aggregate: how records of each source it reads become contributions.
pub struct View {
    pub name: Arc<str>,
    /// The output fields: group fields, then computed fields.
    pub names: Arc<Vec<String>>,
    pub(super) computes: Vec<(AggFunc, Type)>,
    pub(super) group_types: Vec<Type>,
    inputs: HashMap<String, Input>,
    pub(super) spaces: Spaces,
    fingerprint: Vec<u8>,
}

struct Input {
    fields: Vec<(String, Type, bool)>,
    group: Vec<Compiled>,
    args: Vec<Option<Compiled>>,
}

/// A record's contribution, with its values as shown.
struct New {
    contrib: Contrib,
    groups: Vec<Json>,
    shown: Vec<Json>,
}

impl View {
    /// Compiles aggregate `name` of `p` (nothing is read or written).
    pub fn new(p: &Pipeline, name: &str) -> StoreResult<View> {
        let agg = p
            .aggregates
            .get(name)
            .ok_or_else(|| format!("no aggregate named `{name}`"))?;
        let schemas = agg
            .from
            .iter()
            .map(|src| {
                p.schema_of(src)
                    .map(|s| (src.clone(), s))
                    .ok_or_else(|| format!("aggregate `{name}` reads `{src}`, which is no source"))
            })
            .collect::<StoreResult<BTreeMap<_, _>>>()?;
        View::compile(agg, &schemas)
    }

    /// Compiles `agg`, reading sources with the given schemas (nothing is read or written).
    pub fn compile(agg: &Aggregate, schemas: &BTreeMap<String, Schema>) -> StoreResult<View> {
        let name = agg.name.as_str();
        let mut inputs = HashMap::new();
        for src in &agg.from {
            let schema = schemas
                .get(src)
                .cloned()
                .ok_or_else(|| format!("aggregate `{name}` reads `{src}`, which is no source"))?;
            let index = |n: &str| schema.fields.iter().position(|(f, _, _)| f == n);
            inputs.insert(
                src.clone(),
                Input {
                    group: agg
                        .group_by
                        .iter()
                        .map(|(_, e, _)| Compiled::new(e, &index))
                        .collect(),
                    args: agg
                        .compute
                        .iter()
                        .map(|c| c.arg.as_ref().map(|e| Compiled::new(e, &index)))
                        .collect(),
                    fields: schema.fields,
                },
            );
        }
        // What the stored state depends on: names may change, meaning may not.
        let meaning = format!(
            "{:?}",
            (
                &agg.from,
                agg.group_by
                    .iter()
                    .map(|(_, e, t)| (e, t))
                    .collect::<Vec<_>>(),
                agg.compute
                    .iter()
                    .map(|c| (c.func, &c.arg, c.ty))
                    .collect::<Vec<_>>()
            )
        );
        Ok(View {
            name: Arc::from(name),
            names: Arc::new(
                agg.group_by
                    .iter()
                    .map(|(n, _, _)| n.clone())
                    .chain(agg.compute.iter().map(|c| c.name.clone()))
                    .collect(),
            ),
            computes: agg.compute.iter().map(|c| (c.func, c.ty)).collect(),
            group_types: agg.group_by.iter().map(|(_, _, t)| *t).collect(),
            inputs,
            spaces: Spaces::new(name),
            fingerprint: xxhash_rust::xxh3::xxh3_64(meaning.as_bytes())
                .to_be_bytes()
                .to_vec(),
        })
    }

    /// Compiles and [`recover`](View::recover)s.
    pub fn open(p: &Pipeline, name: &str, store: &dyn StateStore) -> StoreResult<View> {
        let view = View::new(p, name)?;
        view.recover(store)?;
        Ok(view)
    }

    /// Finishes a batch a crash interrupted, and starts the view afresh when it was
    /// built by another definition of the aggregate.
    pub fn recover(&self, store: &dyn StateStore) -> StoreResult<()> {
        self.redo(store)?;
        if self.is_current(store)? {
            return Ok(());
        }
        if store
            .kv_get(&self.spaces.meta, DEFINITION_KEY)
            .map_err(io)?
            .is_some()
        {
            tracing::warn!(aggregate = %self.name, "the aggregate's definition changed: its view starts empty and holds only records collected from now on; reset its sources (`hamstr state --reset SOURCE`) to rebuild it from everything");
        }
        for s in Space::ALL {
            clear(store, self.spaces.name(s))?;
        }
        store
            .kv_apply(
                &self.spaces.meta,
                &[(DEFINITION_KEY.to_vec(), Some(self.fingerprint.clone()))],
            )
            .map_err(io)
    }

    /// Applies the writes of a batch that a crash interrupted, if any.
    fn redo(&self, store: &dyn StateStore) -> StoreResult<()> {
        if let Some(bytes) = store.kv_get(&self.spaces.redo, REDO_KEY).map_err(io)? {
            let ops = decode_ops(&bytes)?;
            tracing::info!(aggregate = %self.name, writes = ops.len(), "finishing a batch an earlier run left half applied");
            self.write(store, &ops)?;
            store
                .kv_apply(&self.spaces.redo, &[(REDO_KEY.to_vec(), None)])
                .map_err(io)?;
        }
        Ok(())
    }

    /// Whether the view was built by this definition (false: `open` will restart it).
    pub fn is_current(&self, store: &dyn StateStore) -> StoreResult<bool> {
        Ok(store
            .kv_get(&self.spaces.meta, DEFINITION_KEY)
            .map_err(io)?
            == Some(self.fingerprint.clone()))
    }

    /// Takes in one page of a source; `outbox` records the changed groups for the sinks.
    /// Returns how many groups changed.
    pub fn apply(
        &self,
        store: &dyn StateStore,
        source: &str,
        records: &[Emitted],
        outbox: bool,
    ) -> StoreResult<usize> {
        let mut tx = self.prepare(store, source, records, outbox)?;
        let changed = tx.changed;
        tx.commit(self)?;
        Ok(changed)
    }

    fn prepare<'s>(
        &self,
        store: &'s dyn StateStore,
        source: &str,
        records: &[Emitted],
        outbox: bool,
    ) -> StoreResult<Tx<'s>> {
        let input = self
            .inputs
            .get(source)
            .ok_or_else(|| format!("aggregate `{}` does not read `{source}`", self.name))?;
        let mut tx = Tx::new(store);
        let mut changed: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for r in records {
            let new = match read_record(&input.fields, &r.json)
                .ok_or_else(|| "not a JSON object".to_string())
                .and_then(|rec| self.contribution(input, &rec))
            {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(aggregate = %self.name, source, error = %e, "a record is left out of the view");
                    None
                }
            };
            let ckey = r.key.as_ref().map(|k| contrib_key(source, k));
            let old: Option<Contrib> = match &ckey {
                Some(k) => tx
                    .get(self, Space::Contrib, k)?
                    .map(|b| decode(&b, "a contribution"))
                    .transpose()?,
                None => None,
            };
            if old.as_ref() == new.as_ref().map(|n| &n.contrib) {
                continue;
            }
            if let Some(o) = &old {
                if let Some(shown) = self.retract(&mut tx, o)? {
                    changed.entry(o.g.clone()).or_insert(shown);
                }
            }
            let mut new = new;
            if let Some(n) = &mut new {
                self.add(&mut tx, n)?;
                changed.insert(n.contrib.g.clone(), n.groups.clone());
            }
            if let Some(k) = ckey {
                tx.put(Space::Contrib, k, new.map(|n| encode(&n.contrib)));
            }
        }
        tx.changed = changed.len();
        if outbox {
            for (g, shown) in changed {
                tx.put(Space::Outbox, g.into_bytes(), Some(encode(&shown)));
            }
        }
        Ok(tx)
    }

    fn contribution(&self, input: &Input, rec: &Record) -> StoreResult<New> {
        let env = Env {
            item: None,
            parent: None,
            fields: &rec.values,
        };
        let groups = input
            .group
            .iter()
            .zip(&self.group_types)
            .map(|(g, ty)| g.eval(&env).and_then(|v| v.convert(*ty)))
            .collect::<Result<Vec<Val>, String>>()?;
        let mut a = Vec::with_capacity(self.computes.len());
        let mut shown = Vec::with_capacity(self.computes.len());
        for (arg, (func, _)) in input.args.iter().zip(&self.computes) {
            let v = match arg {
                Some(arg) => arg.eval(&env)?,
                None => Val::Null,
            };
            a.push(match func {
                AggFunc::Count => None,
                AggFunc::Sum | AggFunc::Avg => v.as_decimal().map(|d| d.to_string()),
                AggFunc::Min | AggFunc::Max | AggFunc::CountDistinct => canon(&v),
            });
            shown.push(v.to_json());
        }
        Ok(New {
            contrib: Contrib {
                g: group_id(&groups),
                a,
            },
            groups: groups.iter().map(Val::to_json).collect(),
            shown,
        })
    }

    fn add(&self, tx: &mut Tx, new: &mut New) -> StoreResult<()> {
        let g = new.contrib.g.clone();
        let mut gs = match tx.take_group(self, &g)? {
            Some(gs) => gs,
            None => GroupState {
                v: new.groups.clone(),
                n: 0,
                c: vec![Acc::default(); self.computes.len()],
            },
        };
        gs.n += 1;
        for (i, (func, _)) in self.computes.iter().enumerate() {
            let Some(a) = new.contrib.a[i].clone() else {
                continue;
            };
            let acc = &mut gs.c[i];
            match func {
                AggFunc::Count => {}
                AggFunc::Sum | AggFunc::Avg => {
                    let d: Decimal = a.parse().map_err(|_| format!("bad decimal {a}"))?;
                    match acc.s.checked_add(d) {
                        Some(s) => {
                            acc.s = s;
                            acc.n += 1;
                            *acc.k.entry(d.scale()).or_default() += 1;
                        }
                        None => {
                            tracing::warn!(aggregate = %self.name, value = %d, "a sum overflows; the value is left out");
                            new.contrib.a[i] = None;
                        }
                    }
                }
                AggFunc::Min | AggFunc::Max | AggFunc::CountDistinct => {
                    let key = values_key(&g, i, &a);
                    let (count, shown) = match tx.get(self, Space::Values, &key)? {
                        Some(b) => decode_count(&b)?,
                        None => (0, new.shown[i].clone()),
                    };
                    tx.put(Space::Values, key, Some(encode_count(count + 1, &shown)));
                    if count == 0 {
                        acc.n += 1;
                        let wanted = if *func == AggFunc::Min {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        };
                        let better = match &acc.x {
                            None => *func != AggFunc::CountDistinct,
                            Some(x) => order(&a, x) == wanted,
                        };
                        if better {
                            acc.x = Some(a);
                            acc.xv = Some(shown);
                        }
                    }
                }
            }
        }
        tx.put_group(&g, Some(gs));
        Ok(())
    }

    /// Takes a contribution back; returns the group's values as shown, or `None` when the
    /// group was not there (a damaged view: what can be taken back is).
    fn retract(&self, tx: &mut Tx, old: &Contrib) -> StoreResult<Option<Vec<Json>>> {
        let g = &old.g;
        let Some(mut gs) = tx.take_group(self, g)? else {
            tracing::error!(aggregate = %self.name, group = %g, "the view misses a group a record was counted in");
            return Ok(None);
        };
        gs.n = gs.n.saturating_sub(1);
        for (i, (func, _)) in self.computes.iter().enumerate() {
            let Some(a) = old.a.get(i).cloned().flatten() else {
                continue;
            };
            let acc = &mut gs.c[i];
            match func {
                AggFunc::Count => {}
                AggFunc::Sum | AggFunc::Avg => {
                    let d: Decimal = a.parse().map_err(|_| format!("bad decimal {a}"))?;
                    acc.s = acc.s.checked_sub(d).ok_or("a sum overflows")?;
                    acc.n = acc.n.saturating_sub(1);
                    if let Some(c) = acc.k.get_mut(&d.scale()) {
                        *c -= 1;
                        if *c == 0 {
                            acc.k.remove(&d.scale());
                        }
                    }
                }
                AggFunc::Min | AggFunc::Max | AggFunc::CountDistinct => {
                    let key = values_key(g, i, &a);
                    let Some(b) = tx.get(self, Space::Values, &key)? else {
                        continue;
                    };
                    let (count, shown) = decode_count(&b)?;
                    if count > 1 {
                        tx.put(Space::Values, key, Some(encode_count(count - 1, &shown)));
                        continue;
                    }
                    tx.put(Space::Values, key, None);
                    acc.n = acc.n.saturating_sub(1);
                    if acc.x.as_deref() == Some(a.as_str()) {
                        let best = tx.extreme(self, g, i, *func == AggFunc::Min)?;
                        (acc.x, acc.xv) = match best {
                            Some((x, xv)) => (Some(x), Some(xv)),
                            None => (None, None),
                        };
                    }
                }
            }
        }
        let shown = gs.v.clone();
        tx.put_group(g, (gs.n > 0).then_some(gs));
        Ok(Some(shown))
    }

    pub(super) fn write(&self, store: &dyn StateStore, ops: &[Op]) -> StoreResult<()> {
        for s in Space::ALL {
            let mine: Vec<(Vec<u8>, Option<Vec<u8>>)> = ops
                .iter()
                .filter(|(space, _, _)| *space == s)
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect();
            if !mine.is_empty() {
                store.kv_apply(self.spaces.name(s), &mine).map_err(io)?;
            }
        }
        Ok(())
    }
}

fn clear(store: &dyn StateStore, space: &str) -> StoreResult<()> {
    loop {
        let page = store.kv_scan(space, SCAN_PAGE).map_err(io)?;
        if page.is_empty() {
            return Ok(());
        }
        let ops: Vec<_> = page.into_iter().map(|(k, _)| (k, None)).collect();
        store.kv_apply(space, &ops).map_err(io)?;
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
