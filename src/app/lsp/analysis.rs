//! What the language server knows of a file while it is typed: a forgiving scan of its
//! tokens (a half-typed file has no syntax tree) into declarations, their fields, and
//! the block open at a place. Nothing here fails on any text.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str,
    Path,
    Number,
    Punct(&'static str),
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

const PUNCTS: [&str; 22] = [
    "->", "==", "!=", ">=", "<=", "??", "&&", "||", "{", "}", "(", ")", "[", "]", "=", ":", ",",
    "?", "<", ">", ".", "-",
];

/// The tokens of `text`; comments and unknown characters are left out.
pub fn tokens(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
            out.push(Token {
                tok: Tok::Str,
                span: start..i,
            });
            continue;
        }
        if c == b'$' {
            // A path runs to the next space or a character that ends an expression.
            let mut depth = 0i32;
            while i < bytes.len() {
                match bytes[i] {
                    b'[' => depth += 1,
                    b']' => depth -= 1,
                    b' ' | b'\t' | b'\n' | b'\r' | b',' | b')' | b'}' if depth <= 0 => break,
                    _ => {}
                }
                i += 1;
            }
            out.push(Token {
                tok: Tok::Path,
                span: start..i,
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                span: start..i,
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'/')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Number,
                span: start..i,
            });
            continue;
        }
        if let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) {
            i += p.len();
            out.push(Token {
                tok: Tok::Punct(p),
                span: start..i,
            });
            continue;
        }
        // Anything else (a stray byte, a character outside ASCII): skipped whole.
        i += text[i..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// What a declaration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Model,
    Source,
    Sink,
    Aggregate,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Model => "model",
            Kind::Source => "source",
            Kind::Sink => "sink",
            Kind::Aggregate => "aggregate",
        }
    }
}

/// A named thing of the file and where it is.
#[derive(Debug, Clone)]
pub struct Decl {
    pub kind: Kind,
    pub name: String,
    pub name_span: Range<usize>,
    /// From its keyword to its closing brace (or the end of its line, for a sink).
    pub span: Range<usize>,
    /// `source x from SERVICE`.
    pub service: Option<String>,
    pub fields: Vec<FieldDecl>,
    /// Its top-level properties and their value's first word (`model = Order`).
    pub props: Vec<(String, Option<String>)>,
}

/// A field of a model, or an entry of a source's `fields` block.
#[derive(Debug, Clone)]
pub struct FieldDecl {
    pub name: String,
    pub span: Range<usize>,
    /// `string?` as written, when it is.
    pub ty: Option<String>,
}

/// A block open at some place: its owner (`source`, or `fields` inside a source) and
/// the declaration it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub path: Vec<String>,
    pub decl: Option<usize>,
}

/// The scan of a whole file.
pub struct Scan {
    pub toks: Vec<Token>,
    pub decls: Vec<Decl>,
}

impl Scan {
    pub fn new(text: &str) -> Scan {
        let toks = tokens(text);
        let decls = declarations(&toks, text.len());
        Scan { toks, decls }
    }

    pub fn decl(&self, name: &str) -> Option<&Decl> {
        self.decls.iter().find(|d| d.name == name)
    }

    pub fn names(&self, kinds: &[Kind]) -> Vec<&str> {
        self.decls
            .iter()
            .filter(|d| kinds.contains(&d.kind))
            .map(|d| d.name.as_str())
            .collect()
    }

    /// The blocks open at `offset`, outermost first (`["source", "fields"]`).
    pub fn open_at(&self, offset: usize) -> Open {
        let mut stack: Vec<String> = Vec::new();
        for (i, t) in self.toks.iter().enumerate() {
            if t.span.start >= offset {
                break;
            }
            match t.tok {
                Tok::Punct("{") => {
                    let owner = if stack.is_empty() {
                        top_keyword(&self.toks, i)
                    } else {
                        match i.checked_sub(1).and_then(|p| self.toks.get(p)) {
                            Some(Token {
                                tok: Tok::Ident(name),
                                ..
                            }) => name.clone(),
                            _ => String::new(),
                        }
                    };
                    stack.push(owner);
                }
                Tok::Punct("}") => {
                    stack.pop();
                }
                _ => {}
            }
        }
        let decl = (!stack.is_empty())
            .then(|| {
                self.decls
                    .iter()
                    .position(|d| d.span.start <= offset && offset <= d.span.end)
            })
            .flatten();
        Open { path: stack, decl }
    }

    /// The identifier at `offset` (or ending there), and its span.
    pub fn word_at(&self, offset: usize) -> Option<(&str, Range<usize>)> {
        self.toks.iter().find_map(|t| match &t.tok {
            Tok::Ident(w) if t.span.start <= offset && offset <= t.span.end => {
                Some((w.as_str(), t.span.clone()))
            }
            _ => None,
        })
    }

    /// The token just after the one that ends at `end`.
    pub fn after(&self, end: usize) -> Option<&Tok> {
        self.toks
            .iter()
            .find(|t| t.span.start >= end)
            .map(|t| &t.tok)
    }

    /// The token just before the one that starts at `start`.
    pub fn before(&self, start: usize) -> Option<&Tok> {
        self.toks
            .iter()
            .rev()
            .find(|t| t.span.end <= start)
            .map(|t| &t.tok)
    }
}

/// The keyword of the top-level declaration whose `{` is token `i`.
fn top_keyword(toks: &[Token], i: usize) -> String {
    toks[..i]
        .iter()
        .rev()
        .take(4)
        .find_map(|t| match &t.tok {
            Tok::Ident(w) if ["service", "model", "source", "aggregate"].contains(&w.as_str()) => {
                Some(w.clone())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn ident(toks: &[Token], i: usize) -> Option<(&str, Range<usize>)> {
    match toks.get(i) {
        Some(Token {
            tok: Tok::Ident(w),
            span,
        }) => Some((w.as_str(), span.clone())),
        _ => None,
    }
}

fn is_punct(toks: &[Token], i: usize, p: &str) -> bool {
    matches!(toks.get(i), Some(Token { tok: Tok::Punct(q), .. }) if *q == p)
}

/// The top-level declarations, found by their keywords at brace depth 0.
fn declarations(toks: &[Token], len: usize) -> Vec<Decl> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].tok {
            Tok::Punct("{") => depth += 1,
            Tok::Punct("}") => depth = depth.saturating_sub(1),
            Tok::Ident(word) if depth == 0 => {
                let kind = match word.as_str() {
                    "service" => Some(Kind::Service),
                    "model" => Some(Kind::Model),
                    "source" => Some(Kind::Source),
                    "sink" => Some(Kind::Sink),
                    "aggregate" => Some(Kind::Aggregate),
                    _ => None,
                };
                if let (Some(kind), Some((name, name_span))) = (kind, ident(toks, i + 1)) {
                    let mut decl = Decl {
                        kind,
                        name: name.to_string(),
                        name_span,
                        span: toks[i].span.start..len,
                        service: None,
                        fields: Vec::new(),
                        props: Vec::new(),
                    };
                    if kind == Kind::Source && ident(toks, i + 2).is_some_and(|(w, _)| w == "from")
                    {
                        decl.service = ident(toks, i + 3).map(|(w, _)| w.to_string());
                    }
                    let open = (i + 2..toks.len().min(i + 6)).find(|&j| is_punct(toks, j, "{"));
                    match open {
                        Some(open) if kind != Kind::Sink => {
                            let close = block_end(toks, open);
                            decl.span.end = toks.get(close).map_or(len, |t| t.span.end);
                            body(toks, open, close, &mut decl);
                            i = close;
                        }
                        _ => {
                            // A sink ends where the next declaration starts.
                            let end = toks[i + 1..]
                                .iter()
                                .position(|t| matches!(&t.tok, Tok::Ident(w) if is_keyword(w)))
                                .map_or(len, |k| toks[i + 1 + k].span.start);
                            decl.span.end = end;
                        }
                    }
                    out.push(decl);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn is_keyword(w: &str) -> bool {
    [
        "service",
        "model",
        "source",
        "sink",
        "flow",
        "aggregate",
        "tenants",
    ]
    .contains(&w)
}

/// The token index of the `}` closing the `{` at `open` (the last token when none).
fn block_end(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct("{") => depth += 1,
            Tok::Punct("}") => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// Reads a declaration's block: its properties, and its fields (a model's, or those of
/// a source's `fields` block).
fn body(toks: &[Token], open: usize, close: usize, decl: &mut Decl) {
    let mut depth = 0usize;
    let mut parens = 0usize;
    let mut fields_depth: Option<usize> = None;
    let mut j = open;
    while j <= close && j < toks.len() {
        match &toks[j].tok {
            Tok::Punct("{") => {
                depth += 1;
                if depth == 2 && ident(toks, j.wrapping_sub(1)).is_some_and(|(w, _)| w == "fields")
                {
                    fields_depth = Some(2);
                }
            }
            Tok::Punct("}") => {
                if fields_depth == Some(depth) {
                    fields_depth = None;
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Punct("(") | Tok::Punct("[") => parens += 1,
            Tok::Punct(")") | Tok::Punct("]") => parens = parens.saturating_sub(1),
            Tok::Ident(name) if parens == 0 => {
                let next = toks.get(j + 1).map(|t| &t.tok);
                // A type (`total : decimal = ...`) or a dotted name is no statement's.
                let after_colon = j > 0 && matches!(toks[j - 1].tok, Tok::Punct(":" | "."));
                let is_stmt = !after_colon && matches!(next, Some(Tok::Punct("=" | ":" | "{")));
                if is_stmt && depth == 1 {
                    let value = ident(toks, j + 2).map(|(w, _)| w.to_string());
                    decl.props.push((name.clone(), value));
                }
                let field_here = (decl.kind == Kind::Model && depth == 1)
                    || (fields_depth == Some(depth) && depth == 2);
                if field_here && is_stmt && !matches!(next, Some(Tok::Punct("{"))) {
                    let ty = if is_punct(toks, j + 1, ":") {
                        ident(toks, j + 2).map(|(w, _)| {
                            let optional = is_punct(toks, j + 3, "?");
                            format!("{w}{}", if optional { "?" } else { "" })
                        })
                    } else {
                        None
                    };
                    decl.fields.push(FieldDecl {
                        name: name.clone(),
                        span: toks[j].span.clone(),
                        ty,
                    });
                }
            }
            _ => {}
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"service pos { base_url = "http://x"  retry { attempts = 3 } }
model Order { id : string  note : string? }
source orders from pos {
  model = Order
  where = status != "open"
  fields { id = $.id  note = $.note ?? "x"  total : decimal = to_decimal($.t) }
}
sink store = sled("o")
flow orders -> store
"#;

    #[test]
    fn declarations_fields_and_open_blocks() {
        let scan = Scan::new(FILE);
        let names: Vec<_> = scan
            .decls
            .iter()
            .map(|d| (d.kind, d.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (Kind::Service, "pos"),
                (Kind::Model, "Order"),
                (Kind::Source, "orders"),
                (Kind::Sink, "store")
            ]
        );
        let model = scan.decl("Order").unwrap();
        let fields: Vec<_> = model
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.ty.as_deref()))
            .collect();
        assert_eq!(fields, [("id", Some("string")), ("note", Some("string?"))]);
        let src = scan.decl("orders").unwrap();
        assert_eq!(src.service.as_deref(), Some("pos"));
        let fields: Vec<_> = src.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(fields, ["id", "note", "total"]);
        assert!(src.props.contains(&("model".into(), Some("Order".into()))));
        let at = FILE.find("note = $.note").unwrap();
        assert_eq!(scan.open_at(at).path, ["source", "fields"]);
        let at = FILE.find("attempts").unwrap();
        assert_eq!(scan.open_at(at).path, ["service", "retry"]);
        assert_eq!(
            scan.open_at(FILE.find("flow").unwrap()).path,
            Vec::<String>::new()
        );
    }

    #[test]
    fn any_text_scans() {
        for text in [
            "",
            "{{{",
            "}}}",
            "source",
            "source x from",
            "\"open",
            "$.a[",
            "é😀#",
        ] {
            let scan = Scan::new(text);
            for at in 0..=text.len() {
                let _ = scan.open_at(at);
                let _ = scan.word_at(at);
            }
        }
    }
}
