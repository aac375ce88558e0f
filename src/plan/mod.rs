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

    /// A node's label, one line per item, as plain text (each format escapes it).
    fn label(&self, id: &str) -> Vec<String> {
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
            Some(Node::Sink(s)) => Some(match s {
                Sink::Sled { tree, .. } => format!("sled(\"{tree}\")"),
                Sink::Jsonl { path, .. } => format!("jsonl(\"{path}\")"),
                Sink::Stdout { .. } => "stdout()".to_string(),
                Sink::Postgres { table, .. } => format!("postgres(table = \"{table}\")"),
                Sink::Webhook { url, .. } => format!(
                    "webhook(\"{}\")",
                    crate::check::pipeline::url_shown(url.shown())
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
                id.replace('"', "\\\""),
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
        let ids: BTreeMap<&str, String> = self
            .nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), format!("n{i}")))
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
            if let (Some(x), Some(y)) = (ids.get(a.as_str()), ids.get(b.as_str())) {
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
