//! Syntax tree to checked pipeline: resolves names, types expressions, compiles
//! JSONPath, validates durations, rates, cron and URLs, and collects every diagnostic
//! in one pass. Pure: the environment comes in as a lookup function.

mod aggregate;
mod auth;
mod cluster;
mod convert;
pub mod diagnostic;
mod expr;
mod fields;
mod for_each;
mod functions;
mod incremental;
mod jsonpath;
mod model;
mod paginate;
pub mod pipeline;
pub mod postgres_url;
mod props;
mod receive;
mod request;
mod schedule;
mod secrets;
mod server;
mod service;
mod sink;
mod source;
pub mod suggest;
pub mod tenants;
mod values;

pub use diagnostic::{Code, Diagnostic, Label, Report, Severity};

/// The words the checker accepts: the language server's reference is tested against
/// them, so that it offers every one.
#[cfg(test)]
pub(crate) mod vocabulary {
    pub(crate) use super::auth::AUTH_KINDS;
    pub(crate) use super::functions::FUNCTIONS;
    pub(crate) use super::paginate::PAGINATORS;
    pub(crate) use super::receive::{PROPS as RECEIVE_PROPS, VERIFY_KINDS};
    pub(crate) use super::server::PROPS as SERVER_PROPS;
    pub(crate) use super::service::PROPS as SERVICE_PROPS;
    pub(crate) use super::sink::SINK_KINDS;
    pub(crate) use super::source::PROPS as SOURCE_PROPS;
}
pub use pipeline::*;
pub use receive::standard_key;
pub use values::parse_duration;

use crate::syntax::{self, ast, Span};
use std::collections::{BTreeMap, BTreeSet};

/// Where `env("NAME")` values come from.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where the files a pipeline names (a tenants file) come from: the text of a path as
/// written in the pipeline, or why it cannot be read. The loader resolves it beside the
/// pipeline file.
pub type FileLookup<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// The outcome of checking a file: the pipeline when there were no errors, and the
/// report (possibly holding warnings) in any case.
pub struct Checked {
    pub pipeline: Option<Pipeline>,
    pub report: Report,
}

/// Checks the text of a pipeline file that names no other file (a `tenants` file is
/// reported unreadable).
pub fn check(file_name: &str, text: &str, env: EnvLookup) -> Checked {
    check_with(
        file_name,
        text,
        env,
        &|_| Err("no files are read here".to_string()),
        Mode::Single,
    )
}

/// How the pipeline is to run: alone, or as one instance of a cluster (spec §14), where
/// state kept on one machine (`sled` sinks, aggregates) is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Single,
    Cluster,
}

/// Checks the text of a pipeline file for a run in `mode`, reading the files it names
/// through `files`.
pub fn check_with(
    file_name: &str,
    text: &str,
    env: EnvLookup,
    files: FileLookup,
    mode: Mode,
) -> Checked {
    let (tree, syntax_errors) = syntax::parse(text);
    // The values the environment gave: a URL among them is a secret's hiding place.
    let from_env = std::cell::RefCell::new(BTreeSet::new());
    let recording = |name: &str| {
        let value = env(name);
        if let Some(v) = &value {
            from_env.borrow_mut().insert(v.clone());
        }
        value
    };
    let mut ctx = Ctx::new(&recording, files);
    for e in syntax_errors {
        ctx.lexical_errors.push(e.span);
        let mut d = Diagnostic::error(Code::Syntax, e.message, e.span, e.label).with_help(e.help);
        for (span, text) in e.related {
            d = d.with_label(span, text);
        }
        ctx.diags.push(d);
    }
    let pipeline =
        suggest::bounded(|| tree.as_ref().map(|tree| ctx.check_file(tree))).map(|mut p| {
            p.mask_urls_from(&from_env.borrow());
            p
        });
    let mut diagnostics = ctx.diags;
    if let (Mode::Cluster, Some(tree), Some(p)) = (mode, &tree, &pipeline) {
        diagnostics.extend(cluster::local_state(tree, p));
    }
    diagnostics.sort_by_key(|d| {
        (
            d.labels.first().map_or(0, |l| l.span.start),
            d.severity == Severity::Warning,
        )
    });
    let report = Report {
        file: file_name.to_string(),
        text: text.to_string(),
        diagnostics,
    };
    let pipeline = if report.errors() == 0 { pipeline } else { None };
    Checked { pipeline, report }
}

/// The declarations of a file by kind, for resolving references.
#[derive(Default)]
struct Decls<'a> {
    services: BTreeMap<&'a str, &'a ast::Service>,
    models: BTreeMap<&'a str, &'a ast::Model>,
    sources: BTreeMap<&'a str, &'a ast::Source>,
    sinks: BTreeMap<&'a str, &'a ast::Sink>,
    aggregates: BTreeMap<&'a str, &'a ast::Aggregate>,
}

pub(crate) struct Ctx<'e> {
    pub diags: Vec<Diagnostic>,
    env: EnvLookup<'e>,
    files: FileLookup<'e>,
    /// The names `tenants` declares (their files readable or not).
    tenants_declared: BTreeSet<String>,
    /// Declared sources and sinks that a misspelled reference was taken to mean, so
    /// they are not also reported as unused.
    meant: BTreeSet<String>,
    /// JSONPaths already compiled by the library, by text.
    paths: std::collections::HashMap<String, JsonPath>,
    /// Where a problem inside a literal (a bad escape) was reported: what the literal
    /// decodes to is not judged again.
    lexical_errors: Vec<Span>,
    /// `env(...)` calls whose variable is unset with no default: already warned about,
    /// their empty value is not judged again.
    unset_env: Vec<Span>,
    /// What `env(...)` gave inside computed `query` and `body` values: secrets.
    request_env: Vec<String>,
    /// Every `receive` path with where it is written and its source, in file order.
    receive_paths: Vec<(String, Span, String)>,
}

impl<'e> Ctx<'e> {
    fn new(env: EnvLookup<'e>, files: FileLookup<'e>) -> Self {
        Ctx {
            diags: Vec::new(),
            env,
            files,
            tenants_declared: BTreeSet::new(),
            meant: BTreeSet::new(),
            paths: std::collections::HashMap::new(),
            lexical_errors: Vec::new(),
            unset_env: Vec::new(),
            request_env: Vec::new(),
            receive_paths: Vec::new(),
        }
    }

    /// "did you mean `x`?" for a misspelled reference to a declared source or sink; `x`
    /// then counts as used.
    pub fn suggest<'a>(
        &mut self,
        name: &str,
        declared: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        let best = diagnostic::closest(name, declared)?;
        self.meant.insert(best.to_string());
        Some(format!("did you mean `{best}`?"))
    }

    /// Whether the value written at `span` was already reported as flawed: a literal
    /// with a bad escape, or an unset `env(...)`. Checks of the value itself then say
    /// nothing more.
    pub fn already_reported(&self, span: Span) -> bool {
        self.unset_env.contains(&span)
            || self
                .lexical_errors
                .iter()
                .any(|e| span.start <= e.start && e.end <= span.end)
    }

    pub fn error(
        &mut self,
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(code, message, span, label));
        self.diags.last_mut().expect("just pushed")
    }

    /// A property set twice: `message` at the second setting, "first set here" at the first.
    pub fn set_twice(&mut self, message: String, again: Span, first: Span) {
        self.error(Code::DuplicateProperty, message, again, "set again here")
            .labels
            .push(Label {
                span: first,
                text: "first set here".into(),
            });
    }

    pub fn warn(
        &mut self,
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::warning(code, message, span, label));
        self.diags.last_mut().expect("just pushed")
    }

    fn check_file(&mut self, file: &ast::File) -> Pipeline {
        let decls = self.collect_decls(file);
        let models = self.models(&decls);
        let mut p = Pipeline {
            server: self.server(file),
            ..Pipeline::default()
        };
        self.tenants_declared = file
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Tenants(t) => Some(t.name.name.clone()),
                _ => None,
            })
            .collect();
        let tables = self.tenant_tables(file);
        p.files = tables.values().map(|t| t.path.clone()).collect();
        let mut instances = tenants::Instances::default();
        for svc in decls.services.values() {
            if let Some(s) = self.service_for_tenants(svc, &tables, &mut instances) {
                p.services.insert(s.name.clone(), s);
            }
        }
        // Parents first, so a child can see its parent's fields.
        for name in for_each::order_by_parent(self, &decls) {
            let src = decls.sources[name];
            if let Some(s) =
                self.source_for_tenants(src, &decls, &models, &p, &tables, &mut instances)
            {
                p.sources.insert(s.name.clone(), s);
            }
        }
        self.receive_paths_once();
        for sink in decls.sinks.values() {
            if let Some(s) = self.sink(sink) {
                p.sinks.insert(s.name().to_string(), s);
            }
        }
        for agg in decls.aggregates.values() {
            if let Some(a) = self.aggregate(agg, &decls, &models) {
                p.aggregates.insert(a.name.clone(), a);
            }
        }
        p.url_secrets.extend(
            std::mem::take(&mut self.request_env)
                .into_iter()
                .filter(|v| !v.is_empty()),
        );
        let edges = self.flows(file, &decls, &mut p);
        self.sink_compatibility(&edges, &p);
        self.unused(file, &decls);
        instances.expand(&mut p);
        p
    }

    /// Indexes declarations by kind; a second declaration of a name is an error that
    /// points at both, and the first one is the one that counts.
    fn collect_decls<'a>(&mut self, file: &'a ast::File) -> Decls<'a> {
        fn first_of<'a, T>(
            map: &mut BTreeMap<&'a str, &'a T>,
            name: &'a ast::Ident,
            v: &'a T,
            span: fn(&T) -> Span,
        ) -> Option<Span> {
            match map.entry(&name.name) {
                std::collections::btree_map::Entry::Occupied(e) => Some(span(e.get())),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                    None
                }
            }
        }
        let mut d = Decls::default();
        for item in &file.items {
            let (name, first) = match item {
                ast::Item::Service(s) => (
                    &s.name,
                    first_of(&mut d.services, &s.name, s, |x| x.name.span),
                ),
                ast::Item::Model(m) => (
                    &m.name,
                    first_of(&mut d.models, &m.name, m, |x| x.name.span),
                ),
                ast::Item::Sink(s) => {
                    (&s.name, first_of(&mut d.sinks, &s.name, s, |x| x.name.span))
                }
                // Sources and aggregates share one namespace.
                ast::Item::Source(s) => {
                    let first = d.aggregates.get(s.name.name.as_str()).map(|a| a.name.span);
                    match first {
                        Some(f) => (&s.name, Some(f)),
                        None => (
                            &s.name,
                            first_of(&mut d.sources, &s.name, s, |x| x.name.span),
                        ),
                    }
                }
                ast::Item::Aggregate(a) => {
                    let first = d.sources.get(a.name.name.as_str()).map(|s| s.name.span);
                    match first {
                        Some(f) => (&a.name, Some(f)),
                        None => (
                            &a.name,
                            first_of(&mut d.aggregates, &a.name, a, |x| x.name.span),
                        ),
                    }
                }
                ast::Item::Flow(_) | ast::Item::Tenants(_) | ast::Item::Server(_) => continue,
            };
            if let Some(first) = first {
                self.error(
                    Code::DuplicateName,
                    format!("`{}` is declared twice", name.name),
                    name.span,
                    "declared again here",
                )
                .labels
                .push(Label {
                    span: first,
                    text: "first declared here".into(),
                });
            }
        }
        d
    }

    /// Warnings for sources and aggregates that feed nothing, and sinks nothing feeds.
    /// Uses are read from the syntax tree, so a flow, child or aggregate with an error
    /// of its own still counts as a use, and so does a misspelling of the name.
    fn unused(&mut self, file: &ast::File, decls: &Decls) {
        let mut feeding: BTreeSet<&str> = BTreeSet::new();
        let mut fed: BTreeSet<&str> = BTreeSet::new();
        for item in &file.items {
            if let ast::Item::Flow(f) = item {
                feeding.extend(f.inputs.iter().map(|i| i.name.as_str()));
                fed.extend(f.outputs.iter().map(|o| o.name.as_str()));
            }
        }
        let names_in = |block: &'_ ast::Block, prop: &str| -> Vec<String> {
            let Some(ast::StmtValue::Expr(e)) = block.get(prop).map(|s| &s.value) else {
                return Vec::new();
            };
            let items: Vec<&ast::Expr> = match &e.kind {
                ast::ExprKind::List(items) => items.iter().map(|a| &a.value).collect(),
                _ => vec![e],
            };
            items
                .into_iter()
                .filter_map(|i| match &i.kind {
                    ast::ExprKind::Name(parts) => Some(parts[0].name.clone()),
                    _ => None,
                })
                .collect()
        };
        let mut parents: BTreeSet<String> = BTreeSet::new();
        for s in decls.sources.values() {
            parents.extend(names_in(&s.body, "for_each"));
        }
        for a in decls.aggregates.values() {
            parents.extend(names_in(&a.body, "from"));
        }
        let used = |name: &str, meant: &BTreeSet<String>| {
            feeding.contains(name) || parents.contains(name) || meant.contains(name)
        };
        let mut warnings = Vec::new();
        let emitters = decls
            .sources
            .iter()
            .map(|(name, s)| (*name, s.name.span, "source", "records"))
            .chain(
                decls
                    .aggregates
                    .iter()
                    .map(|(name, a)| (*name, a.name.span, "aggregate", "groups")),
            );
        for (name, span, kind, what) in emitters {
            if !used(name, &self.meant) {
                warnings.push(
                    Diagnostic::warning(
                        Code::UnusedSource,
                        format!("{kind} `{name}` feeds no sink"),
                        span,
                        format!("its {what} go nowhere"),
                    )
                    .with_help(Some(format!("add `flow {name} -> SINK`"))),
                );
            }
        }
        for (name, s) in &decls.sinks {
            if !fed.contains(name) && !self.meant.contains(*name) {
                warnings.push(
                    Diagnostic::warning(
                        Code::UnusedSink,
                        format!("sink `{name}` is fed by nothing"),
                        s.name.span,
                        "no flow ends here",
                    )
                    .with_help(Some(format!("add `flow SOURCE -> {name}`"))),
                );
            }
        }
        self.diags.extend(warnings);
    }
}
