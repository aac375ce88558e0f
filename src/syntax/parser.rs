//! One function per grammar rule, building the spanned AST from pest pairs, with
//! expressions ordered by an iterative precedence parser; errors are in `errors.rs`.

use super::ast::*;
use super::errors::{check_nesting, syntax_error, SyntaxError};
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/hamstr.pest"]
struct HmrParser;

/// How deep an expression's tree may be: each operator, call and list is a level. The
/// checker and the evaluator walk expressions recursively, so a long chain such as
/// `a and a and ...` must be refused rather than overflow the stack.
const MAX_EXPR_DEPTH: usize = 256;

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
            _ => continue,
        };
        file.items.push(item);
    }
    if b.too_deep {
        return (None, b.errors);
    }
    (Some(file), b.errors)
}

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

// Binding powers, as pest's Pratt parser numbers them: a prefix operator takes as its
// operand everything that binds tighter than itself, so `not a == b` is `not (a == b)`.
const PREC_NOT: u8 = 30;
const PREC_NEG: u8 = 80;

/// An infix operator and how tightly it binds; all are left-associative.
fn infix(rule: Rule) -> Option<(BinaryOp, u8)> {
    Some(match rule {
        Rule::or_op => (BinaryOp::Or, 10),
        Rule::and_op => (BinaryOp::And, 20),
        Rule::eq => (BinaryOp::Eq, 40),
        Rule::ne => (BinaryOp::Ne, 40),
        Rule::lt => (BinaryOp::Lt, 40),
        Rule::le => (BinaryOp::Le, 40),
        Rule::gt => (BinaryOp::Gt, 40),
        Rule::ge => (BinaryOp::Ge, 40),
        Rule::coalesce => (BinaryOp::Coalesce, 50),
        Rule::add => (BinaryOp::Add, 60),
        Rule::sub => (BinaryOp::Sub, 60),
        Rule::mul => (BinaryOp::Mul, 70),
        Rule::div => (BinaryOp::Div, 70),
        _ => return None,
    })
}

/// An operator still waiting for its right-hand operand while an expression is built.
enum Pending {
    Prefix {
        op: UnaryOp,
        start: usize,
        /// The binding power in force before the operator.
        rbp: u8,
    },
    Infix {
        op: BinaryOp,
        lhs: (Expr, usize),
        rbp: u8,
    },
}

struct Builder {
    errors: Vec<SyntaxError>,
    /// An expression was deeper than [`MAX_EXPR_DEPTH`]: the tree is incomplete.
    too_deep: bool,
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
        self.sized_expr(pair).0
    }

    /// Reports an expression deeper than [`MAX_EXPR_DEPTH`]; what comes back only stands
    /// in for it, since the file is refused.
    fn too_deep(&mut self, span: Span) -> (Expr, usize) {
        self.too_deep = true;
        let mut e = SyntaxError::new(
            span,
            format!("this expression is nested deeper than {MAX_EXPR_DEPTH} levels"),
            "too deep",
        );
        e.help = Some(format!(
            "each operator, call and list adds a level, so a chain like `a and b and c` \
             counts one per `and`; an expression may be at most {MAX_EXPR_DEPTH} levels deep"
        ));
        self.errors.push(e);
        (
            Expr {
                kind: ExprKind::Null,
                span,
            },
            1,
        )
    }

    /// An expression and the depth of its tree (a literal or name is 1 deep).
    ///
    /// Operators are ordered by precedence climbing as pest's Pratt parser does it, but
    /// with an explicit stack instead of recursion: `not not not ... x` must not
    /// overflow the stack. A tree deeper than [`MAX_EXPR_DEPTH`] is never built; the
    /// expression is reported and the file refused.
    fn sized_expr(&mut self, pair: Pair<Rule>) -> (Expr, usize) {
        // The pair's own span may run on over the blanks after the last operand.
        let whole = pair.clone();
        let mut pairs = pair.into_inner().peekable();
        let mut stack: Vec<Pending> = Vec::new();
        let mut rbp = 0;
        loop {
            // An operand: any prefix operators, then a primary.
            let mut operand = loop {
                let next = pairs.next().expect("grammar: an operand");
                match next.as_rule() {
                    Rule::neg | Rule::not_op => {
                        let (op, prec) = if next.as_rule() == Rule::neg {
                            (UnaryOp::Neg, PREC_NEG)
                        } else {
                            (UnaryOp::Not, PREC_NOT)
                        };
                        stack.push(Pending::Prefix {
                            op,
                            start: span_of(&next).start,
                            rbp,
                        });
                        rbp = prec - 1;
                    }
                    _ => break self.primary(next),
                }
            };
            // Fold finished operators into the operand until one binds the next operator.
            loop {
                let next = pairs.peek().and_then(|p| infix(p.as_rule()));
                if let Some((op, prec)) = next.filter(|&(_, prec)| rbp < prec) {
                    pairs.next();
                    stack.push(Pending::Infix {
                        op,
                        lhs: operand,
                        rbp,
                    });
                    rbp = prec;
                    break;
                }
                let Some(pending) = stack.pop() else {
                    return operand;
                };
                let (expr, depth) = operand;
                let (node, outer) = match pending {
                    Pending::Prefix { op, start, rbp } => {
                        let span = Span::new(start, expr.span.end);
                        let kind = ExprKind::Unary(op, Box::new(expr));
                        ((Expr { kind, span }, depth + 1), rbp)
                    }
                    Pending::Infix {
                        op,
                        lhs: (lhs, lhs_depth),
                        rbp,
                    } => {
                        let span = lhs.span.to(expr.span);
                        let kind = ExprKind::Binary(op, Box::new(lhs), Box::new(expr));
                        ((Expr { kind, span }, depth.max(lhs_depth) + 1), rbp)
                    }
                };
                if node.1 > MAX_EXPR_DEPTH {
                    let start = whole.as_span().start();
                    let end = whole.into_inner().last().map_or(start, |p| span_of(&p).end);
                    return self.too_deep(Span::new(start, end));
                }
                operand = node;
                rbp = outer;
            }
        }
    }

    fn primary(&mut self, pair: Pair<Rule>) -> (Expr, usize) {
        let span = span_of(&pair);
        let text = pair.as_str();
        let (kind, depth) = match pair.as_rule() {
            Rule::paren => {
                let (inner, depth) =
                    self.sized_expr(pair.into_inner().next().expect("grammar: paren"));
                return (
                    Expr {
                        kind: inner.kind,
                        span,
                    },
                    depth,
                );
            }
            Rule::list => {
                let (items, depth) = self.args(pair.into_inner());
                (ExprKind::List(items), depth)
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().expect("grammar: call name"));
                let (args, depth) = self.args(inner);
                (ExprKind::Call { name, args }, depth)
            }
            Rule::duration => (ExprKind::Duration(text.to_string()), 1),
            Rule::rate => (ExprKind::Rate(text.to_string()), 1),
            Rule::number => (ExprKind::Number(text.to_string()), 1),
            Rule::string => (ExprKind::Str(self.string(pair)), 1),
            Rule::boolean => (ExprKind::Bool(text == "true"), 1),
            Rule::null => (ExprKind::Null, 1),
            Rule::jsonpath => (ExprKind::Path(text.to_string()), 1),
            _ => (
                ExprKind::Name(pair.into_inner().map(|i| self.ident(i)).collect()),
                1,
            ),
        };
        if depth > MAX_EXPR_DEPTH {
            return self.too_deep(span);
        }
        (Expr { kind, span }, depth)
    }

    /// The arguments of a call or the items of a list, and the depth of the node that
    /// holds them.
    fn args<'i>(&mut self, pairs: impl Iterator<Item = Pair<'i, Rule>>) -> (Vec<Arg>, usize) {
        let mut depth = 0;
        let args = pairs
            .map(|pair| {
                let mut inner: Vec<Pair<Rule>> = pair.into_inner().collect();
                let (value, d) = self.sized_expr(inner.pop().expect("grammar: argument value"));
                depth = depth.max(d);
                let name = inner.pop().map(|n| self.ident(n));
                Arg { name, value }
            })
            .collect();
        (args, depth + 1)
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

    const QUIRKS: &[(&str, &str)] = &[
        ("a * not b + c", "(a * (not (b + c)))"),
        ("a == not b and c", "((a == (not b)) and c)"),
        ("- a * b", "((-a) * b)"),
        ("not not a or b", "((not (not a)) or b)"),
        ("a - - - b", "(a - (-(-b)))"),
        ("a ?? b + c * d - e", "(a ?? ((b + (c * d)) - e))"),
        ("not a + not b + c", "(not (a + (not (b + c))))"),
        ("a < b == c", "((a < b) == c)"),
    ];

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
        // Prefix operators take everything that binds tighter than themselves, as in
        // pest's Pratt parser, which this parser replaced.
        for (src, tree) in QUIRKS {
            assert_eq!(show(&expr_of(src)), *tree, "{src}");
        }
    }

    #[test]
    fn jsonpath_tokens_end_where_they_should() {
        assert_eq!(show(&expr_of("$['odd key'].x")), "$['odd key'].x");
        assert_eq!(show(&expr_of("$.items[?@.qty > 1]")), "$.items[?@.qty > 1]");
        assert_eq!(show(&expr_of("$.a??$.b")), "($.a ?? $.b)");
        assert_eq!(show(&expr_of("$.data[-1].id")), "$.data[-1].id");
        assert_eq!(show(&expr_of("$[\"]\"]")), "$[\"]\"]");
        assert_eq!(
            show(&expr_of("$.a[?(@.b > 1) && match(@.c, \")\")]")),
            "$.a[?(@.b > 1) && match(@.c, \")\")]"
        );
        // An unclosed bracket ends at a `)` it did not open: the call's.
        let call = expr_of("next_url($.a[)");
        let ExprKind::Call { args, .. } = &call.kind else {
            panic!("{call:?}")
        };
        assert_eq!(show(&args[0].value), "$.a[");
    }

    #[test]
    fn escapes() {
        assert_eq!(show(&expr_of(r#""a\"b\u{41}\n""#)), "\"a\\\"bA\\n\"");
        let (_, errors) = parse(r#"sink s = "bad \q escape""#);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].span, Span::new(14, 16));
    }

    #[test]
    fn operator_chains_are_limited_in_depth_not_overflowed() {
        let depth_of = |e: &Expr| {
            let mut deepest = 0;
            let mut todo = vec![(e, 1)];
            while let Some((e, d)) = todo.pop() {
                deepest = deepest.max(d);
                match &e.kind {
                    ExprKind::Unary(_, x) => todo.push((x, d + 1)),
                    ExprKind::Binary(_, l, r) => todo.extend([(&**l, d + 1), (&**r, d + 1)]),
                    ExprKind::Call { args, .. } | ExprKind::List(args) => {
                        todo.extend(args.iter().map(|a| (&a.value, d + 1)))
                    }
                    _ => {}
                }
            }
            deepest
        };
        // 255 operators over literals: exactly the limit.
        let at_limit = expr_of(&vec!["1"; 256].join(" + "));
        assert_eq!(depth_of(&at_limit), MAX_EXPR_DEPTH);
        assert_eq!(depth_of(&expr_of(&format!("{}1", "-".repeat(255)))), 256);
        assert_eq!(
            depth_of(&expr_of(&format!("f({})", vec!["1"; 255].join(" + ")))),
            256
        );
        for text in [
            vec!["1"; 257].join(" + "),
            format!("{}1", "not ".repeat(256)),
            format!("f({})", vec!["1"; 256].join(" + ")),
            format!("[({}) and x]", vec!["1"; 256].join(" * ")),
            vec!["a"; 100_000].join(" and "),
        ] {
            let (file, errors) = parse(&format!("sink s = {text}"));
            assert!(file.is_none(), "{}", &text[..40]);
            assert_eq!(errors.len(), 1);
            assert!(errors[0].message.contains("deeper than 256"), "{errors:?}");
        }
    }

    /// The limit counts every kind of opener, the enclosing blocks included, and the
    /// message says so: 64 open at once are allowed, the 65th is refused.
    #[test]
    fn the_nesting_limit_counts_what_it_says() {
        let nested = |n: usize| {
            format!(
                "source s from a {{ fields {{ x : json = {}1{} }} }}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // Two braces and 62 brackets: 64 levels.
        let (file, errors) = parse(&nested(62));
        assert!(file.is_some() && errors.is_empty(), "{errors:?}");
        let (file, errors) = parse(&nested(63));
        assert!(file.is_none());
        assert_eq!(
            errors[0].message,
            "nesting deeper than 64 levels: this `[` opens level 65, \
             counting every `{`, `[` and `(` still open before it"
        );
        let text = nested(63);
        let last = text.rfind('[').expect("a bracket");
        assert_eq!(errors[0].span, Span::new(last, last + 1));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("sink s = {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let (file, errors) = parse(&text);
        assert!(file.is_none());
        assert!(errors[0].message.contains("nesting"));
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
