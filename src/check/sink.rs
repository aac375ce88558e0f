//! Sinks and flows, and whether the records meeting in a sink agree; aggregates are
//! checked in `aggregate.rs`.

use super::diagnostic::did_you_mean;
use super::props::Signature;
use super::{Code, Ctx, Decls, Label, Pipeline, Sink, Text};
use crate::syntax::ast::{self, ExprKind};
use crate::syntax::Span;
use std::collections::BTreeMap;

pub(crate) const SINK_KINDS: &[&str] = &["sled", "jsonl", "stdout", "postgres", "webhook", "exec"];

/// Where each `from -> to` edge was written, for pointing at it.
pub(super) type EdgeSpans = Vec<(String, String, Span)>;

impl<'e> Ctx<'e> {
    pub(super) fn sink(&mut self, sink: &ast::Sink) -> Option<Sink> {
        let e = &sink.value;
        let ExprKind::Call { name: kind, args } = &e.kind else {
            self.error(
                Code::UnknownSinkKind,
                "a sink is a call like `sled(\"orders\")`",
                e.span,
                "not a sink",
            )
            .help = Some(format!("the sink kinds are: {}", SINK_KINDS.join(", ")));
            return None;
        };
        let name = sink.name.name.clone();
        let sig = match kind.name.as_str() {
            "sled" => Signature {
                name: "sled",
                params: &["tree"],
                required: &["tree"],
                positional: &["tree"],
            },
            "jsonl" => Signature {
                name: "jsonl",
                params: &["path"],
                required: &["path"],
                positional: &["path"],
            },
            "stdout" => Signature {
                name: "stdout",
                params: &[],
                required: &[],
                positional: &[],
            },
            "postgres" => Signature {
                name: "postgres",
                params: &["url", "table", "batch"],
                required: &["url", "table"],
                positional: &["url"],
            },
            "webhook" => Signature {
                name: "webhook",
                params: &["url", "batch"],
                required: &["url"],
                positional: &["url"],
            },
            "exec" => Signature {
                name: "exec",
                params: &["command", "batch", "timeout"],
                required: &["command"],
                positional: &["command"],
            },
            other => {
                let help = did_you_mean(other, SINK_KINDS.iter().copied());
                self.error(
                    Code::UnknownSinkKind,
                    format!("unknown sink kind `{other}`"),
                    kind.span,
                    "unknown sink kind",
                )
                .help =
                    help.or_else(|| Some(format!("the sink kinds are: {}", SINK_KINDS.join(", "))));
                return None;
            }
        };
        let a = self.call_args(&sig, args, kind.span);
        // An error in `batch` does not stop the other arguments from being checked.
        let batch = match a.get("batch") {
            Some(b) => self
                .int(b, "`batch`", 1)
                .map(|n| Some(n.min(100_000) as u32)),
            None => Some(None),
        };
        let nonempty = |ctx: &mut Self, key: &str| -> Option<(Text, Span)> {
            let v = a.get(key)?;
            let t = ctx.text(v, false, &format!("`{key}`"))?;
            if t.value.is_empty() {
                ctx.error(
                    Code::InvalidValue,
                    format!("`{key}` must not be empty"),
                    v.span,
                    "empty",
                );
                return None;
            }
            Some((t, v.span))
        };
        Some(match kind.name.as_str() {
            "sled" => Sink::Sled {
                name,
                tree: nonempty(self, "tree")?.0.value,
            },
            "jsonl" => {
                let (path, span) = nonempty(self, "path")?;
                self.jsonl_path(&path.value, span)?;
                Sink::Jsonl {
                    name,
                    path: path.value,
                }
            }
            "stdout" => Sink::Stdout { name },
            "postgres" => {
                let url = nonempty(self, "url").filter(|(url, span)| {
                    let parsed = url::Url::parse(&url.value);
                    let ok = parsed
                        .is_ok_and(|u| u.scheme() == "postgres" || u.scheme() == "postgresql");
                    if !ok {
                        self.error(
                            Code::InvalidUrl,
                            "the database URL must look like `postgres://user:password@host/db`",
                            *span,
                            "not a postgres URL",
                        );
                        return false;
                    }
                    // What the sink would refuse at run time, said now.
                    match super::postgres_url::usable_url(&url.value) {
                        Ok(_) => true,
                        Err(why) => {
                            self.error(
                                Code::InvalidUrl,
                                format!("the database URL {why}"),
                                *span,
                                "not usable",
                            );
                            false
                        }
                    }
                });
                let table = nonempty(self, "table").filter(|(table, span)| {
                    let ok = table
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                    if !ok {
                        self.error(
                            Code::InvalidValue,
                            format!(
                                "table name `{}` may hold only letters, digits, `_` and `.`",
                                table.value
                            ),
                            *span,
                            "bad table name",
                        );
                    }
                    ok
                });
                Sink::Postgres {
                    name,
                    url: url?.0,
                    table: table?.0.value,
                    batch: batch?.unwrap_or(500),
                }
            }
            "exec" => {
                let command = a.get("command").and_then(|c| self.exec_command(c));
                let timeout_ms = match a.get("timeout") {
                    Some(t) => self.duration(t, "`timeout`"),
                    None => Some(60_000),
                };
                Sink::Exec {
                    name,
                    command: command?,
                    batch: batch?.unwrap_or(100),
                    timeout_ms: timeout_ms?,
                }
            }
            _ => {
                let url = nonempty(self, "url")
                    .and_then(|(url, span)| self.url(&url, span, "the webhook URL").map(|_| url));
                Sink::Webhook {
                    name,
                    url: url?,
                    batch: batch?.unwrap_or(100),
                }
            }
        })
    }

    /// The program and arguments of an `exec` sink: a list of strings (or `env(...)`,
    /// whose values are secrets: a token handed to a callback), the program not empty.
    /// Every item is checked, not only the first bad one.
    fn exec_command(&mut self, e: &ast::Expr) -> Option<Vec<Text>> {
        let ExprKind::List(items) = &e.kind else {
            self.error(
                Code::InvalidValue,
                "the command of an `exec` sink is a list: the program, then its arguments",
                e.span,
                "expected a list",
            )
            .help = Some("like `exec([\"./announce.sh\", \"--quiet\"])`; no shell runs it".into());
            return None;
        };
        let Some(first) = items.first() else {
            self.error(
                Code::InvalidValue,
                "the command of an `exec` sink names no program",
                e.span,
                "empty list",
            )
            .help = Some("like `exec([\"./announce.sh\"])`".into());
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            if let Some(n) = &item.name {
                self.error(
                    Code::InvalidValue,
                    "the items of a command have no names",
                    n.span,
                    "a name here",
                );
                ok = false;
                continue;
            }
            let secret =
                matches!(&item.value.kind, ExprKind::Call { name, .. } if name.name == "env");
            match self.text(&item.value, secret, "an item of the command") {
                Some(t) if t.value.contains('\0') => {
                    self.error(
                        Code::InvalidValue,
                        "an item of the command holds a NUL character, which no program can be given",
                        item.value.span,
                        "NUL",
                    );
                    ok = false;
                }
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        if ok && out[0].value.is_empty() {
            self.error(
                Code::InvalidValue,
                "the program of an `exec` sink must not be empty",
                first.value.span,
                "empty",
            );
            return None;
        }
        ok.then_some(out)
    }

    /// A jsonl sink appends to its file: one inside a data directory (`.hamstr/` is
    /// where `run` keeps it by default) would damage the state store, one onto a
    /// pipeline file the pipeline. The data directory `--data-dir` names is refused
    /// when the run starts.
    fn jsonl_path(&mut self, path: &str, span: Span) -> Option<()> {
        let path = std::path::Path::new(path);
        let what = if path.components().any(|c| c.as_os_str() == ".hamstr") {
            "into a data directory (`.hamstr/`), where it would damage the state store"
        } else if path.extension().is_some_and(|e| e == "hmr") {
            "onto a pipeline file"
        } else {
            return Some(());
        };
        self.error(
            Code::ProtectedPath,
            format!("a `jsonl` sink must not write {what}"),
            span,
            "not a place for records",
        )
        .help = Some("give the sink a file of its own, such as `out/records.jsonl`".into());
        None
    }

    /// Records every flow edge; unknown names are reported with a suggestion.
    pub(super) fn flows(&mut self, file: &ast::File, decls: &Decls, p: &mut Pipeline) -> EdgeSpans {
        let mut spans = EdgeSpans::new();
        let mut seen: std::collections::HashSet<(String, String)> =
            p.flows.iter().cloned().collect();
        for item in &file.items {
            let ast::Item::Flow(flow) = item else {
                continue;
            };
            let mut inputs = Vec::new();
            for i in &flow.inputs {
                if decls.sources.contains_key(i.name.as_str())
                    || decls.aggregates.contains_key(i.name.as_str())
                {
                    inputs.push(i);
                } else {
                    let what = if decls.sinks.contains_key(i.name.as_str()) {
                        "is a sink; flows go from sources to sinks"
                    } else {
                        "is not a declared source or aggregate"
                    };
                    let help = self.suggest(
                        &i.name,
                        decls.sources.keys().chain(decls.aggregates.keys()).copied(),
                    );
                    self.error(
                        Code::UnknownSource,
                        format!("flow from `{}`, which {what}", i.name),
                        i.span,
                        "unknown source",
                    )
                    .help = help;
                }
            }
            for o in &flow.outputs {
                if !decls.sinks.contains_key(o.name.as_str()) {
                    let help = self.suggest(&o.name, decls.sinks.keys().copied());
                    self.error(
                        Code::UnknownSink,
                        format!("flow into `{}`, which is not a declared sink", o.name),
                        o.span,
                        "unknown sink",
                    )
                    .help = help;
                    continue;
                }
                for i in &inputs {
                    let edge = (i.name.clone(), o.name.clone());
                    if seen.insert(edge.clone()) {
                        p.flows.push(edge.clone());
                        spans.push((edge.0, edge.1, i.span));
                    }
                }
            }
        }
        spans
    }

    /// Sources meeting in one sink must carry the same fields (and, for keyed sinks,
    /// the same key).
    pub(super) fn sink_compatibility(&mut self, spans: &EdgeSpans, p: &Pipeline) {
        let mut by_sink: BTreeMap<&str, Vec<(&str, Span)>> = BTreeMap::new();
        for (from, to, span) in spans {
            by_sink.entry(to).or_default().push((from, *span));
        }
        // A source feeding many sinks is compared once per sink: build its schema once.
        let mut schemas: std::collections::HashMap<&str, Option<std::rc::Rc<super::Schema>>> =
            std::collections::HashMap::new();
        for (sink, inputs) in by_sink {
            let keyed = p.sinks.get(sink).is_some_and(Sink::is_keyed);
            let mut reference: Option<(&str, Span, std::rc::Rc<super::Schema>)> = None;
            for (input, span) in inputs {
                let schema = schemas
                    .entry(input)
                    .or_insert_with(|| p.schema_of(input).map(std::rc::Rc::new));
                let Some(schema) = schema.clone() else {
                    continue;
                };
                let Some((first, first_span, first_schema)) = &reference else {
                    reference = Some((input, span, schema));
                    continue;
                };
                if let Some(diff) = schema_difference(first, first_schema, input, &schema) {
                    self.error(Code::IncompatibleModels, format!("sink `{sink}` is fed by `{first}` and `{input}`, whose records differ: {diff}"), span, "different fields")
                        .labels
                        .push(Label { span: *first_span, text: "compared with this".into() });
                } else if keyed && schema.key != first_schema.key {
                    self.error(
                        Code::IncompatibleModels,
                        format!("keyed sink `{sink}` is fed by `{first}` keyed by [{}] and `{input}` keyed by [{}]", first_schema.key.join(", "), schema.key.join(", ")),
                        span,
                        "different key",
                    )
                    .labels
                    .push(Label { span: *first_span, text: "compared with this".into() });
                }
            }
        }
    }
}

/// The first difference between two record schemas, in words.
fn schema_difference(a: &str, sa: &super::Schema, b: &str, sb: &super::Schema) -> Option<String> {
    for (name, ty, opt) in &sa.fields {
        match sb.fields.iter().find(|(n, ..)| n == name) {
            None => return Some(format!("`{a}` has a field `{name}` that `{b}` lacks")),
            Some((_, t2, _)) if t2 != ty => {
                return Some(format!(
                    "`{name}` is {} in `{a}` but {} in `{b}`",
                    ty.name(),
                    t2.name()
                ))
            }
            Some((_, _, o2)) if o2 != opt => {
                let (req, optn) = if *opt { (b, a) } else { (a, b) };
                return Some(format!(
                    "`{name}` is required in `{req}` but optional in `{optn}`"
                ));
            }
            _ => {}
        }
    }
    sb.fields
        .iter()
        .find(|(n, ..)| !sa.fields.iter().any(|(m, ..)| m == n))
        .map(|(n, ..)| format!("`{b}` has a field `{n}` that `{a}` lacks"))
}
