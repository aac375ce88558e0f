//! `hamstr check` as a user runs it: the built binary, its exit codes (0 clean or
//! warnings only, 1 errors, 2 usage or I/O), human output on stderr, and `--format json`
//! printing exactly one JSON object on stdout (spec §9, §10).

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn hamstr() -> Command {
    let mut cmd = Command::cargo_bin("hamstr").expect("the hamstr binary");
    cmd.env("NO_COLOR", "1")
        .env_remove("HAMSTR_FIXTURE_TOKEN")
        .env_remove("HAMSTR_FIXTURE_URL");
    cmd
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/check")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn a_good_file_exits_0_and_says_so_on_stderr() {
    hamstr()
        .arg("check")
        .arg(example("restaurant.hmr"))
        .assert()
        .code(0)
        .stdout("")
        .stderr(predicate::str::contains("0 errors, 0 warnings"));
}

#[test]
fn warnings_alone_exit_0() {
    hamstr()
        .arg("check")
        .arg(fixture("env_not_set.hmr"))
        .assert()
        .code(0)
        .stdout("")
        .stderr(
            predicate::str::contains("hamstr::env_not_set")
                .and(predicate::str::contains("0 errors, 1 warning")),
        );
}

#[test]
fn errors_exit_1_with_the_diagnostics_on_stderr() {
    hamstr()
        .arg("check")
        .arg(fixture("unknown_service.hmr"))
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("hamstr::unknown_service")
                .and(predicate::str::contains("did you mean `payments`?"))
                .and(predicate::str::contains("1 error, 0 warnings"))
                // NO_COLOR: no escape sequences.
                .and(predicate::str::contains("\u{1b}[").not()),
        );
}

#[test]
fn a_missing_file_exits_2() {
    hamstr()
        .args(["check", "no/such/file.hmr"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("cannot read"));
}

#[test]
fn a_directory_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    hamstr()
        .arg("check")
        .arg(dir.path())
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("cannot read"));
}

#[test]
fn a_file_that_is_not_utf8_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.hmr");
    std::fs::write(&path, b"sink s = jsonl(\"caf\xe9\")\n").expect("write");
    hamstr()
        .arg("check")
        .arg(&path)
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("not UTF-8").and(predicate::str::contains("offset 19")));
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        vec!["check"],
        vec!["check", "a.hmr", "--format", "xml"],
        vec!["check", "a.hmr", "--colour"],
        vec!["chek", "a.hmr"],
        vec![],
    ] {
        hamstr().args(&args).assert().code(2).stdout("");
    }
}

/// Parses stdout as exactly one JSON value: no other text before or after it.
fn only_json(stdout: &[u8]) -> Value {
    let text = std::str::from_utf8(stdout).expect("stdout is UTF-8");
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let first = values
        .next()
        .expect("one JSON value on stdout")
        .expect("valid JSON");
    assert!(values.next().is_none(), "more than one value on stdout");
    assert_eq!(text.trim_end(), text.trim(), "text before the JSON object");
    assert!(first.is_object(), "not an object: {first}");
    first
}

#[test]
fn json_report_of_a_file_with_errors() {
    let path = fixture("many_errors.hmr");
    let out = hamstr()
        .arg("check")
        .arg(&path)
        .args(["--format", "json"])
        .assert()
        .code(1)
        .stderr("")
        .get_output()
        .clone();
    let report = only_json(&out.stdout);
    let text = std::fs::read_to_string(&path).expect("fixture");

    let keys: Vec<&str> = report
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["file", "errors", "warnings", "diagnostics"]);
    assert_eq!(report["file"], path.display().to_string());
    let diagnostics = report["diagnostics"].as_array().expect("diagnostics");
    let errors = diagnostics
        .iter()
        .filter(|d| d["severity"] == "error")
        .count();
    assert!(errors >= 10, "many_errors should report many: {errors}");
    assert_eq!(report["errors"], errors);
    assert_eq!(report["warnings"], diagnostics.len() - errors);

    for d in diagnostics {
        let keys: Vec<&str> = d
            .as_object()
            .expect("diagnostic")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["code", "severity", "message", "help", "labels"]);
        assert!(d["code"].as_str().expect("code").starts_with("hamstr::"));
        assert!(matches!(d["severity"].as_str(), Some("error" | "warning")));
        assert!(!d["message"].as_str().expect("message").is_empty());
        assert!(d["help"].is_null() || d["help"].is_string());
        let labels = d["labels"].as_array().expect("labels");
        assert!(!labels.is_empty(), "{d}");
        for l in labels {
            let keys: Vec<&str> = l
                .as_object()
                .expect("label")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["line", "column", "offset", "length", "text"]);
            let offset = l["offset"].as_u64().expect("offset") as usize;
            let length = l["length"].as_u64().expect("length") as usize;
            assert!(offset + length <= text.len());
            // line and column are 1-based and agree with the byte offset.
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
                .chars()
                .count()
                + 1;
            assert_eq!(l["line"], line, "{l}");
            assert_eq!(l["column"], column, "{l}");
            assert!(l["text"].is_string());
        }
    }
    let first = &diagnostics[0];
    assert_eq!(first["code"], "hamstr::invalid_url");
}

#[test]
fn json_report_of_a_clean_file() {
    let out = hamstr()
        .arg("check")
        .arg(example("order_items.hmr"))
        .args(["--format", "json"])
        .assert()
        .code(0)
        .stderr("")
        .get_output()
        .clone();
    let report = only_json(&out.stdout);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["warnings"], 0);
    assert_eq!(report["diagnostics"], Value::Array(Vec::new()));
}

#[test]
fn json_report_of_warnings_exits_0() {
    let out = hamstr()
        .arg("check")
        .arg(fixture("unused_sink.hmr"))
        .args(["--format", "json"])
        .assert()
        .code(0)
        .stderr("")
        .get_output()
        .clone();
    let report = only_json(&out.stdout);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["warnings"], 1);
    assert_eq!(report["diagnostics"][0]["code"], "hamstr::unused_sink");
    assert_eq!(report["diagnostics"][0]["severity"], "warning");
}

#[test]
fn json_format_with_an_io_error_still_exits_2() {
    hamstr()
        .args(["check", "no/such/file.hmr", "--format", "json"])
        .assert()
        .code(2)
        .stdout("");
}

/// A file is untrusted: escape sequences in it (raw, or written as `\u{1b}` in a string
/// that a message quotes) never reach the reader's terminal.
#[test]
fn escape_sequences_in_a_file_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("esc.hmr");
    std::fs::write(
        &file,
        "service api {\n  base_url = \"http://h\\u{1b}[2J\\u{1b}]0;TITLE\\u{7}x\"\n}\nsource s from api { get = \"/x\x1b[31m\"  schedule = 5  fields { id : string = $.id } }\nsink o = stdout()\nflow s -> o\n",
    )
    .unwrap();
    let out = hamstr().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_url"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
}

/// Colour on a terminal, unless NO_COLOR is set to something (no-color.org: an empty
/// NO_COLOR does not count). The terminal is real: util-linux `script` runs the check
/// under a pseudo-terminal.
#[test]
fn colour_on_a_terminal_follows_no_color() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.hmr");
    std::fs::write(&file, "service api {\n  base_url = \"ftp://x\"\n}\n").unwrap();
    let bin = assert_cmd::cargo::cargo_bin("hamstr");
    let under_terminal = |no_color: Option<&str>| {
        let mut c = std::process::Command::new("script");
        c.arg("-qc")
            .arg(format!("{} check {}", bin.display(), file.display()))
            .arg("/dev/null");
        match no_color {
            Some(v) => c.env("NO_COLOR", v),
            None => c.env_remove("NO_COLOR"),
        };
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // No pseudo-terminal here (`script` failed): nothing to see.
        text.contains("invalid_url")
            .then(|| text.contains("\u{1b}["))
    };
    let Some(plain) = under_terminal(None) else {
        eprintln!("skipped: `script` could not open a pseudo-terminal");
        return;
    };
    assert!(plain, "no colour on a terminal");
    let under_terminal = |v| under_terminal(v).unwrap_or(false);
    assert!(
        under_terminal(Some("")),
        "an empty NO_COLOR turned colour off"
    );
    assert!(!under_terminal(Some("1")), "NO_COLOR=1 left colour on");
}
