//! The compiled dataflow graph as plain data: one node per source, extraction step,
//! filter, aggregate and sink, and the edges between them. Nodes compare by meaning
//! (derived `Eq`), which is what reload diffs rely on.

pub mod diff;

use crate::check::{Aggregate, Pipeline, Schema, Service, Sink, Source};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A node of the plan, typed by kind. Shown as `kind:name` (`source:orders`); ordered by
/// that text, so listings keep their order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeId {
    Aggregate(String),
    Extract(String),
    Filter(String),
    Sink(String),
    Source(String),
}

impl NodeId {
    pub fn kind(&self) -> &'static str {
        match self {
            NodeId::Aggregate(_) => "aggregate",
            NodeId::Extract(_) => "extract",
            NodeId::Filter(_) => "filter",
            NodeId::Sink(_) => "sink",
            NodeId::Source(_) => "source",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            NodeId::Aggregate(n)
            | NodeId::Extract(n)
            | NodeId::Filter(n)
            | NodeId::Sink(n)
            | NodeId::Source(n) => n,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Polls an endpoint (or, for a child, runs per parent record).
    /// Shared (`Arc`): the unit running it holds the same source, not a copy — one per
    /// tenant adds up.
    Source {
        source: Arc<Source>,
        service: Arc<Service>,
    },
    /// Turns JSON items into typed records.
    Extract { source: String, fields: Vec<String> },
    /// `where`.
    Filter { source: String },
    /// An aggregate and the schemas of the sources it reads.
    Aggregate {
        aggregate: Aggregate,
        inputs: BTreeMap<String, Schema>,
    },
    /// A sink and the schema of what feeds it (`None` when nothing does).
    Sink { sink: Sink, schema: Option<Schema> },
}

impl Node {
    /// What a source's collected state belongs to: its service URL, path, records path
    /// and key. Persisted with the state; a change resets the state (spec §8).
    pub fn identity(&self) -> Option<String> {
        match self {
            Node::Source { source, service } => {
                let text = format!(
                    "{:?}",
                    (
                        &service.base_url,
                        &source.path,
                        &source.records,
                        &source.key
                    )
                );
                Some(format!(
                    "{:016x}",
                    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
                ))
            }
            _ => None,
        }
    }
}

/// The compiled dataflow graph: nodes, edges, and the secrets to mask in what the
/// running graph prints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub nodes: BTreeMap<NodeId, Node>,
    pub edges: Vec<(NodeId, NodeId)>,
    pub secrets: Vec<String>,
    /// `server { ... }`: the listener's address and whether it serves `/metrics`.
    pub server: Option<crate::check::Server>,
}

impl Plan {
    pub fn new(p: &Pipeline) -> Plan {
        let mut plan = Plan {
            secrets: p.secrets(),
            server: p.server.clone(),
            ..Plan::default()
        };
        let out_of = |name: &str| {
            if p.sources.get(name).is_some_and(|s| s.filter.is_some()) {
                NodeId::Filter(name.to_string())
            } else {
                NodeId::Extract(name.to_string())
            }
        };
        for (name, src) in &p.sources {
            let Some(service) = p.services.get(&src.service) else {
                continue;
            };
            let source_id = NodeId::Source(name.clone());
            let extract_id = NodeId::Extract(name.clone());
            plan.nodes.insert(
                source_id.clone(),
                Node::Source {
                    source: Arc::new(src.clone()),
                    service: Arc::new(service.clone()),
                },
            );
            plan.nodes.insert(
                extract_id.clone(),
                Node::Extract {
                    source: name.clone(),
                    fields: src.fields.iter().map(|f| f.name.clone()).collect(),
                },
            );
            plan.edges.push((source_id, extract_id.clone()));
            if src.filter.is_some() {
                let filter_id = NodeId::Filter(name.clone());
                plan.nodes.insert(
                    filter_id.clone(),
                    Node::Filter {
                        source: name.clone(),
                    },
                );
                plan.edges.push((extract_id, filter_id));
            }
            if let Some(parent) = &src.for_each {
                plan.edges
                    .push((out_of(parent), NodeId::Source(name.clone())));
            }
        }
        for (name, agg) in &p.aggregates {
            let inputs = agg
                .from
                .iter()
                .filter_map(|src| Some((src.clone(), p.schema_of(src)?)))
                .collect();
            plan.nodes.insert(
                NodeId::Aggregate(name.clone()),
                Node::Aggregate {
                    aggregate: agg.clone(),
                    inputs,
                },
            );
            for src in &agg.from {
                plan.edges
                    .push((out_of(src), NodeId::Aggregate(name.clone())));
            }
        }
        for (from, to) in &p.flows {
            let from_id = if p.aggregates.contains_key(from) {
                NodeId::Aggregate(from.clone())
            } else {
                out_of(from)
            };
            plan.edges.push((from_id, NodeId::Sink(to.clone())));
        }
        for (name, sink) in &p.sinks {
            // Every input of a sink carries the same schema (the checker sees to it).
            let schema = p
                .flows
                .iter()
                .find(|(_, to)| to == name)
                .and_then(|(from, _)| p.schema_of(from));
            plan.nodes.insert(
                NodeId::Sink(name.clone()),
                Node::Sink {
                    sink: sink.clone(),
                    schema,
                },
            );
        }
        plan.edges.sort();
        plan.edges.dedup();
        plan
    }

    /// The nodes `id` feeds, in order.
    pub fn outputs<'a>(&'a self, id: &'a NodeId) -> impl Iterator<Item = &'a NodeId> + 'a {
        let start = self.edges.partition_point(|(a, _)| a < id);
        self.edges[start..]
            .iter()
            .take_while(move |(a, _)| a == id)
            .map(|(_, b)| b)
    }

    /// The node whose output carries a source's records: its filter, else its extractor.
    pub fn output_of(&self, source: &str) -> NodeId {
        let filter = NodeId::Filter(source.to_string());
        if self.nodes.contains_key(&filter) {
            filter
        } else {
            NodeId::Extract(source.to_string())
        }
    }

    /// The source node of every unit of work (one per source, for now).
    pub fn sources(&self) -> impl Iterator<Item = (&str, &Source, &Service)> + '_ {
        self.nodes.values().filter_map(|n| match n {
            Node::Source { source, service } => Some((source.name.as_str(), &**source, &**service)),
            _ => None,
        })
    }

    /// A node's label, one line per item, as plain text (each format escapes it).
    fn label(&self, id: &NodeId) -> Vec<String> {
        let second = match self.nodes.get(id) {
            Some(Node::Source { source, service }) => {
                let method = if source.method == crate::check::Method::Post {
                    "POST"
                } else {
                    "GET"
                };
                Some(format!(
                    "{method} {}{}",
                    crate::check::pipeline::url_shown(&service.base_url).trim_end_matches('/'),
                    source.path
                ))
            }
            Some(Node::Sink { sink: s, .. }) => Some(match s {
                Sink::Sled { tree, .. } => format!("sled(\"{tree}\")"),
                Sink::Jsonl { path, .. } => format!("jsonl(\"{path}\")"),
                Sink::Stdout { .. } => "stdout()".to_string(),
                Sink::Postgres { table, .. } => format!("postgres(table = \"{table}\")"),
                Sink::Webhook { url, .. } => format!(
                    "webhook(\"{}\")",
                    crate::check::pipeline::url_shown(url.shown())
                ),
                Sink::Exec { command, .. } => format!(
                    "exec([{}])",
                    command
                        .iter()
                        .map(|t| format!("\"{}\"", t.shown()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            _ => None,
        };
        // Control characters (a path or URL may hold any) never reach the output.
        std::iter::once(id.to_string())
            .chain(second)
            .map(|l| {
                l.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect()
            })
            .collect()
    }

    /// Graphviz text. No secret is in it: auth, headers and query values are not shown.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph hamstr {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for id in self.nodes.keys() {
            // In a DOT string `\\` and `"` are escaped; `\\n` breaks the line.
            let lines: Vec<String> = self
                .label(id)
                .iter()
                .map(|l| l.replace('\\', "\\\\").replace('"', "\\\""))
                .collect();
            out.push_str(&format!(
                "  \"{}\" [label=\"{}\"];\n",
                id.to_string().replace('"', "\\\""),
                lines.join("\\n")
            ));
        }
        for (a, b) in &self.edges {
            out.push_str(&format!("  \"{a}\" -> \"{b}\";\n"));
        }
        out.push_str("}\n");
        out
    }

    pub fn to_mermaid(&self) -> String {
        let ids: BTreeMap<&NodeId, String> = self
            .nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k, format!("n{i}")))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for (id, short) in &ids {
            let lines: Vec<String> = self
                .label(id)
                .iter()
                .map(|l| {
                    l.replace('"', "#quot;")
                        .replace('<', "#lt;")
                        .replace('>', "#gt;")
                })
                .collect();
            out.push_str(&format!("  {short}[\"{}\"]\n", lines.join("<br/>")));
        }
        for (a, b) in &self.edges {
            if let (Some(x), Some(y)) = (ids.get(a), ids.get(b)) {
                out.push_str(&format!("  {x} --> {y}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels are escaped for each format: a backslash or quote in a path cannot end a
    /// DOT string or turn into a Graphviz escape (`\N`), `<` cannot open mermaid markup,
    /// and control characters never get through.
    #[test]
    fn labels_are_escaped_for_each_format() {
        let text = r#"
service api { base_url = "http://127.0.0.1:9" }
source s from api {
  get = "/x"  schedule = once  records = $.data[*]
  fields { id : string = $.id }
}
sink out = jsonl("a\\N\"<b>\t.jsonl")
flow s -> out
"#;
        let checked = crate::check::check("t.hmr", text, &|_| None);
        let plan = Plan::new(checked.pipeline.as_ref().expect("checks"));
        let dot = plan.to_dot();
        assert!(
            dot.contains(r#"[label="sink:out\njsonl(\"a\\N\"<b> .jsonl\")"]"#),
            "{dot}"
        );
        let mermaid = plan.to_mermaid();
        assert!(
            mermaid.contains(r#"sink:out<br/>jsonl(#quot;a\N#quot;#lt;b#gt; .jsonl#quot;)"#),
            "{mermaid}"
        );
    }
}
