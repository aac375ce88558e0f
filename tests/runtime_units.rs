//! The runtime's units, sinks and shutdown (issue: the runtime rebuilt on its plan):
//! a source's state is tied to what it collects across restarts; the stdout sink's
//! reader leaving ends the run without queueing; a sink replaced by a reload is drained
//! once; a hanging sink cannot hold a shutdown past the grace; a stalled stdout reader
//! does not stop the rest of the pipeline.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::cli::{self as common, id_range, one_source, sorted_ids, Pipeline, FIELDS};
use support::{records, Paging, RunningHamstr, TestApi};

fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    support::wait_until(cond, limit)
}

fn hamstr_run(p: &Pipeline, args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("hamstr"));
    c.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .arg("run")
        .arg(&p.file)
        .arg("--data-dir")
        .arg(&p.data)
        .args(args);
    c
}

/// Kills a child on drop, so a failing assertion leaks no process.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spec §8: a source keeps its watermark and keys across a restart only while its
/// service URL, path, records path and key stay the same. Here `/b.json` holds records
/// older than everything `/a.json` had: with `/a.json`'s watermark kept, they were
/// skipped ("10 records, 0 new").
#[test]
fn a_path_changed_between_two_runs_collects_from_scratch() {
    let api = TestApi::start_blocking();
    api.set_records("/a.json", records::range(11, 10));
    api.serve("/a.json", Paging::page(100));
    api.set_records("/b.json", records::make(10));
    api.serve("/b.json", Paging::page(100));
    let body = |path: &str| {
        format!(
            "get = \"{path}\"\n  paginate = page()\n  records = $.data[*]\n  incremental {{ cursor = created_at }}"
        )
    };
    let p = Pipeline::new(&one_source(&api.url(), &body("/a.json")));
    p.run_ok();
    assert_eq!(sorted_ids(&p.jsonl("out/src.jsonl")), id_range(11, 10));
    p.rewrite(&one_source(&api.url(), &body("/b.json")));
    let out = p.run_once();
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("collecting from scratch"),
        "the reset is said: {text}"
    );
    let lines = p.jsonl("out/src.jsonl");
    assert_eq!(sorted_ids(&lines[10..]), id_range(1, 10), "{text}");
    // And the next run keeps the state it now has: nothing new.
    p.run_ok();
    assert_eq!(p.jsonl("out/src.jsonl").len(), 20);
}

/// A `stdout()` sink whose reader left (EPIPE) ends the run like any Unix tool; the page
/// it could not write is not committed and nothing is queued for a reader that is gone.
#[test]
fn a_closed_stdout_ends_the_run_without_queueing() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(3000));
    api.serve("/items", Paging::page(500));
    let text = format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page()\n  records = $.data[*]\n{FIELDS}\n}}\nsink console = stdout()\nflow src -> console\n",
        common::service(&api.url(), "")
    );
    let p = Pipeline::new(&text);
    let mut child = Killed(
        hamstr_run(&p, &["--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hamstr"),
    );
    {
        let mut reader = BufReader::new(child.0.stdout.take().expect("stdout"));
        let mut first = String::new();
        reader.read_line(&mut first).expect("one line");
        assert!(first.contains("r0000"), "{first}");
        // The reader leaves here: the pipe closes.
    }
    let exited = wait_until(Duration::from_secs(60), || {
        matches!(child.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "the run did not end after its reader left");
    let status = child.0.wait().expect("status");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let state = p.state();
    assert!(
        !state.contains("wait"),
        "nothing is queued for a reader that is gone:\n{state}"
    );
    // The next run, read to the end, gets every record: what was not written was not
    // committed.
    let out = p.run_once();
    let got: Vec<Value> = common::json_lines(&common::stdout(&out));
    assert_eq!(
        got.len(),
        3000 - already_written(&got),
        "{}",
        common::text(&out)
    );
}

/// Records the first run committed are those of pages written whole before the pipe
/// closed; with a 64 KiB pipe and a reader that read one line, that is at most the first
/// page. Whatever it was, the second run brings the rest: the sum is exact.
fn already_written(second_run: &[Value]) -> usize {
    let first_seq = second_run
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .min()
        .unwrap_or(1);
    (first_seq - 1) as usize
}

/// A POST receiver on 127.0.0.1 that records the ids it is sent; `delay` before each
/// answer, and `503` while `down` is set.
struct Hook {
    port: u16,
    ids: Arc<Mutex<Vec<String>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Hook {
    fn start(delay: Duration) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (ids2, down2) = (ids.clone(), down.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (ids, down) = (ids2.clone(), down2.clone());
                std::thread::spawn(move || serve_posts(conn, delay, &ids, &down));
            }
        });
        Hook { port, ids, down }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

/// Reads HTTP/1.1 POSTs off one connection (keep-alive) and answers each.
fn serve_posts(
    conn: std::net::TcpStream,
    delay: Duration,
    ids: &Mutex<Vec<String>>,
    down: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        let status = if down.load(std::sync::atomic::Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            if let Ok(Value::Array(recs)) = serde_json::from_slice::<Value>(&body) {
                let mut seen = ids.lock().unwrap();
                seen.extend(
                    recs.iter()
                        .filter_map(|r| r["id"].as_str().map(String::from)),
                );
            }
            "200 OK"
        };
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn webhook_pipeline(api: &TestApi, hook: &str, batch: u32) -> String {
    format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page()\n  records = $.data[*]\n{FIELDS}\n}}\nsink hook = webhook(\"{hook}\", batch = {batch})\nflow src -> hook\n",
        common::service(&api.url(), "")
    )
}

/// A sink a reload changes while pages wait in its durable queue: the replacement starts
/// only once the sink it replaces has stopped, so the queue has one reader and every
/// record arrives once (before, both drained the same queue at the same time).
#[test]
fn a_sink_replaced_while_its_queue_waits_delivers_each_record_once() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(60));
    api.serve("/items", Paging::page(10));
    let hook = Hook::start(Duration::from_millis(150));
    let p = Pipeline::new(&webhook_pipeline(&api, &hook.url(), 100));
    let mut run = RunningHamstr::start({
        let mut c = hamstr_run(&p, &[]);
        c.stdout(Stdio::null());
        c
    });
    // Every page fetched and queued (the receiver answers 503 so far).
    assert!(api.wait_for_hits_blocking("/items", 7, Duration::from_secs(30)));
    let queued = wait_until(Duration::from_secs(30), || p.state().contains("6 pages"));
    assert!(queued, "the pages wait in the sink's queue");
    // The receiver comes back, slowly, and the sink is changed at the same time.
    hook.down.store(false, std::sync::atomic::Ordering::SeqCst);
    p.rewrite(&webhook_pipeline(&api, &hook.url(), 7));
    let all = wait_until(Duration::from_secs(60), || hook.ids().len() >= 60);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = run.terminate(Duration::from_secs(30));
    let mut got = hook.ids();
    assert!(all, "not every record arrived: {}", got.len());
    got.sort();
    assert_eq!(got, id_range(1, 60), "each record once");
}

/// SIGTERM while a webhook receiver accepts and never answers: the page in flight gets
/// the 10 s grace, then waits in the durable queue; the process does not wait out the
/// webhook's timeouts and retries (minutes before).
#[test]
fn a_hanging_sink_cannot_hold_a_shutdown_past_the_grace() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(5));
    api.serve("/items", Paging::page(10));
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            held2.lock().unwrap().push(conn);
        }
    });
    let hook = format!("http://127.0.0.1:{port}/hook");
    let p = Pipeline::new(&webhook_pipeline(&api, &hook, 100));
    let mut run = RunningHamstr::start({
        let mut c = hamstr_run(&p, &[]);
        c.stdout(Stdio::null());
        c
    });
    assert!(wait_until(Duration::from_secs(30), || !held
        .lock()
        .unwrap()
        .is_empty()));
    let status = run.terminate(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the run must end within the grace (plus start-up), not after the webhook's retries"
    );
    let state = p.state();
    assert!(
        state.contains("1 page"),
        "the page waits in the queue:\n{state}"
    );
}

/// Two `stdout()` sinks whose reader never reads, on a runtime of two workers: their
/// blocked writes must not hold the async workers, so a third source into jsonl still
/// collects everything.
#[test]
fn a_stalled_stdout_reader_does_not_stop_the_other_sinks() {
    let api = TestApi::start_blocking();
    for path in ["/a", "/b", "/c"] {
        api.set_records(path, records::make(2000));
        api.serve(path, Paging::page(500));
    }
    let source = |name: &str, path: &str| {
        format!("source {name} from api {{\n  get = \"{path}\"\n  schedule = once\n  paginate = page()\n  records = $.data[*]\n{FIELDS}\n}}\n")
    };
    let text = format!(
        "{}\n{}{}{}sink one = stdout()\nsink two = stdout()\nsink lines = jsonl(\"out/c.jsonl\")\nflow a -> one\nflow b -> two\nflow c -> lines\n",
        common::service(&api.url(), ""),
        source("a", "/a"),
        source("b", "/b"),
        source("c", "/c"),
    );
    let p = Pipeline::new(&text);
    // Standard output is a pipe nobody reads: writes block once it holds 64 KiB.
    let mut run = RunningHamstr::start({
        let mut c = hamstr_run(&p, &[]);
        c.env("TOKIO_WORKER_THREADS", "2").stdout(Stdio::piped());
        c
    });
    let done = wait_until(Duration::from_secs(60), || {
        p.jsonl("out/c.jsonl").len() >= 2000
    });
    run.kill();
    assert!(
        done,
        "source c stalled behind the blocked stdout writes: {} lines",
        p.jsonl("out/c.jsonl").len()
    );
}
