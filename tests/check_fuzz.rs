//! Hostile input for `hamstr::check::check`: mutated examples, random bytes, random
//! token soups, deep nesting, long operator chains (through the built binary, so a
//! stack overflow fails the test) and a 5 MB line. Every input must come back, without
//! a panic, with either a pipeline or at least one error, and its report must render.

use hamstr::check::{check, Code};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const EXAMPLES: [&str; 5] = [
    include_str!("../examples/restaurant.hmr"),
    include_str!("../examples/every_paginator.hmr"),
    include_str!("../examples/github_issues.hmr"),
    include_str!("../examples/order_items.hmr"),
    include_str!("../examples/stripe_charges.hmr"),
];

/// Checks one input and the invariants every outcome must hold.
fn check_holds(text: &str) {
    let checked = check("fuzz.hmr", text, &|_| None);
    let report = &checked.report;
    assert_eq!(
        checked.pipeline.is_some(),
        report.errors() == 0,
        "a pipeline comes back exactly when there is no error"
    );
    for d in &report.diagnostics {
        assert!(!d.labels.is_empty(), "{d:?}");
        for l in &d.labels {
            assert!(
                l.span.start <= l.span.end && l.span.end <= text.len(),
                "{d:?}"
            );
            assert!(
                text.is_char_boundary(l.span.start) && text.is_char_boundary(l.span.end),
                "label off a character boundary: {d:?}"
            );
        }
    }
    let json = report.to_json();
    assert_eq!(json["errors"], report.errors());
    // Rendering every diagnostic of a huge input is slow in debug builds and proves
    // nothing more; the first few show that spans and text agree.
    if report.diagnostics.len() <= 20 {
        let _ = report.render(false, 100);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Replace {
        at: usize,
        len: usize,
        bytes: Vec<u8>,
    },
    DuplicateLine {
        line: usize,
    },
    Nest {
        at: usize,
        depth: usize,
        open: u8,
    },
    InsertToken {
        at: usize,
        token: &'static str,
    },
    DeleteLine {
        line: usize,
    },
    SwapLines {
        a: usize,
        b: usize,
    },
    /// Replaces the `nth` word (a run of letters, digits and `_`) with a token: keeps
    /// most of the file well-formed, so the checker proper gets exercised.
    ReplaceWord {
        nth: usize,
        token: &'static str,
    },
}

/// Fragments of the language, valid or nearly so, to build soups from.
const TOKENS: &[&str] = &[
    "service",
    "model",
    "source",
    "sink",
    "flow",
    "aggregate",
    "from",
    "and",
    "or",
    "not",
    "true",
    "false",
    "null",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "??",
    "->",
    ",",
    ":",
    "?",
    "\"s\"",
    "\"\\u{41}\"",
    "\"\\q\"",
    "\"open",
    "42",
    "-3",
    "2.5",
    "99999999999999999999",
    "30s",
    "1h30m",
    "5x",
    "0s",
    "20/s",
    "0/s",
    "3/week",
    "$",
    "$.data[*]",
    "$..id",
    "$[",
    "$.a[?@.x >]",
    "$['k']",
    "id",
    "name",
    "parent.id",
    "env(\"X\")",
    "env()",
    "every(1m)",
    "cron(\"61 * * * *\")",
    "once",
    "page()",
    "cursor(param = \"a\")",
    "next_url($.n)",
    "sled(\"t\")",
    "stdout()",
    "lower($.x)",
    "day(created_at)",
    "count()",
    "sum(amount)",
    "string",
    "int?",
    "json",
    "# comment\n",
    "\n",
    " ",
    "\t",
    "\u{FEFF}",
    "é",
    "🦀",
];

/// Words that mean something somewhere in a pipeline, to swap for others.
const WORDS: &[&str] = &[
    "id",
    "amount",
    "currency",
    "created_at",
    "note",
    "status",
    "Order",
    "Row",
    "Charge",
    "pos",
    "payments",
    "api",
    "orders",
    "shop_orders",
    "store",
    "archive",
    "console",
    "string",
    "int",
    "float",
    "decimal",
    "bool",
    "datetime",
    "json",
    "get",
    "post",
    "query",
    "body",
    "schedule",
    "paginate",
    "records",
    "model",
    "key",
    "incremental",
    "where",
    "fields",
    "for_each",
    "cursor",
    "param",
    "order",
    "start",
    "newest_first",
    "page",
    "offset",
    "next_url",
    "link_header",
    "none",
    "bearer",
    "basic",
    "api_key",
    "sled",
    "jsonl",
    "stdout",
    "postgres",
    "webhook",
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "group_by",
    "compute",
    "parent",
    "every",
    "cron",
    "once",
    "1",
    "0",
    "100",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), bytes.clone()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 0usize..16, bytes).prop_map(|(at, len, bytes)| Mutation::Replace {
            at,
            len,
            bytes
        }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (
            any::<usize>(),
            1usize..200,
            prop::sample::select(vec![b'(', b'[', b'{'])
        )
            .prop_map(|(at, depth, open)| Mutation::Nest { at, depth, open }),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Mutation::InsertToken { at, token }),
        any::<usize>().prop_map(|line| Mutation::DeleteLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        (any::<usize>(), prop::sample::select(WORDS))
            .prop_map(|(nth, token)| Mutation::ReplaceWord { nth, token }),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(nth, token)| Mutation::ReplaceWord { nth, token }),
    ]
}

/// Mutations that mostly keep the file well-formed, so most inputs get past the parser
/// and exercise name resolution, types and the cross-checks.
fn word_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), prop::sample::select(WORDS))
            .prop_map(|(nth, token)| Mutation::ReplaceWord { nth, token }),
        1 => any::<usize>().prop_map(|line| Mutation::DeleteLine { line }),
        1 => any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
    ]
}

fn lines_of(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|c| *c == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut b = text.as_bytes().to_vec();
    for m in mutations {
        let n = b.len();
        match m {
            Mutation::Delete { at, len } => {
                let at = at % (n + 1);
                b.drain(at..(at + len).min(n));
            }
            Mutation::Insert { at, bytes } => {
                let at = at % (n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Replace { at, len, bytes } => {
                let at = at % (n + 1);
                b.splice(at..(at + len).min(n), bytes.iter().copied());
            }
            Mutation::DuplicateLine { line } => {
                let mut lines = lines_of(&b);
                if !lines.is_empty() {
                    let i = line % lines.len();
                    lines.insert(i, lines[i].clone());
                    b = lines.concat();
                }
            }
            Mutation::Nest { at, depth, open } => {
                let close = match open {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                };
                let at = at % (n + 1);
                let mut nest = vec![*open; *depth];
                nest.extend(std::iter::repeat_n(close, *depth));
                b.splice(at..at, nest);
            }
            Mutation::InsertToken { at, token } => {
                let at = at % (n + 1);
                b.splice(at..at, token.bytes());
            }
            Mutation::DeleteLine { line } => {
                let mut lines = lines_of(&b);
                if !lines.is_empty() {
                    let i = line % lines.len();
                    lines.remove(i);
                    b = lines.concat();
                }
            }
            Mutation::SwapLines { a, b: other } => {
                let mut lines = lines_of(&b);
                if !lines.is_empty() {
                    let n = lines.len();
                    lines.swap(a % n, other % n);
                    b = lines.concat();
                }
            }
            Mutation::ReplaceWord { nth, token } => {
                let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
                let starts: Vec<usize> = (0..n)
                    .filter(|&i| word(&b[i]) && (i == 0 || !word(&b[i - 1])))
                    .collect();
                if !starts.is_empty() {
                    let at = starts[nth % starts.len()];
                    let end = (at..n).find(|&i| !word(&b[i])).unwrap_or(n);
                    b.splice(at..end, token.bytes());
                }
            }
        }
    }
    // Mutations work on bytes; the checker takes text, as the CLI reads it.
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples(example in 0..EXAMPLES.len(), mutations in prop::collection::vec(mutation(), 1..6)) {
        check_holds(&apply(EXAMPLES[example], &mutations));
    }

    #[test]
    fn word_swaps_in_examples(example in 0..EXAMPLES.len(), mutations in prop::collection::vec(word_mutation(), 1..8)) {
        check_holds(&apply(EXAMPLES[example], &mutations));
    }

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_holds(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_text(text in "\\PC{0,300}") {
        check_holds(&text);
    }

    #[test]
    fn token_soup(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..120)) {
        check_holds(&tokens.join(" "));
    }

    /// Token soups inside a well-formed frame reach deeper into the checker.
    #[test]
    fn token_soup_in_a_source(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..40)) {
        let text = format!(
            "service api {{ base_url = \"https://x.example.com\" }}\n\
             source s from api {{\n  get = \"/x\"\n  schedule = every(1m)\n  key = id\n  \
             where = {}\n  fields {{ id : string = $.id }}\n}}\nsink o = stdout()\nflow s -> o\n",
            tokens.join(" ")
        );
        check_holds(&text);
    }
}

#[test]
fn deep_nesting_is_refused_quickly() {
    for (open, close) in [("(", ")"), ("[", "]"), ("{", "}")] {
        let started = Instant::now();
        let text = format!(
            "sink s = jsonl({}\"x\"{})",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let checked = check("deep.hmr", &text, &|_| None);
        assert!(checked.pipeline.is_none());
        assert!(
            checked.report.diagnostics[0].message.contains("nesting"),
            "{:?}",
            checked.report.diagnostics[0]
        );
        check_holds(&text);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Unbalanced: 100,000 openers and nothing else.
    check_holds(&"{[(".repeat(100_000));

    // Just under the limit, with the error at the innermost point: the parser must not
    // backtrack its way into exponential time.
    for inner in ["f(", "[", "(", "-(", "not (", "a(b = ", "[x = "] {
        let started = Instant::now();
        check_holds(&format!("sink s = {}1 +", inner.repeat(60)));
        check_holds(&format!(
            "source s from a {{ where = {}x == }}",
            inner.repeat(60)
        ));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{inner}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_five_megabyte_line() {
    const SIZE: usize = 5 * 1024 * 1024;
    let started = Instant::now();

    // One long string literal in an otherwise good file.
    let good = format!(
        "service api {{ base_url = \"https://x.example.com\" headers {{ \"X-Big\" = \"{}\" }} }} \
         source s from api {{ get = \"/x\" schedule = once fields {{ id : string = $.id }} }} \
         sink o = stdout() flow s -> o",
        "a".repeat(SIZE)
    );
    let checked = check("big.hmr", &good, &|_| None);
    assert_eq!(
        checked.report.errors(),
        0,
        "{:?}",
        checked.report.diagnostics
    );
    assert!(checked.pipeline.is_some());

    // A line of one bare word, and one of an unterminated string.
    check_holds(&"x".repeat(SIZE));
    check_holds(&format!("sink s = \"{}", "y".repeat(SIZE)));
    // One megabyte of this is enough to show that a long valid line is not refused as
    // "too complex" (the parser's work limit grows with the input).
    let count = SIZE / 5 / 18;
    let decls = "sink s = stdout() ".repeat(count);
    let checked = check("many.hmr", &decls, &|_| None);
    assert!(
        checked
            .report
            .diagnostics
            .iter()
            .all(|d| d.code == Code::DuplicateName || d.code == Code::UnusedSink),
        "every sink after the first is a duplicate, and nothing else: {:?}",
        checked.report.diagnostics.first()
    );
    assert_eq!(checked.report.errors(), count - 1);

    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// A pipeline whose `where` is `condition`, written to a file for the binary to check.
fn with_where(dir: &tempfile::TempDir, name: &str, condition: &str) -> std::path::PathBuf {
    let path = dir.path().join(format!("{name}.hmr"));
    let text = format!(
        "service api {{ base_url = \"https://x.example.com\" }}\n\
         source s from api {{\n  get = \"/x\"\n  schedule = every(1m)\n  key = n\n  \
         where = {condition}\n  fields {{ n : int = $.n }}\n}}\nsink o = stdout()\nflow s -> o\n"
    );
    std::fs::write(&path, text).expect("write");
    path
}

/// Long operator chains make deep trees, and every stage after the parser walks them
/// recursively. Each is refused with one diagnostic on the expression; none may
/// overflow the stack. The binary runs as a child, so an overflow (SIGABRT) fails this
/// test instead of killing the test harness.
#[test]
fn long_operator_chains_are_refused_not_overflowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    for n in [2_500, 100_000] {
        let chains = [
            ("and", vec!["n > 1"; n].join(" and ")),
            ("add", format!("{} > 1", vec!["n"; n].join(" + "))),
            ("not", format!("{}true", "not ".repeat(n))),
            ("neg", format!("{}1 > n", "- ".repeat(n))),
        ];
        for (name, condition) in chains {
            let path = with_where(&dir, &format!("{name}_{n}"), &condition);
            let output = assert_cmd::Command::cargo_bin("hamstr")
                .expect("the hamstr binary")
                .env("NO_COLOR", "1")
                .args(["check", "--format", "json"])
                .arg(&path)
                .output()
                .expect("run hamstr");
            assert_eq!(output.status.code(), Some(1), "{name} × {n}: {output:?}");
            let report: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("one JSON report");
            let diagnostics = report["diagnostics"].as_array().expect("diagnostics");
            assert_eq!(diagnostics.len(), 1, "{name} × {n}: {report}");
            let d = &diagnostics[0];
            assert_eq!(d["code"], "hamstr::syntax");
            assert!(
                d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("deeper than 256 levels")),
                "{d}"
            );
            // Labelled at the whole expression: from its first token to its last.
            let label = &d["labels"][0];
            assert_eq!(label["line"], 6, "{d}");
            assert_eq!(label["length"], condition.len(), "{d}");
        }
    }
    // A bit under the limit is an ordinary, valid condition.
    let path = with_where(&dir, "under", &vec!["n > 1"; 250].join(" and "));
    assert_cmd::Command::cargo_bin("hamstr")
        .expect("the hamstr binary")
        .env("NO_COLOR", "1")
        .arg("check")
        .arg(&path)
        .assert()
        .code(0);
    check_holds(&std::fs::read_to_string(&path).expect("read"));
}
