//! The units a cluster leases: a root source with every child source under it (a child
//! runs per record of its parent, so they go together). Each unit's definition is
//! versioned by a digest of its plan nodes and the edges out of them, so instances
//! whose files disagree can tell; [`restrict`] gives the plan of only the units held.

use crate::plan::{Node, NodeId, Plan};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The unit of each source: the root of its `for_each` chain.
pub fn unit_of(plan: &Plan) -> HashMap<String, String> {
    let parent: HashMap<&str, Option<&str>> = plan
        .sources()
        .map(|(name, src, _)| (name, src.for_each.as_deref()))
        .collect();
    parent
        .keys()
        .map(|&name| {
            let mut at = name;
            // A cycle is refused by `check`; the bound only keeps a bug from hanging.
            for _ in 0..parent.len() {
                match parent.get(at).copied().flatten() {
                    Some(p) if parent.contains_key(p) => at = p,
                    _ => break,
                }
            }
            (name.to_string(), at.to_string())
        })
        .collect()
}

/// Whether a node belongs to a unit's sources (its poller, extractor or filter).
fn source_of(id: &NodeId) -> Option<&str> {
    match id {
        NodeId::Source(n) | NodeId::Extract(n) | NodeId::Filter(n) => Some(n),
        _ => None,
    }
}

/// Each unit's version: a digest of its nodes and of the edges leaving them, in order.
pub fn versions(plan: &Plan) -> BTreeMap<String, String> {
    let units = unit_of(plan);
    let mut text: BTreeMap<String, String> =
        units.values().map(|u| (u.clone(), String::new())).collect();
    for (id, node) in &plan.nodes {
        if let Some(unit) = source_of(id).and_then(|s| units.get(s)) {
            let t = text.entry(unit.clone()).or_default();
            t.push_str(&format!("{id}={node:?};"));
        }
    }
    for (a, b) in &plan.edges {
        if let Some(unit) = source_of(a).and_then(|s| units.get(s)) {
            let t = text.entry(unit.clone()).or_default();
            t.push_str(&format!("{a}->{b};"));
        }
    }
    text.into_iter()
        .map(|(unit, t)| {
            (
                unit,
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(t.as_bytes())),
            )
        })
        .collect()
}

/// The plan with only the sources of `held` units; sinks and aggregates stay as they
/// are (unchanged nodes keep running across a reload).
pub fn restrict(plan: &Plan, held: &BTreeSet<String>) -> Plan {
    let units = unit_of(plan);
    let keep = |id: &NodeId| match source_of(id) {
        Some(s) => units.get(s).is_some_and(|u| held.contains(u)),
        None => true,
    };
    Plan {
        nodes: plan
            .nodes
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|(id, n)| (id.clone(), n.clone()))
            .collect(),
        edges: plan
            .edges
            .iter()
            .filter(|(a, b)| keep(a) && keep(b))
            .cloned()
            .collect(),
        secrets: plan.secrets.clone(),
        server: plan.server.clone(),
    }
}

/// Whether any node of the plan keeps state on this machine only: `sled` sinks and
/// aggregates (their views live in the store of one process).
pub fn local_only(plan: &Plan) -> Vec<NodeId> {
    plan.nodes
        .iter()
        .filter(|(_, n)| {
            matches!(n, Node::Aggregate { .. })
                || matches!(
                    n,
                    Node::Sink {
                        sink: crate::check::Sink::Sled { .. },
                        ..
                    }
                )
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        let checked = crate::check::check("t.hmr", text, &|_| None);
        Plan::new(checked.pipeline.as_ref().expect("checks"))
    }

    const FILE: &str = r#"
service api { base_url = "http://127.0.0.1:9" }
source a from api {
  get = "/a"  schedule = every(1m)  records = $.data[*]
  fields { id : string = $.id }
  key = id
}
source b from api {
  get = "/b/{id}"  for_each = a  records = $.data[*]
  fields { id : string = $.id }
}
source c from api {
  get = "/c"  schedule = every(1m)  records = $.data[*]
  fields { id : string = $.id }
}
sink out = jsonl("out.jsonl")
flow a -> out
flow b -> out
flow c -> out
"#;

    #[test]
    fn a_child_goes_with_its_parent() {
        let units = unit_of(&plan(FILE));
        assert_eq!(units["a"], "a");
        assert_eq!(units["b"], "a");
        assert_eq!(units["c"], "c");
        let v = versions(&plan(FILE));
        assert_eq!(v.keys().collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn a_changed_source_changes_its_units_version_only() {
        let before = versions(&plan(FILE));
        let after = versions(&plan(&FILE.replace("/b/{id}", "/b2/{id}")));
        assert_ne!(before["a"], after["a"]);
        assert_eq!(before["c"], after["c"]);
    }

    /// A tenant source and its child, for three tenants: each (source, tenant) pair is
    /// a unit of its own (spec §14), its child with it.
    #[test]
    fn each_tenant_of_a_source_is_a_unit_with_its_children() {
        let text = r#"
tenants shops = csv("shops.csv")
service till for shops { base_url = tenant.url }
source orders from till {
  get = "/orders"  schedule = every(1m)  records = $.data[*]
  key = [shop, id]
  fields { shop : string = tenant.name  id : string = $.id }
}
source items from till {
  get = "/orders/{id}/items"  for_each = orders  records = $.data[*]
  fields { shop : string = tenant.name  id : string = $.id }
}
source plain from till_free {
  get = "/p"  schedule = every(1m)  records = $.data[*]
  fields { id : string = $.id }
}
service till_free { base_url = "http://127.0.0.1:9" }
sink out = jsonl("out.jsonl")
sink other = jsonl("other.jsonl")
flow orders -> out
flow items -> out
flow plain -> other
"#;
        let csv = "name,url\nsoho,http://127.0.0.1:9/s\ncamden,http://127.0.0.1:9/c\nbrixton,http://127.0.0.1:9/b\n";
        let files = |path: &str| {
            if path.ends_with("shops.csv") {
                Ok(csv.to_string())
            } else {
                Err(format!("no file {path}"))
            }
        };
        let checked = crate::check::check_with(
            "t.hmr",
            text,
            &|_| None,
            &files,
            crate::check::Mode::Cluster,
        );
        let Some(pipeline) = checked.pipeline.as_ref() else {
            panic!("does not check: {:?}", checked.report);
        };
        let p = Plan::new(pipeline);
        let units = unit_of(&p);
        for shop in ["soho", "camden", "brixton"] {
            let unit = format!("orders[{shop}]");
            assert_eq!(units[&unit], unit);
            assert_eq!(
                units[&format!("items[{shop}]")],
                unit,
                "the child goes with it"
            );
        }
        assert_eq!(units["plain"], "plain");
        let v = versions(&p);
        assert_eq!(
            v.keys().collect::<Vec<_>>(),
            ["orders[brixton]", "orders[camden]", "orders[soho]", "plain"]
        );
        // Tenants differ by their row only, and so do their units' versions.
        assert_ne!(v["orders[soho]"], v["orders[camden]"]);
        let r = restrict(&p, &BTreeSet::from(["orders[camden]".to_string()]));
        let held: Vec<&str> = r.sources().map(|(n, _, _)| n).collect();
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(held.contains(&"orders[camden]") && held.contains(&"items[camden]"));
    }

    #[test]
    fn restrict_keeps_the_held_units_and_every_sink() {
        let p = plan(FILE);
        let r = restrict(&p, &BTreeSet::from(["a".to_string()]));
        assert!(r.nodes.contains_key(&NodeId::Source("b".into())));
        assert!(!r.nodes.contains_key(&NodeId::Source("c".into())));
        assert!(r.nodes.contains_key(&NodeId::Sink("out".into())));
        assert!(r.edges.iter().all(|(a, _)| a.name() != "c"));
        let none = restrict(&p, &BTreeSet::new());
        assert_eq!(none.sources().count(), 0);
    }
}
