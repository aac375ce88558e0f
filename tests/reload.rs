//! Live reload end to end: `hamstr run` keeps running while its file is edited — a source
//! added, a schedule changed, the syntax broken and fixed, a sink removed, a source
//! renamed — and unchanged sources are never restarted, nothing is lost or duplicated.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{records, Fault, Order, Paging, TestApi};

fn pipeline(url: &str, b_every: &str, c_name: Option<&str>, with_lines: bool) -> String {
    let mut text = format!(
        r#"
service api {{ base_url = "{url}" }}

source a from api {{
  get = "/a"  schedule = every(1h)  records = $.data[*]  key = id
  fields {{ id : string = $.id  seq : int = $.seq }}
}}

source b from api {{
  get = "/b"  schedule = every({b_every})  records = $.data[*]  key = id
  paginate = page(param = "page", size_param = "per_page", size = 10)
  incremental {{ cursor = created_at  param = "since" }}
  fields {{ id : string = $.id  seq : int = $.seq  created_at : datetime = $.created_at }}
}}

sink sa = sled("a")
sink sb = sled("b")
flow a -> sa
flow b -> sb
"#
    );
    if with_lines {
        text.push_str("sink lines = jsonl(\"out/b.jsonl\")\nflow b -> lines\n");
    }
    if let Some(c) = c_name {
        text.push_str(&format!(
            "source {c} from api {{\n  get = \"/c\"  schedule = every(300ms)  records = $.data[*]  key = id\n  fields {{ id : string = $.id  seq : int = $.seq }}\n}}\nsink sc = sled(\"c\")\nflow {c} -> sc\n"
        ));
    }
    text
}

/// A `hamstr run` child that is killed when the test ends, failed assertions included,
/// so a failing test leaves no process behind.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    /// `hamstr run --data-dir DATA FILE`, watching the file, stdout discarded.
    fn run(bin: &Path, data: &Path, file: &Path, stderr: Stdio) -> KillOnDrop {
        KillOnDrop(
            Command::new(bin)
                .args(["run", "--data-dir"])
                .arg(data)
                .arg(file)
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }

    /// SIGTERM, as Ctrl-C would; waits for the exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        self.0.wait().unwrap()
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Saves like an editor: write a new file, rename it over the old one.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids_in(bin: &Path, file: &Path, data: &Path, sink: &str) -> Vec<String> {
    let out = Command::new(bin)
        .arg("dump")
        .arg(file)
        .arg(sink)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn edits_while_running_restart_only_what_changed() {
    let api = TestApi::start_blocking();
    api.serve("/a", Paging::wrapped("data"));
    api.set_records("/a", records::make(5));
    api.serve("/b", Paging::page(10));
    api.set_order("/b", Order::Ascending("created_at".into()));
    api.set_since_filter("/b", "since", "created_at");
    api.set_records("/b", records::make(30));
    api.serve("/c", Paging::wrapped("data"));
    api.set_records("/c", records::range(1000, 12));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hmr");
    let data = dir.path().join("data");
    save(&file, &pipeline(&api.url(), "300ms", None, true));
    let bin = assert_cmd::cargo::cargo_bin("hamstr");
    let mut child = KillOnDrop::run(&bin, &data, &file, Stdio::piped());
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let reloads = |lines: &Arc<Mutex<Vec<String>>>| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("reloaded:"))
            .count()
    };
    let mut next = 31u64;
    let mut grow = |api: &TestApi| {
        api.push_records("/b", records::range(next, 3));
        next += 3;
    };

    wait_until("b to collect", Duration::from_secs(20), || {
        api.hits("/b") >= 3
    });
    grow(&api);
    // 1. A new source.
    save(&file, &pipeline(&api.url(), "300ms", Some("c"), true));
    wait_until("the first reload", Duration::from_secs(20), || {
        reloads(&lines) >= 1
    });
    wait_until("c to collect", Duration::from_secs(20), || {
        api.hits("/c") >= 1
    });
    grow(&api);
    // 2. A schedule change, written in place (not by rename).
    std::fs::write(&file, pipeline(&api.url(), "200ms", Some("c"), true)).unwrap();
    wait_until("the second reload", Duration::from_secs(20), || {
        reloads(&lines) >= 2
    });
    // 3. Broken syntax: collection goes on.
    save(
        &file,
        &pipeline(&api.url(), "200ms", Some("c"), true).replace("sink sb", "sink sb sb"),
    );
    wait_until("the error report", Duration::from_secs(20), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("previous pipeline keeps running"))
    });
    let hits_while_broken = api.hits("/b");
    grow(&api);
    wait_until(
        "b to go on while the file is broken",
        Duration::from_secs(20),
        || api.hits("/b") >= hits_while_broken + 3,
    );
    // 4. Fixed, and the jsonl sink removed.
    save(&file, &pipeline(&api.url(), "200ms", Some("c"), false));
    wait_until("the third reload", Duration::from_secs(20), || {
        reloads(&lines) >= 3
    });
    let lines_after_removal = std::fs::read_to_string(dir.path().join("out/b.jsonl"))
        .unwrap()
        .lines()
        .count();
    grow(&api);
    // 5. A renamed source.
    save(&file, &pipeline(&api.url(), "200ms", Some("c2"), false));
    wait_until("the fourth reload", Duration::from_secs(20), || {
        reloads(&lines) >= 4
    });
    let c_hits = api.hits("/c");
    wait_until("c2 to collect", Duration::from_secs(20), || {
        api.hits("/c") > c_hits
    });
    grow(&api);
    let total_b = api.records("/b").len();
    let b_hits = api.hits("/b");
    wait_until("b to catch up", Duration::from_secs(20), || {
        api.hits("/b") >= b_hits + 2
    });
    std::thread::sleep(Duration::from_millis(500));

    // SIGTERM: a clean stop.
    let status = child.terminate();
    reader.join().unwrap();
    let log = lines.lock().unwrap().join("\n");
    assert!(status.success(), "exit {status:?}\n{log}");

    // The unchanged hourly source ran once: it was never restarted.
    assert_eq!(api.hits("/a"), 1, "{log}");
    let summaries: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("reloaded:"))
        .cloned()
        .collect();
    assert_eq!(
        summaries[0], "reloaded: +1 source, +1 sink, ~0, -0",
        "{log}"
    );
    assert_eq!(summaries[1], "reloaded: +0, ~1 source, -0", "{log}");
    assert_eq!(summaries[2], "reloaded: +0, ~0, -1 sink", "{log}");
    assert_eq!(summaries[3], "reloaded: +1 source, ~0, -1 source", "{log}");

    let b_ids = ids_in(&bin, &file, &data, "sb");
    let unique: BTreeSet<&String> = b_ids.iter().collect();
    assert_eq!(b_ids.len(), total_b, "every b record once\n{log}");
    assert_eq!(unique.len(), total_b);
    assert_eq!(ids_in(&bin, &file, &data, "sc").len(), 12);
    assert_eq!(ids_in(&bin, &file, &data, "sa").len(), 5);
    let lines_at_end = std::fs::read_to_string(dir.path().join("out/b.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        lines_at_end, lines_after_removal,
        "the removed sink got no more records"
    );
}

/// A source whose identity changes (here its path) starts from scratch, and only once the
/// old one is gone: the new one's first request carries no watermark of the old, and it
/// does not start while the old one's request is still in flight.
#[test]
fn a_changed_identity_starts_from_scratch_after_the_old_run_ends() {
    let api = TestApi::start_blocking();
    for path in ["/old", "/new"] {
        api.serve(path, Paging::page(10));
        api.set_order(path, Order::Ascending("created_at".into()));
        api.set_since_filter(path, "since", "created_at");
    }
    api.set_records("/old", records::make(10));
    // The same timestamps, other ids: all at or below the old source's watermark.
    let renamed: Vec<Value> = records::make(10)
        .into_iter()
        .map(|mut r| {
            r["id"] = Value::from(r["id"].as_str().unwrap().replacen('r', "n", 1));
            r
        })
        .collect();
    api.set_records("/new", renamed);

    let text = |path: &str| {
        format!(
            r#"
service api {{ base_url = "{}" }}
source s from api {{
  get = "{path}"  schedule = every(200ms)  records = $.data[*]  key = id
  paginate = page(param = "page", size_param = "per_page", size = 10)
  incremental {{ cursor = created_at  param = "since" }}
  fields {{ id : string = $.id  created_at : datetime = $.created_at }}
}}
sink store = sled("s")
flow s -> store
"#,
            api.url()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hmr");
    let data = dir.path().join("data");
    save(&file, &text("/old"));
    let bin = assert_cmd::cargo::cargo_bin("hamstr");
    let mut child = KillOnDrop::run(&bin, &data, &file, Stdio::null());
    // Two runs: the watermark is the newest record's.
    wait_until(
        "the old source to run twice",
        Duration::from_secs(20),
        || api.hits("/old") >= 2,
    );
    // Its next request hangs for a while; the edit lands while it is in flight.
    api.fail_always("/old", Fault::Delay(Duration::from_millis(1500)));
    let before = api.hits("/old");
    wait_until("a slow request in flight", Duration::from_secs(20), || {
        api.hits("/old") > before
    });
    save(&file, &text("/new"));
    wait_until("the new source to run", Duration::from_secs(20), || {
        api.hits("/new") >= 1
    });
    wait_until("every new record", Duration::from_secs(20), || {
        ids_in(&bin, &file, &data, "store")
            .iter()
            .filter(|id| id.starts_with('n'))
            .count()
            == 10
    });
    assert!(child.terminate().success());

    let old = api.requests_to("/old");
    let new = api.requests_to("/new");
    assert_eq!(
        new[0].query_value("since"),
        None,
        "the first request of a source collected from scratch carries no watermark"
    );
    let last_old = old.last().unwrap();
    assert!(
        new[0].at >= last_old.at + Duration::from_millis(1400),
        "the new source started while the old one's request was in flight"
    );
}

/// While a run holds the data directory, `dump` and `state` answer for the pipeline it
/// runs now: after a reload, a new sink can be dumped, a new source is listed and a
/// removed one is not.
#[test]
fn dump_and_state_answer_for_the_reloaded_pipeline() {
    let api = TestApi::start_blocking();
    for path in ["/b", "/c"] {
        api.serve(path, Paging::wrapped("data"));
    }
    api.set_records("/b", records::make(3));
    api.set_records("/c", records::range(100, 4));
    let text = |source: &str| {
        format!(
            r#"
service api {{ base_url = "{}" }}
source {source} from api {{
  get = "/{source}"  schedule = every(200ms)  records = $.data[*]  key = id
  fields {{ id : string = $.id }}
}}
sink store_{source} = sled("{source}")
flow {source} -> store_{source}
"#,
            api.url()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hmr");
    let data = dir.path().join("data");
    save(&file, &text("b"));
    let bin = assert_cmd::cargo::cargo_bin("hamstr");
    let mut child = KillOnDrop::run(&bin, &data, &file, Stdio::null());
    wait_until("b to run", Duration::from_secs(20), || api.hits("/b") >= 1);
    save(&file, &text("c"));
    wait_until("c to run", Duration::from_secs(20), || api.hits("/c") >= 2);
    let state = Command::new(&bin)
        .arg("state")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let state = String::from_utf8_lossy(&state.stdout).to_string();
    assert!(state.lines().any(|l| l == "c"), "{state}");
    assert!(!state.lines().any(|l| l == "b"), "{state}");
    assert_eq!(ids_in(&bin, &file, &data, "store_c").len(), 4);
    assert!(child.terminate().success());
}
