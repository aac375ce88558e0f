//! Unit tests of the parser: precedence, JSONPath tokens, escapes, and the limits on
//! depth and nesting.

use super::*;
use crate::syntax::expr::MAX_EXPR_DEPTH;

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
