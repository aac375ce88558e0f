//! One `parse_x` function per grammar rule, building the AST from pest pairs; pest's
//! errors are rewritten into phrases a person can read.

use super::ast::*;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use std::sync::OnceLock;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/hamstr.pest"]
struct HmrParser;

/// How deep brackets, braces and parentheses may nest before the file is refused:
/// parsing recurses, and hostile input must not overflow the stack.
const MAX_NESTING: usize = 64;

/// How deep an expression's operators may nest (`a + a + ...` nests once per `+`): the
/// later stages walk expressions recursively.
const MAX_EXPR_DEPTH: usize = 256;

/// How many parser calls per byte of input are allowed before the file is refused as
/// too complex: several times what real pipelines need.
const CALLS_PER_BYTE: usize = 100;

/// A problem found while reading the text.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    /// Further places worth pointing at, such as the `{` that was never closed.
    pub related: Vec<(Span, String)>,
}

impl SyntaxError {
    fn new(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        SyntaxError {
            span,
            message: message.into(),
            label: label.into(),
            help: None,
            related: Vec::new(),
        }
    }
}

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
    let mut b = Builder::default();
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
            _ => continue,
        };
        file.items.push(item);
    }
    if b.too_deep {
        // Like nesting, a refusal: no tree, so no errors that only follow from it.
        return (None, b.errors);
    }
    (Some(file), b.errors)
}

/// Scans for nesting deeper than [`MAX_NESTING`] outside strings and comments.
fn check_nesting(text: &str) -> Option<SyntaxError> {
    let mut depth = 0usize;
    let mut scan = Scanner::default();
    for (i, c) in text.char_indices() {
        let quoted = scan.in_string || scan.in_comment;
        scan.step(i, c);
        if quoted || scan.in_string || scan.in_comment {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(SyntaxError::new(
                        Span::new(i, i + 1),
                        format!("nesting deeper than {MAX_NESTING} levels"),
                        "too deep",
                    ));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::or_op, Assoc::Left))
            .op(Op::infix(Rule::and_op, Assoc::Left))
            .op(Op::prefix(Rule::not_op))
            .op(Op::infix(Rule::eq, Assoc::Left)
                | Op::infix(Rule::ne, Assoc::Left)
                | Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left))
            .op(Op::infix(Rule::coalesce, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
            .op(Op::prefix(Rule::neg))
    })
}

#[derive(Default)]
struct Builder {
    errors: Vec<SyntaxError>,
    /// An expression was refused as too deep: the file gets no tree.
    too_deep: bool,
    /// How many operators deep the expression being built already is.
    depth: usize,
}

impl Builder {
    fn ident(&mut self, pair: Pair<Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: span_of(&pair),
        }
    }

    fn service(&mut self, pair: Pair<Rule>) -> Service {
        let span = span_of(&pair);
        let mut inner = pair.into_inner().skip(1);
        let name = self.ident(inner.next().expect("grammar: service name"));
        let body = self.block(inner.next().expect("grammar: service block"));
        Service { name, body, span }
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

    fn block(&mut self, pair: Pair<Rule>) -> Block {
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

    fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        let span = span_of(&pair);
        let mut pairs = pair.into_inner();
        // Most expressions are a single operand: nothing for the Pratt parser to order.
        if pairs.len() == 1 {
            return self.primary(pairs.next().expect("grammar: an operand"));
        }
        // Refused before the tree is built: the Pratt parser recurses once per prefix
        // operator in a row (and again inside parentheses), and a tree as deep as a
        // long chain (`a + a + ...`) is dropped recursively.
        let (mut run, mut longest, mut operators) = (0, 0, 0);
        for p in pairs.clone() {
            let prefix = matches!(p.as_rule(), Rule::neg | Rule::not_op);
            run = if prefix { run + 1 } else { 0 };
            longest = longest.max(run);
            operators += usize::from(prefix || is_infix(p.as_rule()));
            if operators > MAX_EXPR_DEPTH {
                let message = format!("an expression with more than {MAX_EXPR_DEPTH} operators");
                return self.refuse_deep(span, span_of(&p), message);
            }
        }
        let depth = self.depth + longest + 1;
        if depth > MAX_EXPR_DEPTH {
            let message = format!("an expression nested more than {MAX_EXPR_DEPTH} deep");
            return self.refuse_deep(span, Span::new(span.start, span.start + 1), message);
        }
        // The Pratt parser's closures cannot all borrow `self` mutably at once, so
        // string errors are gathered in a cell and moved over afterwards.
        let errors = std::cell::RefCell::new(Vec::new());
        let too_deep = std::cell::Cell::new(false);
        let expr = pratt()
            .map_primary(|p| {
                let mut b = Builder {
                    depth,
                    ..Builder::default()
                };
                let e = b.primary(p);
                errors.borrow_mut().extend(b.errors);
                too_deep.set(too_deep.get() || b.too_deep);
                e
            })
            .map_prefix(|op, rhs| {
                let span = span_of(&op).to(rhs.span);
                let op = if op.as_rule() == Rule::neg {
                    UnaryOp::Neg
                } else {
                    UnaryOp::Not
                };
                Expr {
                    kind: ExprKind::Unary(op, Box::new(rhs)),
                    span,
                }
            })
            .map_infix(|lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::add => BinaryOp::Add,
                    Rule::sub => BinaryOp::Sub,
                    Rule::mul => BinaryOp::Mul,
                    Rule::div => BinaryOp::Div,
                    Rule::eq => BinaryOp::Eq,
                    Rule::ne => BinaryOp::Ne,
                    Rule::lt => BinaryOp::Lt,
                    Rule::le => BinaryOp::Le,
                    Rule::gt => BinaryOp::Gt,
                    Rule::ge => BinaryOp::Ge,
                    Rule::and_op => BinaryOp::And,
                    Rule::or_op => BinaryOp::Or,
                    _ => BinaryOp::Coalesce,
                };
                let span = lhs.span.to(rhs.span);
                Expr {
                    kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                    span,
                }
            })
            .parse(pairs);
        self.errors.extend(errors.into_inner());
        self.too_deep |= too_deep.get();
        // Depth counts operands too: `a + b` is two deep.
        if self.depth + expr_depth(&expr) > MAX_EXPR_DEPTH + 1 {
            let message = format!("an expression nested more than {MAX_EXPR_DEPTH} deep");
            return self.refuse_deep(span, Span::new(span.start, span.start + 1), message);
        }
        expr
    }

    /// Reports an expression too deep to work with. `null` stands in for it, but the
    /// file gets no tree (see `parse`).
    fn refuse_deep(&mut self, span: Span, at: Span, message: String) -> Expr {
        let mut e = SyntaxError::new(at, message, "too deep");
        e.help = Some("split it, or use a function such as `concat` or `coalesce`".into());
        self.errors.push(e);
        self.too_deep = true;
        Expr {
            kind: ExprKind::Null,
            span,
        }
    }

    fn primary(&mut self, pair: Pair<Rule>) -> Expr {
        let span = span_of(&pair);
        let text = pair.as_str();
        let kind = match pair.as_rule() {
            Rule::paren => {
                let inner = self.expr(pair.into_inner().next().expect("grammar: paren"));
                return Expr {
                    kind: inner.kind,
                    span,
                };
            }
            Rule::list => ExprKind::List(pair.into_inner().map(|a| self.arg(a)).collect()),
            Rule::call => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().expect("grammar: call name"));
                let args = inner.map(|a| self.arg(a)).collect();
                ExprKind::Call { name, args }
            }
            Rule::duration => ExprKind::Duration(text.to_string()),
            Rule::rate => ExprKind::Rate(text.to_string()),
            Rule::number => ExprKind::Number(text.to_string()),
            Rule::string => ExprKind::Str(self.string(pair)),
            Rule::boolean => ExprKind::Bool(text == "true"),
            Rule::null => ExprKind::Null,
            Rule::jsonpath => ExprKind::Path(text.to_string()),
            _ => ExprKind::Name(pair.into_inner().map(|i| self.ident(i)).collect()),
        };
        Expr { kind, span }
    }

    fn arg(&mut self, pair: Pair<Rule>) -> Arg {
        let mut inner: Vec<Pair<Rule>> = pair.into_inner().collect();
        let value = self.expr(inner.pop().expect("grammar: argument value"));
        let name = inner.pop().map(|n| self.ident(n));
        Arg { name, value }
    }

    /// Decodes a string literal's escapes; a bad escape is reported at its own span.
    fn string(&mut self, pair: Pair<Rule>) -> String {
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

fn is_infix(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::coalesce
            | Rule::or_op
            | Rule::and_op
            | Rule::eq
            | Rule::ne
            | Rule::le
            | Rule::ge
            | Rule::lt
            | Rule::gt
            | Rule::add
            | Rule::sub
            | Rule::mul
            | Rule::div
    )
}

/// How deep an expression's tree is, found without recursion (the tree may be deep).
fn expr_depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match &e.kind {
            ExprKind::Unary(_, x) => stack.push((x, depth + 1)),
            ExprKind::Binary(_, l, r) => {
                stack.push((l, depth + 1));
                stack.push((r, depth + 1));
            }
            ExprKind::List(args) | ExprKind::Call { args, .. } => {
                stack.extend(args.iter().map(|a| (&a.value, depth + 1)))
            }
            _ => {}
        }
    }
    deepest
}

/// Turns pest's error into one with readable expectations.
fn syntax_error(text: &str, err: pest::error::Error<Rule>) -> SyntaxError {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match err.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    // Point at the whole offending token rather than an empty position.
    let token_end = if end > start {
        end
    } else {
        let rest = &text[start.min(text.len())..];
        let len = rest
            .char_indices()
            .find(|&(i, c)| i > 0 && (c.is_whitespace() || "{}()[],=".contains(c)))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        start + len.max(rest.chars().next().map_or(0, char::len_utf8))
    };
    let found = text
        .get(start..token_end)
        .filter(|s| !s.is_empty())
        .map(|s| format!("`{}`", s.chars().take(40).collect::<String>()))
        .unwrap_or_else(|| "the end of the file".into());
    let message = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut wanted: Vec<&str> = positives.iter().map(|r| phrase(*r)).collect();
            // Where a property or a field may start, so may the `}` that ends the block;
            // pest does not list literal tokens.
            if wanted
                .iter()
                .any(|w| w.starts_with("a property") || w.starts_with("a field"))
            {
                wanted.push("`}`");
            }
            wanted.sort_unstable();
            wanted.dedup();
            match wanted.len() {
                0 => format!("unexpected {found}"),
                1 => format!("expected {}, found {found}", wanted[0]),
                _ => {
                    let last = wanted.pop().unwrap_or_default();
                    format!("expected {} or {last}, found {found}", wanted.join(", "))
                }
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let message = if message.contains("call limit") {
        "the file is too complex to parse".to_string()
    } else {
        message
    };
    unclosed_string(text, start)
        .or_else(|| unclosed_block(text, start))
        .unwrap_or_else(|| {
            SyntaxError::new(Span::new(start, token_end), message, "unexpected here")
        })
}

/// A string literal opened at or before `at` that has no closing quote on its line:
/// the parser only notices further on, so point at where the string starts.
fn unclosed_string(text: &str, at: usize) -> Option<SyntaxError> {
    let mut scan = Scanner::default();
    for (i, c) in text.char_indices() {
        if i > at && !scan.in_string {
            return None;
        }
        if let Some(open) = scan.string_start.filter(|_| scan.in_string && c == '\n') {
            let mut e = SyntaxError::new(
                Span::new(open, i),
                "this string is not closed: a string ends with `\"` on the same line",
                "no closing quote",
            );
            e.help = Some("close it with `\"`; write a quote inside a string as `\\\"`".into());
            return Some(e);
        }
        scan.step(i, c);
    }
    let open = scan.string_start.filter(|_| scan.in_string)?;
    let mut e = SyntaxError::new(
        Span::new(open, text.len()),
        "this string is not closed: the file ends inside it",
        "no closing quote",
    );
    e.help = Some("close it with `\"`".into());
    Some(e)
}

/// An error at the start of a declaration (`source`, `sink`, ...) while a block is
/// still open, or at the end of the file: most likely a `}` is missing.
fn unclosed_block(text: &str, at: usize) -> Option<SyntaxError> {
    let mut scan = Scanner::default();
    let mut open: Vec<(usize, char)> = Vec::new();
    for (i, c) in text.char_indices() {
        if i >= at {
            break;
        }
        scan.step(i, c);
        if scan.in_string || scan.in_comment {
            continue;
        }
        match c {
            '{' | '(' | '[' => open.push((i, c)),
            '}' | ')' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    let &(brace, _) = open.iter().rev().find(|(_, c)| *c == '{')?;
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let indent = line.len() - line.trim_start().len();
    let keyword = ["service", "model", "source", "sink", "flow", "aggregate"]
        .into_iter()
        .find(|k| {
            line.trim_start().starts_with(k)
                && !line.trim_start()[k.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
    let brace_line = text[..brace].matches('\n').count() + 1;
    let mut e = if at >= text.trim_end().len() {
        // On the last character, since an empty span past the last line is not drawn.
        let trimmed = text.trim_end();
        let last = trimmed.char_indices().last().map_or(0, |(i, _)| i);
        SyntaxError::new(
            Span::new(last, trimmed.len()),
            format!("the file ends inside a block: the `{{` on line {brace_line} is not closed"),
            "expected `}` after this",
        )
    } else {
        // Only when the parser stopped right after the keyword, which it took for a
        // property name, and the block was opened on an earlier line.
        let kw = keyword?;
        let kw_start = line_start + indent;
        let after_keyword = text.get(kw_start + kw.len()..at)?;
        if brace >= line_start || !after_keyword.trim().is_empty() {
            return None;
        }
        SyntaxError::new(
            Span::new(kw_start, kw_start + kw.len()),
            format!(
                "expected `}}` before this `{kw}`: the `{{` on line {brace_line} is not closed"
            ),
            "a new declaration starts here",
        )
    };
    e.related
        .push((Span::new(brace, brace + 1), "this `{` is not closed".into()));
    e.help = Some("add the missing `}`".into());
    Some(e)
}

/// Tracks whether a position is inside a string or a comment.
#[derive(Default)]
struct Scanner {
    in_string: bool,
    in_comment: bool,
    escaped: bool,
    string_start: Option<usize>,
}

impl Scanner {
    fn step(&mut self, i: usize, c: char) {
        if self.in_comment {
            self.in_comment = c != '\n';
        } else if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' || c == '\n' {
                self.in_string = false;
            }
        } else if c == '#' {
            self.in_comment = true;
        } else if c == '"' {
            self.in_string = true;
            self.string_start = Some(i);
        }
    }
}

/// The phrase used in "expected ..." for a grammar rule.
fn phrase(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "the end of the file",
        Rule::service | Rule::kw_service => "`service`",
        Rule::model | Rule::kw_model => "`model`",
        Rule::source | Rule::kw_source => "`source`",
        Rule::sink | Rule::kw_sink => "`sink`",
        Rule::flow | Rule::kw_flow => "`flow`",
        Rule::aggregate | Rule::kw_aggregate => "`aggregate`",
        Rule::kw_from => "`from`",
        Rule::ident | Rule::name_ref | Rule::name_list => "a name",
        Rule::ident_any => "a name",
        Rule::prop_name | Rule::statement => "a property like `name = value`",
        Rule::model_field => "a field like `id : string`",
        Rule::type_ref => "a type like `string`",
        Rule::block | Rule::model_body => "`{`",
        Rule::typed_value => "`:`",
        Rule::assign | Rule::sink_eq => "`=`",
        Rule::arrow => "`->`",
        Rule::expr | Rule::paren | Rule::list | Rule::call | Rule::arg => "a value",
        Rule::duration => "a duration like `30s`",
        Rule::rate => "a rate like `20/s`",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::null => "`null`",
        Rule::jsonpath => "a JSONPath like `$.data[*]`",
        Rule::neg | Rule::not_op => "a value",
        Rule::coalesce
        | Rule::or_op
        | Rule::and_op
        | Rule::eq
        | Rule::ne
        | Rule::le
        | Rule::ge
        | Rule::lt
        | Rule::gt
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div => "an operator",
        Rule::optional => "`?`",
        _ => "something else",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr_of(src: &str) -> Expr {
        let text = format!("sink s = {src}");
        let (file, errors) = parse(&text);
        assert!(errors.is_empty(), "{errors:?}");
        match file.unwrap().items.remove(0) {
            Item::Sink(s) => s.value,
            other => panic!("{other:?}"),
        }
    }

    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Binary(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
            ExprKind::Unary(UnaryOp::Neg, x) => format!("(-{})", show(x)),
            ExprKind::Unary(UnaryOp::Not, x) => format!("(not {})", show(x)),
            ExprKind::Name(parts) => parts
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("."),
            ExprKind::Number(n) => n.clone(),
            ExprKind::Path(p) => p.clone(),
            ExprKind::Str(s) => format!("{s:?}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn every_example_parses() {
        for text in [
            include_str!("../../examples/restaurant.hmr"),
            include_str!("../../examples/every_paginator.hmr"),
            include_str!("../../examples/github_issues.hmr"),
            include_str!("../../examples/order_items.hmr"),
            include_str!("../../examples/stripe_charges.hmr"),
        ] {
            let (file, errors) = parse(text);
            assert!(errors.is_empty(), "{errors:?}");
            assert!(file.unwrap().items.len() > 3);
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(show(&expr_of("a + b * c")), "(a + (b * c))");
        assert_eq!(
            show(&expr_of("a or b and not c == d")),
            "(a or (b and (not (c == d))))"
        );
        assert_eq!(show(&expr_of("$.a ?? \"x\" == y")), "(($.a ?? \"x\") == y)");
        assert_eq!(show(&expr_of("-a - -b")), "((-a) - (-b))");
        assert_eq!(show(&expr_of("note and order")), "(note and order)");
        assert_eq!(show(&expr_of("parent.id")), "parent.id");
    }

    #[test]
    fn jsonpath_tokens_end_where_they_should() {
        assert_eq!(show(&expr_of("$['odd key'].x")), "$['odd key'].x");
        assert_eq!(show(&expr_of("$.items[?@.qty > 1]")), "$.items[?@.qty > 1]");
        assert_eq!(show(&expr_of("$.a??$.b")), "($.a ?? $.b)");
        assert_eq!(show(&expr_of("$.data[-1].id")), "$.data[-1].id");
        assert_eq!(show(&expr_of("$[\"]\"]")), "$[\"]\"]");
    }

    #[test]
    fn escapes() {
        assert_eq!(show(&expr_of(r#""a\"b\u{41}\n""#)), "\"a\\\"bA\\n\"");
        let (_, errors) = parse(r#"sink s = "bad \q escape""#);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].span, Span::new(14, 16));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("sink s = {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let (file, errors) = parse(&text);
        assert!(file.is_none());
        assert!(errors[0].message.contains("nesting"));
    }

    #[test]
    fn long_operator_chains_are_refused_not_overflowed() {
        // 256 operators deep is fine; deeper is refused, however the depth is made (a
        // chain, prefix operators, parentheses). Tens of thousands would overflow the
        // stack of the Pratt parser or of the stages that walk the tree.
        let ok = format!("sink s = {}", vec!["a"; 257].join(" + "));
        assert!(parse(&ok).1.is_empty());
        let nested = (0..4).fold("a".to_string(), |inner, _| {
            format!("({inner}{})", " + a".repeat(100))
        });
        for text in [
            format!("sink s = {}", vec!["a"; 258].join(" + ")),
            format!("sink s = {}", vec!["a"; 100_000].join(" + ")),
            format!("sink s = {nested}"),
            // The most recursion the Pratt parser can be made to do before a check.
            format!(
                "sink s = {}",
                (0..60).fold("a".to_string(), |inner, _| {
                    format!("({}{inner})", "-".repeat(64))
                })
            ),
            format!("sink s = {}a", "not -".repeat(129)),
            format!("sink s = {}a", "-".repeat(100_000)),
        ] {
            let (file, errors) = parse(&text);
            assert!(file.is_none(), "{}", &text[..60]);
            assert!(!errors.is_empty());
            assert_eq!(errors[0].label, "too deep");
        }
    }

    #[test]
    fn syntax_error_says_what_was_expected() {
        let (file, errors) = parse("service s { base_url = }");
        assert!(file.is_none());
        assert!(
            errors[0].message.starts_with("expected a value"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[0].span.start, 23);
    }
}
