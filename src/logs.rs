//! How a run's messages reach stderr: as text for people (the default), or as JSON
//! lines for machines (`run --log-format json`, spec §15). Besides the `tracing` logs, a
//! run prints summaries, reload notes and diagnostics; those go through [`say`] and
//! [`diagnostics`], so that in JSON mode every line on stderr is one JSON object.
//! Secrets are masked on the way out either way (`app::Console`'s writer).

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Switches this process's messages to JSON lines.
pub fn set_json() {
    JSON.store(true, Ordering::Relaxed);
}

/// Whether messages are JSON lines.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// How important a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Prints `text` on stderr as it is, or, in JSON mode, each of its non-empty lines as a
/// log event at `level` (whatever the log filter says: these are answers, not logs).
pub fn say(level: Level, text: &str) {
    if !json() {
        eprint!("{text}");
        if !text.ends_with('\n') {
            eprintln!();
        }
        return;
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        event(level, &serde_json::json!({ "message": line }));
    }
}

/// The diagnostics of a `check` report (its JSON, spec §10), one event each, with the
/// primary label's place: what a log collector can search by code.
pub fn diagnostics(report: &serde_json::Value) {
    let file = report["file"].as_str().unwrap_or_default();
    for d in report["diagnostics"].as_array().into_iter().flatten() {
        let level = if d["severity"] == "error" {
            Level::Error
        } else {
            Level::Warn
        };
        let label = &d["labels"][0];
        event(
            level,
            &serde_json::json!({
                "message": d["message"], "code": d["code"], "help": d["help"],
                "file": file, "line": label["line"], "column": label["column"],
            }),
        );
    }
}

/// One JSON line in the shape of the `tracing` JSON logs (timestamp, level, fields
/// flattened), written through the masking writer.
fn event(level: Level, fields: &serde_json::Value) {
    let mut obj = serde_json::Map::new();
    obj.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into(),
    );
    let level = match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    };
    obj.insert("level".into(), level.into());
    if let Some(fields) = fields.as_object() {
        for (k, v) in fields {
            if !v.is_null() {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    let line = format!("{}\n", serde_json::Value::Object(obj));
    use std::io::Write;
    let _ = std::io::stderr().write_all(crate::masking::mask_log(&line).as_bytes());
}
