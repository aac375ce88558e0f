//! `run --log-format json` (spec §15): every line hamstr writes on stderr is one JSON
//! object (logs at debug level, a program's stderr, the summary, diagnostics, errors),
//! and no secret appears in it, not even JSON-escaped.

mod support;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use support::cli::{stderr, text, Pipeline};
use support::{records, Paging, TestApi};

/// A token with the characters a JSON string escapes.
const TOKEN: &str = r#"tok"en\SeCrEt-81"#;

/// Every non-empty line of `err` as a JSON object; panics on any other line.
fn json_lines(err: &str) -> Vec<serde_json::Map<String, Value>> {
    err.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(o)) => o,
            _ => panic!("not a JSON object: {l:?}\nall of stderr:\n{err}"),
        })
        .collect()
}

#[test]
fn a_run_logs_json_lines_without_secrets() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(12));
    api.serve("/orders", Paging::page(5));
    let p = Pipeline::new(&format!(
        r#"
service api {{
  base_url = "{url}"
  auth     = bearer(env("API_TOKEN"))
}}

source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 5)
  records  = $.data[*]
  key      = id
  fields {{ id : string = $.id }}
}}

sink announce = exec(["./announce.sh", env("API_TOKEN")])

flow orders -> announce
"#,
        url = api.url()
    ));
    let script = p.path("announce.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nwhile IFS= read -r line; do echo \"new order with $1: $line\" >&2; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = p.cmd(&["run", "--once", "--log-format", "json", "--data-dir"]);
    cmd.arg(&p.data)
        .env("API_TOKEN", TOKEN)
        .env("RUST_LOG", "trace");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = stderr(&out);
    let escaped = serde_json::to_string(TOKEN).unwrap();
    assert!(!err.contains("SeCrEt"), "a secret in the logs:\n{err}");
    assert!(!err.contains(escaped.trim_matches('"')), "{err}");

    let events = json_lines(&err);
    for e in &events {
        assert!(e["timestamp"].is_string(), "{e:?}");
        assert!(e["level"].is_string(), "{e:?}");
        assert!(e["message"].is_string(), "{e:?}");
    }
    let said: Vec<&serde_json::Map<String, Value>> = events
        .iter()
        .filter(|e| e["message"] == "the program said")
        .collect();
    assert_eq!(said.len(), 12, "one event per line of the program's stderr");
    assert_eq!(said[0]["sink"], "announce");
    assert_eq!(said[0]["source"], "orders");
    let line = said[0]["stderr"].as_str().unwrap();
    assert!(
        line.starts_with("new order with ***: {\"id\":\"r00001\""),
        "{line}"
    );
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"),
        "RUST_LOG is obeyed:\n{err}"
    );
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("orders: 1 run, 3 pages, 12 records, 12 new"))),
        "the summary is an event too:\n{err}"
    );
}

#[test]
fn diagnostics_and_errors_are_json_lines_too() {
    let p = Pipeline::new(
        r#"
source orders from nowhere {
  get      = "/orders"
  schedule = once
  fields { id : string = $.id }
}
sink out = stdout()
flow orders -> out
"#,
    );
    let mut cmd = p.cmd(&["run", "--once", "--log-format", "json", "--data-dir"]);
    cmd.arg(&p.data);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let events = json_lines(&stderr(&out));
    let unknown = events
        .iter()
        .find(|e| e["code"] == "hamstr::unknown_service")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(unknown["level"], "ERROR");
    assert_eq!(unknown["line"], 2);
    assert_eq!(unknown["file"], p.file.display().to_string());
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .contains("unknown service `nowhere`"));

    // An error that is not a diagnostic: a data directory that cannot be made.
    let p = Pipeline::new("sink out = stdout()\n");
    let mut cmd = p.cmd(&["run", "--once", "--log-format", "json", "--data-dir"]);
    cmd.arg("/dev/null/data");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let events = json_lines(&stderr(&out));
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "ERROR" && e["message"].as_str().unwrap().starts_with("error: ")),
        "{events:?}"
    );
}
