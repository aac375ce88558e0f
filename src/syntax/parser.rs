//! One function per grammar rule, building the spanned AST from pest pairs; expressions
//! are built in `expr.rs`, errors are in `errors.rs`.

use super::ast::*;
use super::errors::{check_nesting, syntax_error, SyntaxError};
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/hamstr.pest"]
struct HmrParser;

/// How many parser calls per byte of input are allowed before the file is refused as
/// too complex: several times what real pipelines need.
const CALLS_PER_BYTE: usize = 100;

/// Parses a whole file. On a syntax error the tree is `None`; lexical problems inside
/// otherwise well-formed literals (a bad escape) come back beside a tree.
pub fn parse(text: &str) -> (Option<File>, Vec<SyntaxError>) {
    if let Some(err) = check_nesting(text) {
        return (None, vec![err]);
    }
    // A bound on the parser's work that grows with the input (a plain pipeline takes
    // about a dozen calls per byte), so that only pathological backtracking hits it.
    pest::set_call_limit(std::num::NonZeroUsize::new(
        text.len().saturating_mul(CALLS_PER_BYTE).max(1_000_000),
    ));
    let pairs = match HmrParser::parse(Rule::file, text) {
        Ok(pairs) => pairs,
        Err(err) => return (None, vec![syntax_error(text, err)]),
    };
    let mut b = Builder {
        errors: Vec::new(),
        too_deep: false,
    };
    let mut file = File::default();
    let items = pairs
        .into_iter()
        .next()
        .map(|file| file.into_inner())
        .into_iter()
        .flatten();
    for pair in items {
        let item = match pair.as_rule() {
            Rule::service => Item::Service(b.service(pair)),
            Rule::model => Item::Model(b.model(pair)),
            Rule::source => Item::Source(b.source(pair)),
            Rule::sink => Item::Sink(b.sink(pair)),
            Rule::flow => Item::Flow(b.flow(pair)),
            Rule::aggregate => Item::Aggregate(b.aggregate(pair)),
            Rule::tenants => Item::Tenants(b.tenants(pair)),
            Rule::server => Item::Server(b.server(pair)),
            _ => continue,
        };
        file.items.push(item);
    }
    if b.too_deep {
        return (None, b.errors);
    }
    (Some(file), b.errors)
}

pub(super) fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

pub(super) struct Builder {
    pub(super) errors: Vec<SyntaxError>,
    /// An expression was deeper than [`MAX_EXPR_DEPTH`](super::expr::MAX_EXPR_DEPTH): the
    /// tree is incomplete.
    pub(super) too_deep: bool,
}

impl Builder {
    pub(super) fn ident(&mut self, pair: Pair<Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: span_of(&pair),
        }
    }

    fn service(&mut self, pair: Pair<Rule>) -> Service {
        let span = span_of(&pair);
        let mut inner = pair
            .into_inner()
            .filter(|p| p.as_rule() != Rule::kw_for)
            .skip(1);
        let name = self.ident(inner.next().expect("grammar: service name"));
        let mut next = inner.next().expect("grammar: service block");
        let tenants = if next.as_rule() == Rule::ident {
            let t = self.ident(next);
            next = inner.next().expect("grammar: service block");
            Some(t)
        } else {
            None
        };
        let body = self.block(next);
        Service {
            name,
            tenants,
            body,
            span,
        }
    }

    fn tenants(&mut self, pair: Pair<Rule>) -> Tenants {
        let span = span_of(&pair);
        let mut inner = pair
            .into_inner()
            .filter(|p| p.as_rule() != Rule::sink_eq)
            .skip(1);
        let name = self.ident(inner.next().expect("grammar: tenants name"));
        let value = self.expr(inner.next().expect("grammar: tenants value"));
        let span = Span::new(span.start, value.span.end);
        Tenants { name, value, span }
    }

    fn model(&mut self, pair: Pair<Rule>) -> Model {
        let span = span_of(&pair);
        let mut inner = pair.into_inner().skip(1);
        let name = self.ident(inner.next().expect("grammar: model name"));
        let body = inner.next().expect("grammar: model body");
        let fields = body
            .into_inner()
            .map(|field| {
                let mut parts = field.into_inner();
                let name = self.ident(parts.next().expect("grammar: field name"));
                let ty = self.type_ref(parts.next().expect("grammar: field type"));
                ModelField { name, ty }
            })
            .collect();
        Model { name, fields, span }
    }

    fn type_ref(&mut self, pair: Pair<Rule>) -> TypeRef {
        let span = span_of(&pair);
        let mut parts = pair.into_inner();
        let name = self.ident(parts.next().expect("grammar: type name"));
        TypeRef {
            name,
            optional: parts.next().is_some(),
            span,
        }
    }

    fn source(&mut self, pair: Pair<Rule>) -> Source {
        let span = span_of(&pair);
        let mut inner = pair
            .into_inner()
            .filter(|p| p.as_rule() != Rule::kw_from)
            .skip(1);
        let name = self.ident(inner.next().expect("grammar: source name"));
        let service = self.ident(inner.next().expect("grammar: source service"));
        let body = self.block(inner.next().expect("grammar: source block"));
        Source {
            name,
            service,
            body,
            span,
        }
    }

    fn sink(&mut self, pair: Pair<Rule>) -> Sink {
        let span = span_of(&pair);
        let mut inner = pair
            .into_inner()
            .filter(|p| p.as_rule() != Rule::sink_eq)
            .skip(1);
        let name = self.ident(inner.next().expect("grammar: sink name"));
        let value = self.expr(inner.next().expect("grammar: sink value"));
        let span = Span::new(span.start, value.span.end);
        Sink { name, value, span }
    }

    fn flow(&mut self, pair: Pair<Rule>) -> Flow {
        let span = span_of(&pair);
        let mut lists = pair.into_inner().filter(|p| p.as_rule() == Rule::name_list);
        let names = |b: &mut Self, p: Option<Pair<Rule>>| -> Vec<Ident> {
            p.map(|p| p.into_inner().map(|i| b.ident(i)).collect())
                .unwrap_or_default()
        };
        let inputs = names(self, lists.next());
        let outputs = names(self, lists.next());
        let end = outputs
            .last()
            .or(inputs.last())
            .map_or(span.end, |i| i.span.end);
        let span = Span::new(span.start, end);
        Flow {
            inputs,
            outputs,
            span,
        }
    }

    fn aggregate(&mut self, pair: Pair<Rule>) -> Aggregate {
        let span = span_of(&pair);
        let mut inner = pair.into_inner().skip(1);
        let name = self.ident(inner.next().expect("grammar: aggregate name"));
        let body = self.block(inner.next().expect("grammar: aggregate block"));
        Aggregate { name, body, span }
    }

    fn server(&mut self, pair: Pair<Rule>) -> Server {
        let span = span_of(&pair);
        let mut inner = pair.into_inner();
        let keyword = span_of(&inner.next().expect("grammar: server keyword"));
        let body = self.block(inner.next().expect("grammar: server block"));
        Server {
            keyword,
            body,
            span,
        }
    }

    pub(super) fn block(&mut self, pair: Pair<Rule>) -> Block {
        let span = span_of(&pair);
        let stmts = pair.into_inner().map(|s| self.statement(s)).collect();
        Block { stmts, span }
    }

    fn statement(&mut self, pair: Pair<Rule>) -> Stmt {
        let mut inner = pair.into_inner();
        let name_inner = inner.next().expect("grammar: property name");
        let name_span = span_of(&name_inner);
        let name = if name_inner.as_rule() == Rule::string {
            PropName {
                text: self.string(name_inner),
                quoted: true,
                span: name_span,
            }
        } else {
            PropName {
                text: name_inner.as_str().to_string(),
                quoted: false,
                span: name_span,
            }
        };
        let value_pair = inner.next().expect("grammar: property value");
        let value = match value_pair.as_rule() {
            Rule::block => StmtValue::Block(self.block(value_pair)),
            Rule::typed_value => {
                let mut parts = value_pair.into_inner();
                let ty = self.type_ref(parts.next().expect("grammar: type"));
                StmtValue::Typed(ty, self.expr(parts.next().expect("grammar: value")))
            }
            _ => {
                StmtValue::Expr(self.expr(value_pair.into_inner().next().expect("grammar: value")))
            }
        };
        // From the name to the end of the value: the pest pair would also hold the
        // whitespace and comments that follow.
        let end = match &value {
            StmtValue::Expr(e) | StmtValue::Typed(_, e) => e.span.end,
            StmtValue::Block(b) => b.span.end,
        };
        let span = Span::new(name.span.start, end);
        Stmt { name, value, span }
    }

    /// Decodes a string literal's escapes; a bad escape is reported at its own span.
    pub(super) fn string(&mut self, pair: Pair<Rule>) -> String {
        let inner = pair.into_inner().next().expect("grammar: string body");
        let base = inner.as_span().start();
        let raw = inner.as_str();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let rest = &raw[i + 2..];
                    let decoded = rest
                        .strip_prefix('{')
                        .and_then(|r| r.split_once('}'))
                        .filter(|(hex, _)| !hex.is_empty() && hex.len() <= 6)
                        .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok().map(|v| (hex, v)))
                        .and_then(|(hex, v)| char::from_u32(v).map(|c| (hex.len(), c)));
                    match decoded {
                        Some((len, ch)) => {
                            out.push(ch);
                            for _ in 0..len + 2 {
                                chars.next();
                            }
                        }
                        None => self.errors.push(SyntaxError::new(
                            // The whole `\u{...}` when it is closed in this string.
                            Span::new(
                                base + i,
                                base + i
                                    + 2
                                    + rest
                                        .strip_prefix('{')
                                        .and_then(|r| r.find('}'))
                                        .map_or(0, |close| close + 2),
                            ),
                            "invalid unicode escape: write `\\u{XXXX}` with 1 to 6 hex digits of a valid code point",
                            "bad escape",
                        )),
                    }
                }
                other => self.errors.push(SyntaxError::new(
                    Span::new(base + i, base + i + 1 + other.len_utf8()),
                    format!(
                        "unknown escape `\\{other}`; the escapes are \\\" \\\\ \\n \\t \\r \\u{{XXXX}}"
                    ),
                    "unknown escape",
                )),
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
