//! Snapshots of `hamstr check` diagnostics: every fixture under `tests/fixtures/check/`
//! rendered with miette's no-colour theme at a fixed width, and as the JSON of spec §10.
//! Also: every diagnostic code (`Code::ALL`) is produced by some fixture and listed in
//! `docs/language.md`, and the examples are clean.

use hamstr::check::{check_with, Checked, Code, Mode};
use std::collections::BTreeSet;
use std::path::Path;

/// No environment variable is set while checking fixtures, so the output is the same
/// on every machine. Files a fixture names (tenants files) are read beside it. A fixture
/// whose first line holds `(--cluster)` is checked as `check --cluster` checks.
fn check_file(path: &Path) -> Checked {
    let text = std::fs::read_to_string(path).expect("fixture is UTF-8");
    let name = path.file_name().expect("file name").to_string_lossy();
    let dir = path.parent().expect("a folder").to_path_buf();
    let files = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| e.to_string());
    let mode = if text
        .lines()
        .next()
        .is_some_and(|l| l.contains("(--cluster)"))
    {
        Mode::Cluster
    } else {
        Mode::Single
    };
    check_with(&name, &text, &|_| None, &files, mode)
}

#[test]
fn fixtures_render() {
    insta::glob!("fixtures/check/*.hmr", |path| {
        let checked = check_file(path);
        insta::assert_snapshot!("human", checked.report.render(false, 100));
    });
}

#[test]
fn fixtures_json() {
    insta::glob!("fixtures/check/*.hmr", |path| {
        let checked = check_file(path);
        let json = serde_json::to_string_pretty(&checked.report.to_json()).expect("json");
        insta::assert_snapshot!("json", json);
    });
}

/// Each fixture that shows a problem has at least one error or warning, and its header
/// comment says what it shows.
#[test]
fn fixtures_are_commented_and_report_something() {
    for path in fixture_paths() {
        let text = std::fs::read_to_string(&path).expect("fixture");
        assert!(
            text.starts_with("# "),
            "{} must start with a comment saying what it shows",
            path.display()
        );
        let checked = check_file(&path);
        assert!(
            !checked.report.diagnostics.is_empty(),
            "{} reports nothing",
            path.display()
        );
        assert_eq!(
            checked.pipeline.is_some(),
            checked.report.errors() == 0,
            "{}: a pipeline comes back exactly when there are no errors",
            path.display()
        );
    }
}

/// `Code::ALL` lists every variant (one macro declares both), so a new code without a
/// fixture fails this test.
#[test]
fn every_code_has_a_fixture() {
    let names: BTreeSet<&str> = Code::ALL.iter().map(Code::as_str).collect();
    assert_eq!(
        names.len(),
        Code::ALL.len(),
        "two codes print the same name"
    );
    let declared: BTreeSet<Code> = Code::ALL.iter().copied().collect();
    let mut produced = BTreeSet::new();
    for path in fixture_paths() {
        for d in check_file(&path).report.diagnostics {
            produced.insert(d.code);
        }
    }
    let missing: Vec<_> = declared.difference(&produced).map(Code::as_str).collect();
    assert!(missing.is_empty(), "codes no fixture produces: {missing:?}");
}

/// The language reference lists every code, so it stays in step with the checker.
#[test]
fn every_code_is_documented() {
    let docs = include_str!("../docs/language.md");
    let missing: Vec<_> = Code::ALL
        .iter()
        .map(Code::as_str)
        .filter(|c| !docs.contains(&format!("| `{c}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/language.md: {missing:?}"
    );
}

#[test]
fn examples_check_clean() {
    let mut seen = 0;
    for entry in std::fs::read_dir("examples").expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "hmr") {
            continue;
        }
        let checked = check_file(&path);
        let report = &checked.report;
        // chain.hmr's shop tokens come from the environment, unset here: that warning
        // only; nothing else.
        assert!(
            report
                .diagnostics
                .iter()
                .all(|d| d.code == hamstr::check::Code::EnvNotSet && report.errors() == 0),
            "{}:\n{}",
            path.display(),
            report.render(false, 100)
        );
        assert!(checked.pipeline.is_some());
        seen += 1;
    }
    assert!(seen >= 5, "expected the five examples, found {seen}");
}

fn fixture_paths() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hmr"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 35, "only {} fixtures", paths.len());
    paths
}
