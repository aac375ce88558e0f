//! Hostile input and faults on the sink and state side (issue 10), end to end through the
//! built binary: a disk that fills under a long run, a jsonl sink pointed at files that
//! are not its own, key values holding the key separator, a webhook receiver answering
//! without end, items rejected at every poll, and the data directory removed under a
//! run. Each test failed before its fix.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::cli::{assert_contains, service, sorted_ids, text, Pipeline, FIELDS};
use support::{records, wait_until, Fault, Paging, RunningHamstr, TestApi};

/// Longest a run may take to notice a fault and stop.
const NOTICE: Duration = Duration::from_secs(60);

/// A long run of `src` every second into the jsonl file `out/items.jsonl`.
fn every_second(url: &str) -> String {
    format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = every(1s)\n  records = $.data[*]\n{FIELDS}\n}}\nsink lines = jsonl(\"out/items.jsonl\")\nflow src -> lines\n",
        service(url, "")
    )
}

/// Waits for the run to stop on its own (its last words: `error: the run stopped: ...`);
/// its exit code.
#[track_caller]
fn stops_on_its_own(run: &mut RunningHamstr) -> Option<i32> {
    let said = |l: &str| l.starts_with("error: the run stopped");
    run.wait_for_stderr_line("the run to stop", said, NOTICE);
    let status = run.terminate(NOTICE).expect("the run ends");
    status.code()
}

/// A tmpfs mounted at a folder; unmounted when dropped, even when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the file system has no room left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    // The last partial block: byte by byte until nothing more fits.
    while f.write_all(&[0]).is_ok() {}
}

/// Item 2: sled keeps the first error of a failed write and stores nothing after it. A
/// long run went on fetching and delivering without committing (so every poll sent
/// everything again) while `state` said nothing was wrong; it stops now, naming the
/// cause, and once there is room again the next run picks up where it stopped.
#[test]
fn a_full_disk_stops_a_long_run_with_the_cause() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(20));
    api.serve("/items", Paging::wrapped("data"));
    let p = Pipeline::new(&every_second(&api.url()));
    let Some(_disk) = Tmpfs::mount(&p.data, "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut run = p.spawn_run(&["--no-watch"]);
    assert!(wait_until(
        || p.jsonl("out/items.jsonl").len() == 20,
        NOTICE
    ));

    let filler = p.data.join("filler");
    fill(&filler);
    // Enough new records that their commit needs pages the disk no longer has.
    api.push_records("/items", records::range(21, 3_000));
    let code = stops_on_its_own(&mut run);
    assert_eq!(code, Some(1), "{}", run.stderr());
    assert_contains(&run.stderr(), "No space left on device");

    std::fs::remove_file(&filler).unwrap();
    let again = p.run_once();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let lines = p.jsonl("out/items.jsonl");
    let mut ids = sorted_ids(&lines);
    ids.dedup();
    assert_eq!(ids.len(), 3_020, "every record arrived");
    // Nothing is left to send again: a run with nothing new appends nothing.
    p.run_ok();
    assert_eq!(p.jsonl("out/items.jsonl").len(), lines.len());
}

/// Item 19: the data directory removed under a running `hamstr run` went unnoticed:
/// the run went on writing into deleted files, exited 0 and kept nothing, and a second
/// run could start on the same path. The run notices its lock file gone and stops.
#[test]
fn a_data_directory_removed_under_a_run_stops_it() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(5));
    api.serve("/items", Paging::wrapped("data"));
    let p = Pipeline::new(&every_second(&api.url()));
    let mut run = p.spawn_run(&["--no-watch"]);
    assert!(wait_until(|| p.jsonl("out/items.jsonl").len() == 5, NOTICE));

    std::fs::remove_dir_all(&p.data).unwrap();
    let code = stops_on_its_own(&mut run);
    assert_eq!(code, Some(1), "{}", run.stderr());
    assert_contains(&run.stderr(), "was removed while this run held it");
    assert_contains(&run.stderr(), &p.data.display().to_string());
}

/// Item 3: a jsonl sink cut the last line of any file it opened. A file of someone
/// else's keeps every byte; the records follow it, each on a line of its own.
#[test]
fn a_jsonl_sink_never_cuts_a_file_it_did_not_write() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(3));
    api.serve("/items", Paging::wrapped("data"));
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  records = $.data[*]\n{FIELDS}\n}}\nsink lines = jsonl(\"notes.txt\")\nflow src -> lines\n",
        service(&api.url(), "")
    ));
    let theirs = "first note\nsecond note, with no newline";
    std::fs::write(p.path("notes.txt"), theirs).unwrap();

    p.run_ok();
    let after = std::fs::read_to_string(p.path("notes.txt")).unwrap();
    assert!(after.starts_with(theirs), "{after}");
    let ours: Vec<Value> = after[theirs.len()..]
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("a record per line"))
        .collect();
    assert_eq!(ours.len(), 3);
}

/// Item 3: a jsonl sink inside the data directory appended to the store's own files
/// (cutting them first). `check` refuses `.hamstr/`; `run` refuses a `--data-dir`.
#[test]
fn a_jsonl_sink_inside_the_data_directory_is_refused() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(3));
    api.serve("/items", Paging::wrapped("data"));
    let pipeline = |sink: &str| {
        format!(
            "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  records = $.data[*]\n{FIELDS}\n}}\nsink store = sled(\"items\")\n{sink}\nflow src -> store\n",
            service(&api.url(), "")
        )
    };
    let p = Pipeline::new(&pipeline(""));
    p.run_ok();
    // sled's configuration: a file of its store that no run writes again.
    let conf = p.data.join("state/conf");
    let before = std::fs::read(&conf).unwrap();

    p.rewrite(&pipeline(
        "sink lines = jsonl(\"data/state/conf\")\nflow src -> lines",
    ));
    let out = p.run_once();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(&text(&out), "inside the data directory");
    assert!(
        std::fs::read(&conf).unwrap() == before,
        "the store's file changed"
    );

    p.rewrite(&pipeline(
        "sink lines = jsonl(\".hamstr/state/db\")\nflow src -> lines",
    ));
    let out = p.cmd(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(&text(&out), "hamstr::protected_path");

    p.rewrite(&pipeline(""));
    assert_eq!(sorted_ids(&p.dump("store")).len(), 3);
}

/// Item 5: key parts were joined by U+001F, so `("x\u{1f}y", "z")` and `("x",
/// "y\u{1f}z")` were one key: a keyed sink held one of the two records, and the two
/// took turns as "changed", so every run sent both again.
#[test]
fn key_values_holding_the_separator_stay_two_keys() {
    let api = TestApi::start_blocking();
    api.set_records(
        "/items",
        vec![
            json!({"id": "x\u{1f}y", "part": "z", "n": 1}),
            json!({"id": "x", "part": "y\u{1f}z", "n": 2}),
        ],
    );
    api.serve("/items", Paging::wrapped("data"));
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  records = $.data[*]\n  key = [id, part]\n  fields {{\n    id   : string = $.id\n    part : string = $.part\n    n    : int    = $.n\n  }}\n}}\nsink store = sled(\"items\")\nsink lines = jsonl(\"out/items.jsonl\")\nflow src -> store, lines\n",
        service(&api.url(), "")
    ));
    p.run_ok();
    p.run_ok();
    let mut stored: Vec<i64> = p
        .dump("store")
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    stored.sort();
    assert_eq!(stored, [1, 2], "one record per key");
    assert_eq!(p.jsonl("out/items.jsonl").len(), 2, "nothing sent twice");
    let keys: Vec<Value> = p.dump("src").iter().map(|r| r["key"].clone()).collect();
    assert!(
        keys.contains(&json!({"id": "x\u{1f}y", "part": "z"})),
        "{keys:?}"
    );
}

/// Item 8: the webhook sink read its receiver's whole answer into memory. A receiver
/// answering with gigabytes cannot take the run past a memory limit: the records are
/// delivered and the run ends well.
#[test]
fn a_webhook_answer_without_end_is_read_only_in_part() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(3));
    api.serve("/items", Paging::wrapped("data"));
    api.fail_always("/hook", Fault::HugeChunked(8 << 30));
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  records = $.data[*]\n{FIELDS}\n}}\nsink hook = webhook(\"{}/hook\")\nflow src -> hook\n",
        service(&api.url(), ""),
        api.url()
    ));
    let bin = assert_cmd::cargo::cargo_bin("hamstr");
    // 1 GiB of address space: plenty for a run, far from the answer's 8 GiB.
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -v 1048576; exec \"$0\" run --once \"$1\" --data-dir \"$2\"")
        .arg(&bin)
        .arg(&p.file)
        .arg(&p.data)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    let out = c.output().unwrap();
    let said = format!(
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(api.hits("/hook"), 1, "{said}");
    assert!(!p.state().contains("waiting in its queue"));
}

/// Item 12: an item with no usable key was added to the rejected list again at every
/// poll. It has one entry however often it is seen.
#[test]
fn an_item_without_a_key_is_rejected_once_however_often_it_is_seen() {
    let api = TestApi::start_blocking();
    let mut items = records::make(2);
    let mut keyless = records::record(3);
    keyless.as_object_mut().unwrap().remove("id");
    items.push(keyless);
    let mut other = records::record(4);
    other["id"] = Value::Null;
    items.push(other);
    api.set_records("/items", items);
    api.serve("/items", Paging::wrapped("data"));
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  records = $.data[*]\n{FIELDS}\n}}\nsink store = sled(\"items\")\nflow src -> store\n",
        service(&api.url(), "")
    ));
    for _ in 0..3 {
        p.run_ok();
    }
    assert_eq!(p.rejected("src").len(), 2, "{:?}", p.rejected("src"));
    assert_eq!(p.dump("store").len(), 2);
}
