//! The compiled dataflow graph as plain data: one node per source, extraction step,
//! filter, aggregate and sink, and the edges between them. Nodes compare by meaning
//! (derived `Eq`), which is what reload diffs rely on.

pub mod diff;

use crate::check::{Aggregate, Pipeline, Service, Sink, Source};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Polls an endpoint (or, for a child, runs per parent record).
    Source {
        source: Box<Source>,
        service: Box<Service>,
    },
    /// Turns JSON items into typed records.
    Extract {
        source: String,
        fields: Vec<String>,
    },
    /// `where`.
    Filter {
        source: String,
    },
    Aggregate(Aggregate),
    Sink(Sink),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub nodes: BTreeMap<String, Node>,
    pub edges: Vec<(String, String)>,
}

impl Plan {
    pub fn new(p: &Pipeline) -> Plan {
        let mut plan = Plan::default();
        // Outputs and aggregate inputs by name, once: looking them up per source would
        // make a plan of n sources cost n².
        let mut outputs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in &p.flows {
            outputs.entry(from).or_default().push(to);
        }
        let mut readers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for agg in p.aggregates.values() {
            for from in &agg.from {
                readers.entry(from).or_default().push(&agg.name);
            }
        }
        for (name, src) in &p.sources {
            let Some(service) = p.services.get(&src.service) else {
                continue;
            };
            let source_id = format!("source:{name}");
            let extract_id = format!("extract:{name}");
            plan.nodes.insert(
                source_id.clone(),
                Node::Source {
                    source: Box::new(src.clone()),
                    service: Box::new(service.clone()),
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
            let out = if src.filter.is_some() {
                let filter_id = format!("filter:{name}");
                plan.nodes.insert(
                    filter_id.clone(),
                    Node::Filter {
                        source: name.clone(),
                    },
                );
                plan.edges.push((extract_id, filter_id.clone()));
                filter_id
            } else {
                extract_id
            };
            if let Some(parent) = &src.for_each {
                plan.edges.push((
                    format!(
                        "{}:{parent}",
                        if p.sources[parent].filter.is_some() {
                            "filter"
                        } else {
                            "extract"
                        }
                    ),
                    format!("source:{name}"),
                ));
            }
            for agg in p.aggregates.values().filter(|a| a.from.contains(name)) {
                plan.edges
                    .push((out.clone(), format!("aggregate:{}", agg.name)));
            }
            for sink in p.outputs_of(name) {
                plan.edges.push((out.clone(), format!("sink:{sink}")));
            }
        }
        for (name, agg) in &p.aggregates {
            plan.nodes
                .insert(format!("aggregate:{name}"), Node::Aggregate(agg.clone()));
            for sink in p.outputs_of(name) {
                plan.edges
                    .push((format!("aggregate:{name}"), format!("sink:{sink}")));
            }
        }
        for (name, sink) in &p.sinks {
            plan.nodes
                .insert(format!("sink:{name}"), Node::Sink(sink.clone()));
        }
        plan.edges.sort();
        plan.edges.dedup();
        plan
    }

    fn label(&self, id: &str) -> String {
        match self.nodes.get(id) {
            Some(Node::Source { source, service }) => {
                let method = if source.method == crate::check::Method::Post {
                    "POST"
                } else {
                    "GET"
                };
                format!(
                    "{id}\\n{method} {}{}",
                    crate::check::pipeline::url_shown(&service.base_url).trim_end_matches('/'),
                    source.path
                )
            }
            Some(Node::Sink(s)) => match s {
                Sink::Sled { tree, .. } => format!("{id}\\nsled(\"{tree}\")"),
                Sink::Jsonl { path, .. } => format!("{id}\\njsonl(\"{path}\")"),
                Sink::Stdout { .. } => format!("{id}\\nstdout()"),
                Sink::Postgres { table, .. } => format!("{id}\\npostgres(table = \"{table}\")"),
                Sink::Webhook { url, .. } => format!(
                    "{id}\\nwebhook(\"{}\")",
                    crate::check::pipeline::url_shown(url.shown())
                ),
            },
            _ => id.to_string(),
        }
    }

    /// Graphviz text. No secret is in it: auth, headers and query values are not shown.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph hamstr {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for id in self.nodes.keys() {
            out.push_str(&format!(
                "  \"{id}\" [label=\"{}\"];\n",
                self.label(id).replace('"', "\\\"").replace("\\\\n", "\\n")
            ));
        }
        for (a, b) in &self.edges {
            out.push_str(&format!("  \"{a}\" -> \"{b}\";\n"));
        }
        out.push_str("}\n");
        out
    }

    pub fn to_mermaid(&self) -> String {
        let ids: BTreeMap<&str, String> = self
            .nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), format!("n{i}")))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for (id, short) in &ids {
            out.push_str(&format!(
                "  {short}[\"{}\"]\n",
                self.label(id)
                    .replace("\\n", "<br/>")
                    .replace('"', "#quot;")
            ));
        }
        for (a, b) in &self.edges {
            if let (Some(x), Some(y)) = (ids.get(a.as_str()), ids.get(b.as_str())) {
                out.push_str(&format!("  {x} --> {y}\n"));
            }
        }
        out
    }
}
