//! The CLI harness: a pipeline file in a temporary folder, the built `hamstr` binary run
//! against it (to completion, or in the background as a `RunningHamstr`), and readers for
//! what the sinks hold.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

use super::RunningHamstr;

/// Longest any one hamstr command may take before a test fails instead of hanging.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// The typed fields of a `records::make` record, keyed by `id`.
pub const FIELDS: &str = r#"
  key = id
  fields {
    id         : string   = $.id
    seq        : int      = $.seq
    created_at : datetime = $.created_at
    amount     : decimal  = $.amount
    currency   : string   = $.currency
  }"#;

/// A pipeline file (`pipeline.hmr`) and its data directory in a fresh temporary folder.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub data: PathBuf,
}

impl Pipeline {
    pub fn new(text: &str) -> Pipeline {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pipeline.hmr");
        std::fs::write(&file, text).expect("write pipeline");
        let data = dir.path().join("data");
        Pipeline { dir, file, data }
    }

    /// Replaces the pipeline's text (same file, same data directory).
    pub fn rewrite(&self, text: &str) {
        std::fs::write(&self.file, text).expect("rewrite pipeline");
    }

    /// A path inside the pipeline's folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `hamstr ARGS FILE ... --data-dir DATA` with `NO_COLOR` and no `RUST_LOG`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = hamstr();
        c.arg(args[0]).arg(&self.file).args(&args[1..]);
        c
    }

    /// `hamstr run --once` into the data directory.
    pub fn run_once(&self) -> Output {
        self.run_once_with(&[])
    }

    /// `hamstr run --once` with extra environment variables.
    pub fn run_once_with(&self, env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(&["run", "--once", "--data-dir"]);
        c.arg(&self.data);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run hamstr")
    }

    /// `run --once` that must exit 0; returns its stderr (the summary).
    pub fn run_ok(&self) -> String {
        let out = self.run_once();
        assert_eq!(
            out.status.code(),
            Some(0),
            "hamstr run --once failed:\n{}",
            text(&out)
        );
        stderr(&out)
    }

    /// `run --once` that must exit 1 (a source failed); returns its stderr.
    pub fn run_failing(&self) -> String {
        let out = self.run_once();
        assert_eq!(
            out.status.code(),
            Some(1),
            "hamstr run --once should have failed:\n{}",
            text(&out)
        );
        stderr(&out)
    }

    /// `hamstr dump NAME` (jsonl) as JSON values.
    pub fn dump(&self, name: &str) -> Vec<Value> {
        let out = self.ok(&["dump", name, "--data-dir"]);
        json_lines(&out)
    }

    /// `hamstr dump SOURCE --rejected` as JSON values.
    pub fn rejected(&self, source: &str) -> Vec<Value> {
        let out = self.ok(&["dump", source, "--rejected", "--data-dir"]);
        json_lines(&out)
    }

    /// `hamstr state` output.
    pub fn state(&self) -> String {
        self.ok(&["state", "--data-dir"])
    }

    /// Runs `hamstr ARGS` with the data directory appended; must exit 0; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let mut c = self.cmd(args);
        c.arg(&self.data);
        let out = c.output().expect("run hamstr");
        assert_eq!(
            out.status.code(),
            Some(0),
            "hamstr {args:?} failed:\n{}",
            text(&out)
        );
        stdout(&out)
    }

    /// `hamstr run ARGS FILE --data-dir DATA` in the background, stdout discarded,
    /// stderr collected; killed when the handle drops.
    pub fn spawn_run(&self, args: &[&str]) -> RunningHamstr {
        let mut c = hamstr_process();
        c.arg("run")
            .args(args)
            .arg(&self.file)
            .arg("--data-dir")
            .arg(&self.data);
        RunningHamstr::start(c)
    }

    /// The lines of a jsonl file inside the pipeline's folder (none when it is missing).
    pub fn jsonl(&self, rel: &str) -> Vec<Value> {
        read_jsonl(&self.path(rel))
    }
}

/// The built binary with `NO_COLOR=1`, no inherited `RUST_LOG`, and a timeout.
pub fn hamstr() -> Command {
    let mut c = Command::cargo_bin("hamstr").expect("hamstr binary");
    c.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .timeout(COMMAND_TIMEOUT);
    c
}

/// The built binary as a plain process for `RunningHamstr::start`: `NO_COLOR=1`, no
/// inherited `RUST_LOG`, stdout discarded (set it again to read it).
pub fn hamstr_process() -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hamstr"));
    c.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null());
    c
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Every non-empty line parsed as JSON.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(t) => json_lines(&t),
        Err(_) => Vec::new(),
    }
}

/// The `id` field of each record, in order.
pub fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The ids sorted, for comparisons that ignore order.
pub fn sorted_ids(records: &[Value]) -> Vec<String> {
    let mut v = ids(records);
    v.sort();
    v
}

/// `["r00001", …]` for records `first..first+n`.
pub fn id_range(first: u64, n: u64) -> Vec<String> {
    (first..first + n).map(|s| format!("r{s:05}")).collect()
}

/// A `service api { ... }` block for `url` with extra properties, and quick retries
/// unless `extra` sets its own.
pub fn service(url: &str, extra: &str) -> String {
    let retry = if extra.contains("retry") {
        ""
    } else {
        "  retry { attempts = 3  backoff = 50ms  max_backoff = 200ms }\n"
    };
    format!("service api {{\n  base_url = \"{url}\"\n{retry}{extra}\n}}\n")
}

/// A pipeline: one service `api` at `url`, one source `src` with the standard fields and
/// `body` for its other properties, flowing into a jsonl sink `out/src.jsonl`.
pub fn one_source(url: &str, body: &str) -> String {
    format!(
        "{}\nsource src from api {{\n  schedule = once\n{body}\n{FIELDS}\n}}\n\nsink lines = jsonl(\"out/src.jsonl\")\nflow src -> lines\n",
        service(url, "")
    )
}

/// Asserts `hay` contains `needle`, showing `hay` when not.
#[track_caller]
pub fn assert_contains(hay: &str, needle: &str) {
    assert!(
        hay.contains(needle),
        "expected to find {needle:?} in:\n{hay}"
    );
}
