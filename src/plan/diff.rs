//! The difference between two plans, by node name: what to start, restart and stop on
//! a reload. "Changed" is derived equality of plan nodes, which carry no spans, so
//! moving a block or editing a comment changes nothing.

use super::{NodeId, Plan};
use std::collections::{BTreeSet, HashMap};

/// What a reload does, as sets of node ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: BTreeSet<NodeId>,
    pub changed: BTreeSet<NodeId>,
    pub removed: BTreeSet<NodeId>,
    /// Nodes whose own config is equal but whose edges differ: they are rewired.
    pub rewired: BTreeSet<NodeId>,
}

impl Diff {
    pub fn new(old: &Plan, new: &Plan) -> Diff {
        let (old_edges, new_edges) = (edges_by_node(old), edges_by_node(new));
        let none = Vec::new();
        let mut d = Diff::default();
        for (id, node) in &new.nodes {
            match old.nodes.get(id) {
                None => {
                    d.added.insert(id.clone());
                }
                Some(o) if o != node => {
                    d.changed.insert(id.clone());
                }
                Some(_) => {
                    if old_edges.get(id).unwrap_or(&none) != new_edges.get(id).unwrap_or(&none) {
                        d.rewired.insert(id.clone());
                    }
                }
            }
        }
        d.removed = old
            .nodes
            .keys()
            .filter(|id| !new.nodes.contains_key(*id))
            .cloned()
            .collect();
        d
    }

    /// Everything of a fresh start: every node of `plan` added.
    pub fn start(plan: &Plan) -> Diff {
        Diff {
            added: plan.nodes.keys().cloned().collect(),
            ..Diff::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.rewired.is_empty()
    }

    /// Whether `id` stops or restarts.
    pub fn restarts(&self, id: &NodeId) -> bool {
        self.changed.contains(id) || self.removed.contains(id)
    }

    /// `+1 source, ~1 sink, -0`: sources, aggregates and sinks (extraction and filter
    /// nodes follow their source).
    pub fn summary(&self) -> String {
        fn part(sign: &str, ids: &BTreeSet<NodeId>) -> String {
            let parts: Vec<String> = ["source", "aggregate", "sink"]
                .iter()
                .filter_map(|kind| {
                    let n = ids.iter().filter(|id| id.kind() == *kind).count();
                    (n > 0).then(|| format!("{sign}{n} {kind}{}", if n == 1 { "" } else { "s" }))
                })
                .collect();
            if parts.is_empty() {
                format!("{sign}0")
            } else {
                parts.join(", ")
            }
        }
        format!(
            "{}, {}, {}",
            part("+", &self.added),
            part("~", &self.changed),
            part("-", &self.removed)
        )
    }
}

/// Every node's edges (in and out), in plan order: one pass, not one per node.
fn edges_by_node(p: &Plan) -> HashMap<&NodeId, Vec<&(NodeId, NodeId)>> {
    let mut map: HashMap<&NodeId, Vec<&(NodeId, NodeId)>> = HashMap::new();
    for e in &p.edges {
        map.entry(&e.0).or_default().push(e);
        if e.1 != e.0 {
            map.entry(&e.1).or_default().push(e);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;

    const BASE: &str = r#"
service api { base_url = "http://127.0.0.1:1/v1"  rate_limit = 5/s }
# a comment
source a from api {
  get = "/a"  schedule = every(30s)  key = id
  fields { id : string = $.id  n : int = $.n }
}
source b from api {
  get = "/b"  schedule = every(1m)  key = id
  fields { id : string = $.id  n : int = $.n }
}
sink s = sled("s")
sink j = jsonl("out/x.jsonl")
flow a, b -> s
flow b -> j
"#;

    fn plan(text: &str) -> Plan {
        let c = check("t.hmr", text, &|_| None);
        assert_eq!(c.report.errors(), 0, "{}", c.report.render(false, 100));
        Plan::new(&c.pipeline.unwrap())
    }

    fn a() -> NodeId {
        NodeId::Source("a".into())
    }

    fn diff(new: &str) -> Diff {
        Diff::new(&plan(BASE), &plan(new))
    }

    #[test]
    fn comments_and_moved_blocks_change_nothing() {
        let moved = BASE
            .replace("# a comment", "# another comment\n# more")
            .replace("sink s = sled(\"s\")\n", "")
            + "sink s = sled(\"s\")\n";
        assert!(diff(&moved).is_empty(), "{:?}", diff(&moved));
    }

    #[test]
    fn a_schedule_change_restarts_one_source() {
        let d = diff(&BASE.replace("every(30s)", "every(10s)"));
        assert_eq!(d.changed, BTreeSet::from([NodeId::Source("a".into())]));
        assert!(d.added.is_empty() && d.removed.is_empty());
        assert_eq!(d.summary(), "+0, ~1 source, -0");
    }

    #[test]
    fn a_path_or_key_change_loses_identity() {
        let old = plan(BASE);
        for edit in [
            BASE.replace("get = \"/a\"", "get = \"/a2\""),
            BASE.replace("key = id", "key = [id, n]"),
        ] {
            let new = plan(&edit);
            assert_ne!(old.nodes[&a()].identity(), new.nodes[&a()].identity());
        }
        let sched = plan(&BASE.replace("every(30s)", "every(10s)"));
        assert_eq!(old.nodes[&a()].identity(), sched.nodes[&a()].identity());
    }

    #[test]
    fn a_service_change_restarts_only_its_sources() {
        let text = BASE.replace("source b from api", "source b from other")
            + "service other { base_url = \"http://127.0.0.1:2\" }\n";
        let old = plan(&text);
        let new = plan(&text.replace("rate_limit = 5/s", "rate_limit = 9/s"));
        let d = Diff::new(&old, &new);
        assert_eq!(d.changed, BTreeSet::from([NodeId::Source("a".into())]));
    }

    #[test]
    fn sinks_added_removed_and_rewired() {
        let d = diff(&BASE.replace("flow b -> j\n", "").replace(
            "sink j = jsonl(\"out/x.jsonl\")\n",
            "sink c = stdout()\nflow a -> c\n",
        ));
        assert_eq!(d.added, BTreeSet::from([NodeId::Sink("c".into())]));
        assert_eq!(d.removed, BTreeSet::from([NodeId::Sink("j".into())]));
        assert!(d.rewired.contains(&NodeId::Extract("a".into())));
        assert_eq!(d.summary(), "+1 sink, ~0, -1 sink");
    }

    #[test]
    fn a_renamed_source_is_removed_and_added() {
        let d = diff(
            &BASE
                .replace("source a from", "source a2 from")
                .replace("flow a, b", "flow a2, b"),
        );
        assert!(d.added.contains(&NodeId::Source("a2".into())));
        assert!(d.removed.contains(&a()));
    }
}
