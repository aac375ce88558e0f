//! The tree-sitter grammar in `editors/tree-sitter-hamstr` (issue 14, item 5): the
//! parser generated from its `grammar.js` reads every pipeline the project holds
//! without an ERROR or MISSING node, still finds the syntax errors hamstr's own parser
//! finds, and its highlight query compiles against it and colours what it should.

use hamstr::check::{check, Code};
use std::path::{Path, PathBuf};
use tree_sitter::{Node, Parser, Query, QueryCursor, StreamingIterator, Tree};

fn parse(text: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_hamstr::LANGUAGE.into())
        .expect("the generated parser's ABI is one the tree-sitter crate reads");
    parser.parse(text, None).expect("a tree")
}

/// Every ERROR and MISSING node, with its line and column (1-based).
fn problems(tree: &Tree) -> Vec<String> {
    fn walk(node: Node, out: &mut Vec<String>) {
        if node.is_error() || node.is_missing() {
            let p = node.start_position();
            out.push(format!(
                "{}:{}: {}",
                p.row + 1,
                p.column + 1,
                if node.is_missing() {
                    format!("MISSING {}", node.kind())
                } else {
                    "ERROR".to_string()
                }
            ));
        }
        if node.has_error() {
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(tree.root_node(), &mut out);
    out
}

fn hmr_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() && recursive {
            hmr_files(&path, true, out);
        } else if path.extension().is_some_and(|x| x == "hmr") {
            out.push(path);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `check` says of a file, with no environment variable set.
fn codes(path: &Path) -> (usize, Vec<Code>) {
    let checked = check("pipeline.hmr", &read(path), &|_| None);
    let codes = checked.report.diagnostics.iter().map(|d| d.code).collect();
    (checked.report.errors(), codes)
}

/// The files the grammar must read cleanly: the examples, the spec's examples that
/// pass `check`, and every fixture whose diagnostics are not syntax errors.
fn clean_corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    hmr_files(&root().join("examples"), false, &mut files);
    let mut spec = Vec::new();
    hmr_files(&root().join("../shared/spec/examples"), false, &mut spec);
    files.extend(spec.into_iter().filter(|p| codes(p).0 == 0));
    let mut fixtures = Vec::new();
    hmr_files(&root().join("tests/fixtures"), true, &mut fixtures);
    files.extend(
        fixtures
            .into_iter()
            .filter(|p| !codes(p).1.contains(&Code::Syntax)),
    );
    files.sort();
    files
}

#[test]
fn every_example_and_fixture_parses_without_errors() {
    let files = clean_corpus();
    assert!(
        files.len() >= 60,
        "the corpus is missing: only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let tree = parse(&read(path));
        for p in problems(&tree) {
            failures.push(format!("{}:{p}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The messages of a file's syntax errors, with no environment variable set.
fn syntax_errors(path: &Path) -> Vec<String> {
    let checked = check("pipeline.hmr", &read(path), &|_| None);
    checked
        .report
        .diagnostics
        .into_iter()
        .filter(|d| d.code == Code::Syntax)
        .map(|d| d.message)
        .collect()
}

/// A grammar that took anything would pass the test above: the fixtures with syntax
/// errors must have an ERROR or MISSING node too, except those whose only syntax
/// errors are ones hamstr finds after parsing and the tree-sitter grammar leaves alone
/// (an escape it does not know, nesting deeper than hamstr allows).
#[test]
fn syntax_error_fixtures_are_errors_here_too() {
    let found_after_parsing =
        |m: &String| m.contains("escape") || m.starts_with("nesting deeper than");
    let mut fixtures = Vec::new();
    hmr_files(&root().join("tests/fixtures"), true, &mut fixtures);
    fixtures.sort();
    let mut seen = 0;
    for path in fixtures {
        let errors = syntax_errors(&path);
        if errors.iter().all(found_after_parsing) {
            continue;
        }
        seen += 1;
        let tree = parse(&read(&path));
        assert!(
            !problems(&tree).is_empty(),
            "{} has a syntax error ({errors:?}), but the tree-sitter grammar reads it cleanly:\n{}",
            path.display(),
            tree.root_node().to_sexp()
        );
    }
    assert!(seen >= 6, "only {seen} syntax fixtures");
}

/// What the highlight query makes of each captured node of a text, as `(text,
/// capture)` pairs: where several patterns capture one node the last one wins, as in
/// tree-sitter-highlight and Neovim.
fn highlights(text: &str) -> Vec<(String, String)> {
    let language = tree_sitter_hamstr::LANGUAGE.into();
    let query = Query::new(&language, tree_sitter_hamstr::HIGHLIGHTS_QUERY)
        .expect("queries/highlights.scm compiles against the grammar");
    let tree = parse(text);
    let mut cursor = QueryCursor::new();
    let mut by_node = std::collections::BTreeMap::new();
    let mut matches = cursor.matches(&query, tree.root_node(), text.as_bytes());
    while let Some(m) = matches.next() {
        for c in m.captures() {
            let name = query.capture_names()[c.index as usize].to_string();
            let entry = by_node
                .entry((c.node.start_byte(), c.node.end_byte(), c.node.kind_id()))
                .or_insert((m.pattern_index, name.clone()));
            if m.pattern_index >= entry.0 {
                *entry = (m.pattern_index, name);
            }
        }
    }
    by_node
        .into_iter()
        .map(|((start, end, _), (_, name))| (text[start..end].to_string(), name))
        .collect()
}

#[test]
fn the_highlight_query_colours_the_words_of_the_language() {
    let text = read(&root().join("examples/restaurant.hmr"));
    let got = highlights(&text);
    let has = |t: &str, c: &str| got.iter().any(|(a, b)| a == t && b == c);
    for (t, c) in [
        ("service", "keyword"),
        ("from", "keyword"),
        ("env", "function.macro"),
        ("bearer", "function.builtin"),
        ("every", "function.builtin"),
        ("base_url", "property"),
        ("incremental", "property"),
        ("$.data[*]", "string.special"),
        ("\"/orders\"", "string"),
        ("30s", "number"),
        ("20/s", "number"),
        ("decimal", "type.builtin"),
        ("Order", "type"),
        ("newest_first", "constant.builtin"),
        ("->", "operator"),
        ("shop_orders", "function"),
        ("pos", "module"),
        ("id", "variable.member"),
        ("value", "variable.parameter.builtin"),
        ("header", "variable.parameter"),
    ] {
        assert!(has(t, c), "`{t}` is not captured as @{c}: {got:?}");
    }
}
