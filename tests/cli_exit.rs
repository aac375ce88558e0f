//! Exit codes of every command as a user meets them (spec §9): 0 done, 1 the pipeline
//! has errors, 2 usage or I/O. A reader that closes stdout early (`| head -1`) is a
//! success, not a panic; an I/O error is 2 whatever its message says. And the allocator
//! options the binary sets hold from its start.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::cli::{
    self as common, assert_contains, hamstr, service, stderr, text, Pipeline, COMMAND_TIMEOUT,
    FIELDS,
};
use support::{records, Paging, TestApi};

/// More than a pipe holds (64 KiB on Linux) many times over, so `dump` is still
/// writing when its reader leaves.
const MANY: usize = 5_000;

/// One source `src` from `/items` at `url` into the sled sink `store`.
fn pipeline(url: &str) -> String {
    format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page(size_param = \"per_page\", size = 500)\n  records = $.data[*]\n{FIELDS}\n}}\nsink store = sled(\"items\")\nflow src -> store\n",
        service(url, "")
    )
}

/// A pipeline that collected `n` records from the fake API into the sled sink `store`.
fn collected(n: usize) -> (TestApi, Pipeline) {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(n));
    api.serve("/items", Paging::page(500));
    let p = Pipeline::new(&pipeline(&api.url()));
    p.run_ok();
    (api, p)
}

/// Waits for a process this test started, killing it when it outlives the timeout.
fn wait(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for hamstr") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hamstr did not exit within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dump_into_a_reader_that_leaves_after_one_line_exits_0_quietly() {
    let (_api, p) = collected(MANY);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hamstr"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .arg("dump")
        .arg(&p.file)
        .arg("store")
        .arg("--data-dir")
        .arg(&p.data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hamstr dump");
    let mut first = String::new();
    {
        // Dropped at the end of this block: the read end closes, like `head -1` exiting.
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut first).expect("read one line");
    }
    let code = wait(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let record: serde_json::Value = serde_json::from_str(&first).expect("a JSON record");
    assert!(record["id"].is_string(), "{first}");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");
}

/// A folder whose name holds `hamstr::`, as diagnostic codes do.
fn colons() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("hamstr::x");
    std::fs::create_dir(&inner).unwrap();
    (dir, inner)
}

#[test]
fn a_missing_file_is_an_io_error_whatever_its_path_says() {
    let (_dir, inner) = colons();
    let missing = inner.join("missing.hmr");
    for args in [
        &["check"][..],
        &["run", "--once"],
        &["dump", "store"],
        &["state"],
        &["graph"],
        &["fmt"],
    ] {
        let out = hamstr()
            .arg(args[0])
            .arg(&missing)
            .args(&args[1..])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", text(&out));
        assert_contains(&stderr(&out), "cannot read");
    }
}

#[test]
fn a_data_dir_that_cannot_be_opened_is_an_io_error_whatever_its_path_says() {
    let (_dir, inner) = colons();
    let file = inner.join("pipeline.hmr");
    // Never polled: the data directory is opened first.
    std::fs::write(&file, pipeline("http://127.0.0.1:9")).unwrap();
    let data = inner.join("data");
    std::fs::write(&data, "a file, not a folder").unwrap();
    let out = hamstr()
        .args(["run", "--once", "--no-watch"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "cannot open the data directory");
}

#[test]
fn a_pipeline_with_errors_exits_1_with_its_diagnostics() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check/unknown_service.hmr");
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    for args in [
        &["check"][..],
        &["run", "--once", "--data-dir", data],
        &["dump", "store", "--data-dir", data],
        &["state", "--data-dir", data],
        &["graph"],
    ] {
        let out = hamstr()
            .arg(args[0])
            .arg(&file)
            .args(&args[1..])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", text(&out));
        assert_contains(&stderr(&out), "hamstr::unknown_service");
    }
    let json = hamstr()
        .args(["check", "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));
    assert_contains(&common::stdout(&json), "hamstr::unknown_service");
    let broken = tempfile::tempdir().unwrap();
    let unparsable = broken.path().join("broken.hmr");
    std::fs::write(&unparsable, "source {\n").unwrap();
    let fmt = hamstr().arg("fmt").arg(&unparsable).output().unwrap();
    assert_eq!(fmt.status.code(), Some(1), "{}", text(&fmt));
}

#[test]
fn each_commands_usage_errors_exit_2() {
    let (_api, p) = collected(3);
    let file = p.file.to_str().unwrap();
    let data = p.data.to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let demo_dir = tempfile::tempdir().unwrap();
    let demo_dir = demo_dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["check"], "required"),
        (&["check", file, "--format", "yaml"], "invalid value"),
        (&["run", file, "--bogus"], "unexpected argument"),
        (&["dump", file], "required"),
        (
            &["dump", file, "nothing", "--data-dir", data],
            "no sled sink, aggregate or source named `nothing`",
        ),
        (
            &["dump", file, "store", "--rejected", "--data-dir", data],
            "`--rejected` needs a source",
        ),
        (
            &["state", file, "--reset", "nothing", "--data-dir", data],
            "no source named `nothing`",
        ),
        (&["graph", file, "--format", "png"], "invalid value"),
        (&["fmt"], "required"),
        (&["demo", "--port", "many"], "invalid value"),
        // Its port taken: an I/O error, told as one.
        (
            &["demo", "--port", &port, "--data-dir", demo_dir],
            "cannot listen on",
        ),
        (&["bogus"], "unrecognized subcommand"),
    ];
    for (args, says) in cases {
        let out = hamstr().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", text(&out));
        let err = stderr(&out);
        assert_contains(&err, "error:");
        assert_contains(&err, says);
    }
}

/// The allocator options hamstr sets, as mimalloc itself prints them when it starts:
/// before its first arena is reserved, so they hold for every allocation.
#[test]
fn allocator_options_hold_from_the_start_unless_the_user_set_them() {
    let options = |env: &[(&str, &str)]| -> Vec<String> {
        let out = hamstr()
            .arg("--version")
            .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
            .env_remove("MIMALLOC_PURGE_DELAY")
            .env("MIMALLOC_VERBOSE", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        stderr(&out)
            .lines()
            .filter(|l| {
                l.starts_with("option 'arena_eager_commit'")
                    || l.starts_with("option 'purge_delay'")
            })
            .map(|l| l.trim().to_string())
            .collect()
    };
    // Once each: mimalloc started once, with hamstr's values already in place.
    assert_eq!(
        options(&[]),
        ["option 'arena_eager_commit': 0", "option 'purge_delay': 5"]
    );
    assert_eq!(
        options(&[
            ("MIMALLOC_ARENA_EAGER_COMMIT", "1"),
            ("MIMALLOC_PURGE_DELAY", "7")
        ]),
        ["option 'arena_eager_commit': 1", "option 'purge_delay': 7"]
    );
}
