//! Diagnostics: one report holds the source text once and every problem found in it,
//! rendered by miette for people or as JSON (spec §10) for editors and CI.

use crate::syntax::Span;
use serde::Serialize;

// The did-you-mean helper lives in `suggest`; the checks reach it here.
pub use super::suggest::{closest, did_you_mean};

/// Declares `Code` from one list, so `Code::ALL` and `Code::as_str` cannot miss a
/// variant.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// Every diagnostic code hamstr emits, each with a snippet that triggers it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as written in the output: `hamstr::unknown_service`.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    /// `service s { base_url = }`
    Syntax = "hamstr::syntax",
    /// `source o from paymnts { ... }`
    UnknownService = "hamstr::unknown_service",
    /// `model = Ordr`
    UnknownModel = "hamstr::unknown_model",
    /// `flow ordrs -> store`, `for_each = ordrs`, `from = [ordrs]`
    UnknownSource = "hamstr::unknown_source",
    /// `flow orders -> stor`
    UnknownSink = "hamstr::unknown_sink",
    /// two `service api { ... }`
    DuplicateName = "hamstr::duplicate_name",
    /// `timeout = 1s  timeout = 2s`, a header or field set twice,
    /// `page(param = "p", param = "q")`
    DuplicateProperty = "hamstr::duplicate_property",
    /// `base_ur = "..."`
    UnknownProperty = "hamstr::unknown_property",
    /// a source without `fields`
    MissingProperty = "hamstr::missing_property",
    /// `records = $.data[*`
    InvalidJsonPath = "hamstr::invalid_jsonpath",
    /// `timeout = 0s`, `every(5x)`
    InvalidDuration = "hamstr::invalid_duration",
    /// `rate_limit = 0/s`
    InvalidRate = "hamstr::invalid_rate",
    /// `cron("61 * * * *")`
    InvalidCron = "hamstr::invalid_cron",
    /// `base_url = "ftp://x"`
    InvalidUrl = "hamstr::invalid_url",
    /// `concurrency = "four"`: a value of the wrong kind for its property
    InvalidValue = "hamstr::invalid_value",
    /// `paginate = pages()`
    UnknownPaginator = "hamstr::unknown_paginator",
    /// `auth = bearr(...)`
    UnknownAuth = "hamstr::unknown_auth",
    /// `sink s = sqlite("x")`
    UnknownSinkKind = "hamstr::unknown_sink_kind",
    /// `lowr($.x)`
    UnknownFunction = "hamstr::unknown_function",
    /// `page(parm = "p")`
    UnknownArgument = "hamstr::unknown_argument",
    /// `cursor(param = "after")` without `from`
    MissingArgument = "hamstr::missing_argument",
    /// `id : strng`
    UnknownType = "hamstr::unknown_type",
    /// a required model field with no entry in `fields`
    UnmappedField = "hamstr::unmapped_field",
    /// a `fields` entry the model does not have, or a bare name that is no field
    UnknownField = "hamstr::unknown_field",
    /// `qty = "many"` for an `int` field
    TypeMismatch = "hamstr::type_mismatch",
    /// `key = nte` or a key on an optional field
    InvalidKey = "hamstr::invalid_key",
    /// `incremental { cursor = note }` on an optional field
    InvalidCursor = "hamstr::invalid_cursor",
    /// `get = "/orders/{oid}/items"` when the parent has no `oid`
    UnknownPlaceholder = "hamstr::unknown_placeholder",
    /// `a` for_each `b`, `b` for_each `a`
    ForEachCycle = "hamstr::for_each_cycle",
    /// two sources with different fields feeding one sink
    IncompatibleModels = "hamstr::incompatible_models",
    /// `where = created_at > 5`
    TypeError = "hamstr::type_error",
    /// a wildcard path for a non-`json` field
    NotSingular = "hamstr::not_singular",
    /// `$.x` in `where`, or `parent.x` outside a child source
    OutOfScope = "hamstr::out_of_scope",
    /// both `get` and `post`, or `body` with `get`
    ConflictingProperties = "hamstr::conflicting_properties",
    /// `jsonl(".hamstr/records")` or `jsonl("pipeline.hmr")`: a sink that would write
    /// into a data directory or onto a pipeline file
    ProtectedPath = "hamstr::protected_path",
    /// `sink s = sled("t")` or an aggregate, checked with `--cluster`: state on one
    /// machine only
    LocalInCluster = "hamstr::local_in_cluster",
    /// `verify = hmca(...)` in a source's `receive`
    UnknownVerify = "hamstr::unknown_verify",
    /// two sources with `receive { path = "/hooks/x" }`
    DuplicateReceivePath = "hamstr::duplicate_receive_path",
    /// warning: `receive { verify = none }` without `fetch`: anyone may send records
    UnverifiedReceive = "hamstr::unverified_receive",
    /// warning: `env("TOKEN")` with TOKEN unset and no default
    EnvNotSet = "hamstr::env_not_set",
    /// warning: a source that feeds no sink
    UnusedSource = "hamstr::unused_source",
    /// warning: a sink nothing feeds
    UnusedSink = "hamstr::unused_sink",
    /// `tenants shops = csv("shop.csv")`: a tenants file missing, unreadable, without a
    /// `name` column, or with a name twice
    TenantsFile = "hamstr::tenants_file",
    /// `service pos for shop { ... }` with no `tenants shop`
    UnknownTenants = "hamstr::unknown_tenants",
    /// `tenant.ulr` when the tenants file has no `ulr` column
    UnknownColumn = "hamstr::unknown_column",
    /// warning: a keyed source of a tenant service with no key field from `tenant.`
    TenantKey = "hamstr::tenant_key",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    /// The first label is the primary one.
    pub labels: Vec<Label>,
}

impl Diagnostic {
    pub fn error(
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            labels: vec![Label {
                span,
                text: label.into(),
            }],
        }
    }
    pub fn warning(
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message, span, label)
        }
    }
    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
    pub fn with_label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A file's text and everything found wrong with it.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// The JSON object of spec §10.
    pub fn to_json(&self) -> serde_json::Value {
        let index = LineIndex::new(&self.text);
        let diagnostics: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let labels: Vec<serde_json::Value> = d
                    .labels
                    .iter()
                    .map(|l| {
                        let (line, column) = index.line_col(&self.text, l.span.start);
                        serde_json::json!({
                            "line": line, "column": column,
                            "offset": l.span.start, "length": l.span.len(),
                            "text": l.text,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "code": d.code.as_str(), "severity": d.severity, "message": d.message,
                    "help": d.help, "labels": labels,
                })
            })
            .collect();
        serde_json::json!({
            "file": self.file, "errors": self.errors(), "warnings": self.warnings(),
            "diagnostics": diagnostics,
        })
    }

    /// Renders every diagnostic with miette's graphical handler.
    pub fn render(&self, color: bool, width: usize) -> String {
        use miette::{GraphicalReportHandler, GraphicalTheme};
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(width)
            .with_links(false);
        // The file and what the messages quote from it are untrusted: a control character
        // (an escape sequence) would act on the reader's terminal. One byte for one, so
        // the spans still point where they did.
        let printable = |t: &str| -> String {
            t.chars()
                .map(|c| {
                    if c.is_ascii_control() && !matches!(c, '\n' | '\r' | '\t') {
                        '?'
                    } else {
                        c
                    }
                })
                .collect()
        };
        let source = miette::NamedSource::new(&self.file, printable(&self.text));
        let mut out = String::new();
        for d in &self.diagnostics {
            let shown = Diagnostic {
                message: printable(&d.message),
                help: d.help.as_deref().map(printable),
                ..d.clone()
            };
            let view = MietteView {
                d: &shown,
                source: &source,
            };
            if handler.render_report(&mut out, &view).is_err() {
                out.push_str(&format!("{}: {}\n", d.code, d.message));
            }
            out.push('\n');
        }
        let (e, w) = (self.errors(), self.warnings());
        out.push_str(&format!(
            "{}: {e} error{}, {w} warning{}\n",
            self.file,
            if e == 1 { "" } else { "s" },
            if w == 1 { "" } else { "s" }
        ));
        out
    }
}

/// Byte offsets to 1-based line and column (columns count characters).
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }
    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset.min(text.len()))
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
}

struct MietteView<'a> {
    d: &'a Diagnostic,
    source: &'a miette::NamedSource<String>,
}

impl std::fmt::Debug for MietteView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.d.message)
    }
}
impl std::fmt::Display for MietteView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.d.message)
    }
}
impl std::error::Error for MietteView<'_> {}

impl miette::Diagnostic for MietteView<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        Some(Box::new(self.d.code.as_str()))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.d
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let len = self.source.inner().len();
        Some(Box::new(self.d.labels.iter().enumerate().map(
            move |(i, l)| {
                let start = l.span.start.min(len);
                let span = (start, l.span.end.min(len).saturating_sub(start));
                if i == 0 {
                    miette::LabeledSpan::new_primary_with_span(Some(l.text.clone()), span)
                } else {
                    miette::LabeledSpan::new_with_span(Some(l.text.clone()), span)
                }
            },
        )))
    }
}
