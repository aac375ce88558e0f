//! The data directory on a disk that fills up: sled's own writes (records, queue, state)
//! fail with ENOSPC. The run fails with a clear error and commits nothing it could not
//! write; once there is room again the next run collects everything, exactly once.
//!
//! A real filesystem is filled: a 1 MiB tmpfs mounted over the data directory. Mounting
//! needs root (CI and the development machines run as root); where `mount` is refused
//! the test says so and passes without running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::cli::{assert_contains, id_range, service, sorted_ids, text, Pipeline, FIELDS};
use support::{records, Paging, TestApi};

const RECORDS: usize = 6_000;

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

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o"])
            .arg(format!("remount,size={size}"))
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A pipeline that collects `/items` of `api`, `size` a page, with `fields`, into a sled
/// sink.
fn into_sled(api: &TestApi, size: usize, fields: &str) -> Pipeline {
    api.serve("/items", Paging::page(size));
    Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page(size_param = \"per_page\", size = {size})\n  records = $.data[*]\n{fields}\n}}\nsink store = sled(\"items\")\nflow src -> store\n",
        service(&api.url(), "")
    ))
}

#[test]
fn a_full_data_directory_fails_the_run_and_loses_nothing_once_there_is_room() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(RECORDS));
    let p = into_sled(&api, 500, FIELDS);
    let Some(disk) = Tmpfs::mount(&p.data, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };

    let full = p.run_once();
    let said = text(&full);
    assert_eq!(full.status.code(), Some(1), "{said}");
    assert_contains(&said, "No space left on device");
    assert!(!said.contains("panicked"), "{said}");

    disk.resize("64m");
    // The first run with room may still find records of the failed run in the sink's
    // queue; the second must have nothing left to do.
    p.run_ok();
    p.run_ok();
    let stored = p.dump("store");
    assert_eq!(stored.len(), RECORDS, "every record once");
    assert_eq!(sorted_ids(&stored), id_range(1, RECORDS as u64));
    assert!(!p.state().contains("waiting in its queue"));
}

/// An event whose commit fails (the data directory's disk is full) is never answered
/// 200: the sender is told 503 (or finds the run gone, a full disk stops it), keeps the
/// event, and sends it again once there is room; it is then stored once.
#[test]
fn an_event_that_cannot_be_committed_is_not_acknowledged() {
    events_on_a_full_disk(64 * 1024);
}

/// Events larger than a quarter of sled's segment (512 KiB) are written by sled to files
/// of their own; on a full disk such a write fails in sled's background and its flush
/// never returns. The store gives up on it after `FLUSH_LIMIT` (20 s): the event is
/// answered 503, not held until the sender gives up, and later ones at once.
#[test]
fn a_large_event_on_a_full_disk_is_refused_not_held() {
    events_on_a_full_disk(200 * 1024);
}

/// Posts an event, fills the disk, posts five more (of `note` bytes each): none is
/// acknowledged and one at least is answered 503; with room again, a new run takes
/// them, each stored once.
fn events_on_a_full_disk(note: usize) {
    use support::events::{listener_url, Sender};
    let p = Pipeline::new(
        r#"
service pay { base_url = "http://127.0.0.1:9/unused" }
source payments from pay {
  receive { path = "/hooks/pay"  verify = token(value = "a-secret-token") }
  key = id
  fields { id : string = $.id  note : string = $.note }
}
sink store = sled("store")
flow payments -> store
"#,
    );
    let Some(_disk) = Tmpfs::mount(&p.data, "32m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let sender = Sender::new();
    let post = |url: &str, id: &str| {
        let body = serde_json::json!({"id": id, "note": "x".repeat(note)}).to_string();
        sender.post(
            &format!("{url}/hooks/pay"),
            &[
                ("content-type", "application/json".to_string()),
                ("X-Token", "a-secret-token".to_string()),
            ],
            body.as_bytes(),
        )
    };
    let mut run = p.spawn_run(&["--no-watch", "--listen", "127.0.0.1:0"]);
    let url = listener_url(&mut run);
    assert!(support::wait_until(
        || post(&url, "e1").is_ok_and(|(s, _)| s == 200),
        std::time::Duration::from_secs(30)
    ));

    // Fill what is left of the disk.
    let filler = p.data.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let mut answers = Vec::new();
    for i in 2..=6 {
        let answer = post(&url, &format!("e{i}"));
        answers.push(answer.as_ref().map(|(s, _)| *s).unwrap_or(0));
        assert!(
            !matches!(answer, Ok((200, _))),
            "e{i} acknowledged on a full disk: {answers:?}\n{}",
            run.stderr()
        );
    }
    assert!(answers.contains(&503), "{answers:?}\n{}", run.stderr());
    drop(run);

    // Room again: a new run takes the events the sender kept; each is stored once.
    std::fs::remove_file(&filler).unwrap();
    let mut run = p.spawn_run(&["--no-watch", "--listen", "127.0.0.1:0"]);
    let url = listener_url(&mut run);
    for i in 2..=6 {
        let id = format!("e{i}");
        assert!(support::wait_until(
            || post(&url, &id).is_ok_and(|(s, _)| s == 200),
            std::time::Duration::from_secs(30)
        ));
    }
    drop(run);
    let mut ids: Vec<String> = p
        .dump("store")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["e1", "e2", "e3", "e4", "e5", "e6"]);
}

/// Records larger than a quarter of sled's segment (512 KiB) are written by sled to
/// files of its own; on a full disk such a write fails in sled's background. The run
/// still fails with a clear error (its flushes wait at most `FLUSH_LIMIT`), and once
/// there is room every record is stored once.
#[test]
fn large_records_on_a_full_disk_fail_the_run_and_lose_nothing() {
    const N: usize = 40;
    let api = TestApi::start_blocking();
    let big: Vec<serde_json::Value> = records::make(N)
        .into_iter()
        .map(|mut r| {
            r["pad"] = serde_json::Value::String("x".repeat(200 * 1024));
            r
        })
        .collect();
    api.set_records("/items", big);
    let fields = FIELDS.replace("  }", "    pad        : string   = $.pad\n  }");
    let p = into_sled(&api, 5, &fields);
    let Some(disk) = Tmpfs::mount(&p.data, "3m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let full = p.run_once();
    let said = text(&full);
    assert_eq!(full.status.code(), Some(1), "{said}");
    assert!(
        said.contains("have not reached the disk") || said.contains("No space left on device"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");

    disk.resize("64m");
    p.run_ok();
    p.run_ok();
    let stored = p.dump("store");
    assert_eq!(stored.len(), N, "every record once");
    assert_eq!(sorted_ids(&stored), id_range(1, N as u64));
}
