//! The answers of the language server for one document: diagnostics from `check`,
//! completion, hover, definition, document symbols and formatting. Each works on any
//! text, half-typed or not.

use super::analysis::{Decl, Kind, Scan, Tok};
use super::position::LineIndex;
use super::reference;
use lsp_types::{
    CompletionItem, CompletionItemKind, Diagnostic, DiagnosticSeverity, DocumentSymbol,
    Documentation, Hover, HoverContents, Location, MarkupContent, MarkupKind, NumberOrString,
    Position, Range, SymbolKind, TextEdit, Uri,
};

/// The diagnostics `hamstr check` gives for `text`, positioned in UTF-16.
pub fn diagnostics(name: &str, text: &str) -> Vec<Diagnostic> {
    // A document on disk reads its tenants file beside it, as `check` does.
    let path = name.strip_prefix("file://").unwrap_or(name);
    let checked = super::super::load::check_file(
        std::path::Path::new(path),
        text,
        crate::check::Mode::Single,
    );
    let idx = LineIndex::new(text);
    checked
        .report
        .diagnostics
        .iter()
        .map(|d| {
            let range = d
                .labels
                .first()
                .map_or_else(Range::default, |l| idx.range(l.span.start, l.span.end));
            let mut message = d.message.clone();
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            Diagnostic {
                range,
                severity: Some(if d.is_error() {
                    DiagnosticSeverity::ERROR
                } else {
                    DiagnosticSeverity::WARNING
                }),
                code: Some(NumberOrString::String(d.code.as_str().to_string())),
                source: Some("hamstr".into()),
                message,
                ..Diagnostic::default()
            }
        })
        .collect()
}

fn item(label: &str, kind: CompletionItemKind, doc: Option<&str>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        documentation: doc.map(|d| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: d.to_string(),
            })
        }),
        ..CompletionItem::default()
    }
}

fn items(list: &[(&str, &str)], kind: CompletionItemKind) -> Vec<CompletionItem> {
    list.iter().map(|(k, d)| item(k, kind, Some(d))).collect()
}

fn names(scan: &Scan, kinds: &[Kind]) -> Vec<CompletionItem> {
    scan.names(kinds)
        .into_iter()
        .map(|n| item(n, CompletionItemKind::REFERENCE, None))
        .collect()
}

/// The fields a source's records have: its `fields` entries and its model's fields.
fn source_fields<'a>(scan: &'a Scan, src: &'a Decl) -> Vec<&'a str> {
    let mut out: Vec<&str> = src.fields.iter().map(|f| f.name.as_str()).collect();
    if let Some(model) = model_of(scan, src) {
        for f in &model.fields {
            if !out.contains(&f.name.as_str()) {
                out.push(&f.name);
            }
        }
    }
    out
}

fn model_of<'a>(scan: &'a Scan, src: &Decl) -> Option<&'a Decl> {
    let model = src
        .props
        .iter()
        .find(|(p, _)| p == "model")
        .and_then(|(_, v)| v.as_deref())?;
    scan.decls
        .iter()
        .find(|d| d.kind == Kind::Model && d.name == model)
}

/// What may be typed at `pos`.
pub fn completion(text: &str, pos: Position) -> Vec<CompletionItem> {
    let idx = LineIndex::new(text);
    let offset = idx.offset(pos);
    let scan = Scan::new(text);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..offset];
    // The word being typed, and what stands before it on the line.
    let typed = before
        .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
        .trim_end();
    let open = scan.open_at(offset);
    let path: Vec<&str> = open.path.iter().map(String::as_str).collect();
    let decl = open.decl.and_then(|i| scan.decls.get(i));
    let mut words = typed.split_whitespace().rev();
    let last = words.next().unwrap_or("");
    let prop = if last == "=" { words.next() } else { None };
    let keyword_line = typed.split_whitespace().next().unwrap_or("");

    if path.is_empty() {
        // Top level: a declaration's keyword, or the names it refers to.
        return match (keyword_line, last) {
            ("sink", "=") => items(reference::SINK_KINDS, CompletionItemKind::FUNCTION),
            ("source", "from") => names(&scan, &[Kind::Service]),
            ("flow", _) if typed.contains("->") => names(&scan, &[Kind::Sink]),
            ("flow", _) => names(&scan, &[Kind::Source, Kind::Aggregate]),
            ("", _) => [
                "service",
                "model",
                "source",
                "sink",
                "flow",
                "aggregate",
                "tenants",
                "server",
            ]
            .iter()
            .map(|k| item(k, CompletionItemKind::KEYWORD, None))
            .collect(),
            _ => Vec::new(),
        };
    }
    let innermost = *path.last().unwrap_or(&"");
    if let Some(prop) = prop {
        // A property's value.
        let fields = || {
            decl.map(|d| {
                source_fields(&scan, d)
                    .into_iter()
                    .map(|f| item(f, CompletionItemKind::FIELD, None))
                    .collect()
            })
            .unwrap_or_default()
        };
        return match (innermost, prop) {
            (_, "paginate") => items(reference::PAGINATORS, CompletionItemKind::FUNCTION),
            (_, "auth") => items(reference::AUTH_KINDS, CompletionItemKind::FUNCTION),
            ("receive", "verify") => items(reference::VERIFY_KINDS, CompletionItemKind::FUNCTION),
            (_, "schedule") => items(reference::SCHEDULES, CompletionItemKind::FUNCTION),
            (_, "model") => names(&scan, &[Kind::Model]),
            (_, "for_each") => names(&scan, &[Kind::Source]),
            ("aggregate", "from") => names(&scan, &[Kind::Source]),
            ("source", "key") | ("incremental", "cursor") => fields(),
            ("incremental", "order") => {
                vec![item("newest_first", CompletionItemKind::ENUM_MEMBER, None)]
            }
            ("source", "where") | ("fields", _) | ("compute", _) => {
                let mut out = items(reference::FUNCTIONS, CompletionItemKind::FUNCTION);
                if innermost == "fields" {
                    out.push(item("parent", CompletionItemKind::KEYWORD, None));
                } else {
                    out.extend(fields());
                }
                out
            }
            _ => Vec::new(),
        };
    }
    if !(last.is_empty() || last == "{" || last == "}") {
        return Vec::new();
    }
    // The start of a statement: the properties of the block, or a model's fields.
    match innermost {
        "fields" => decl
            .and_then(|d| model_of(&scan, d))
            .map(|m| {
                m.fields
                    .iter()
                    .map(|f| item(&f.name, CompletionItemKind::FIELD, f.ty.as_deref()))
                    .collect()
            })
            .unwrap_or_default(),
        block => reference::properties(block)
            .map(|(p, d)| item(p, CompletionItemKind::PROPERTY, Some(d)))
            .collect(),
    }
}

fn markdown(value: String) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value,
        }),
        range: None,
    }
}

/// What the word at `pos` is: a property's meaning, a field's type, a name's
/// declaration, a paginator's or function's use.
pub fn hover(text: &str, pos: Position) -> Option<Hover> {
    let idx = LineIndex::new(text);
    let offset = idx.offset(pos);
    let scan = Scan::new(text);
    let (word, span) = scan.word_at(offset)?;
    let open = scan.open_at(span.start);
    let decl = open.decl.and_then(|i| scan.decls.get(i));
    let next = scan.after(span.end);
    let is_stmt = matches!(next, Some(Tok::Punct("=" | ":" | "{")));
    let innermost = open.path.last().map(String::as_str).unwrap_or("");
    // A field: in a model, a `fields` block, or named in an expression of its source.
    if let Some(d) = decl {
        if matches!(d.kind, Kind::Source | Kind::Model)
            && (innermost == "fields" || d.kind == Kind::Model || !is_stmt)
        {
            let own = d.fields.iter().find(|f| f.name == word);
            let model_ty = model_of(&scan, d)
                .and_then(|m| m.fields.iter().find(|f| f.name == word))
                .and_then(|f| f.ty.clone());
            if let Some(f) = own {
                let ty =
                    f.ty.clone()
                        .or(model_ty)
                        .unwrap_or_else(|| "from its model".into());
                return Some(markdown(format!(
                    "field `{word}`: `{ty}` ({} `{}`)",
                    d.kind.word(),
                    d.name
                )));
            }
        }
    }
    if is_stmt && !open.path.is_empty() {
        if let Some((_, doc)) = reference::properties(innermost).find(|(p, _)| *p == word) {
            return Some(markdown(format!("**{word}** ({innermost})\n\n{doc}")));
        }
    }
    if let Some(target) = scan.decl(word) {
        let line_end = text[target.span.start..]
            .find('\n')
            .map_or(text.len(), |i| target.span.start + i);
        let head = text[target.span.start..line_end]
            .trim_end_matches('{')
            .trim();
        return Some(markdown(format!(
            "```hmr\n{head}\n```\n{} `{}`",
            target.kind.word(),
            target.name
        )));
    }
    reference::word(word).map(|doc| markdown(doc.to_string()))
}

/// Where the name at `pos` is declared: a service, model, source, sink or aggregate, or
/// a field of the source (or model) at hand.
pub fn definition(uri: &Uri, text: &str, pos: Position) -> Option<Location> {
    let idx = LineIndex::new(text);
    let offset = idx.offset(pos);
    let scan = Scan::new(text);
    let (word, span) = scan.word_at(offset)?;
    let at = |r: std::ops::Range<usize>| Location {
        uri: uri.clone(),
        range: idx.range(r.start, r.end),
    };
    let declared_here = scan.decls.iter().any(|d| d.name_span == span);
    if let Some(target) = scan.decl(word) {
        if !declared_here {
            return Some(at(target.name_span.clone()));
        }
    }
    // A field used in its source (`key = id`, `where`, `cursor`): its entry in `fields`,
    // else the model's field.
    let decl = scan
        .open_at(span.start)
        .decl
        .and_then(|i| scan.decls.get(i))?;
    if matches!(scan.before(span.start), Some(Tok::Punct("."))) {
        return None;
    }
    let own = decl
        .fields
        .iter()
        .find(|f| f.name == word && f.span != span);
    if let Some(f) = own {
        return Some(at(f.span.clone()));
    }
    model_of(&scan, decl)
        .and_then(|m| m.fields.iter().find(|f| f.name == word))
        .map(|f| at(f.span.clone()))
}

/// The declarations of the file, with their fields.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must be given; `tags` replaces it.
pub fn symbols(text: &str) -> Vec<DocumentSymbol> {
    let idx = LineIndex::new(text);
    let scan = Scan::new(text);
    scan.decls
        .iter()
        .map(|d| {
            let kind = match d.kind {
                Kind::Service => SymbolKind::MODULE,
                Kind::Model => SymbolKind::STRUCT,
                Kind::Source => SymbolKind::FUNCTION,
                Kind::Sink => SymbolKind::OBJECT,
                Kind::Aggregate => SymbolKind::CLASS,
            };
            let children: Vec<DocumentSymbol> = d
                .fields
                .iter()
                .map(|f| DocumentSymbol {
                    name: f.name.clone(),
                    detail: f.ty.clone(),
                    kind: SymbolKind::FIELD,
                    tags: None,
                    deprecated: None,
                    range: idx.range(f.span.start, f.span.end),
                    selection_range: idx.range(f.span.start, f.span.end),
                    children: None,
                })
                .collect();
            DocumentSymbol {
                name: d.name.clone(),
                detail: Some(d.kind.word().to_string()),
                kind,
                tags: None,
                deprecated: None,
                range: idx.range(d.span.start, d.span.end),
                selection_range: idx.range(d.name_span.start, d.name_span.end),
                children: (!children.is_empty()).then_some(children),
            }
        })
        .collect()
}

/// The whole text replaced by its canonical form (`hamstr fmt`); no edit when it is
/// canonical already or cannot be formatted (a syntax error: the diagnostics say so).
pub fn formatting(text: &str) -> Vec<TextEdit> {
    match crate::format::format(text) {
        Ok(formatted) if formatted != text => {
            let idx = LineIndex::new(text);
            vec![TextEdit {
                range: idx.range(0, text.len()),
                new_text: formatted,
            }]
        }
        _ => Vec::new(),
    }
}
