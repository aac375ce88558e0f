//! The `exec` sink with real programs (POSIX `sh` scripts in the pipeline's folder) run by
//! the built binary, with the fake API as source: records as JSON lines on standard
//! input, `HAMSTR_SINK`/`HAMSTR_SOURCE`, a program that fails, hangs past its timeout or
//! is killed is run again from the sink's queue, in order; nothing is lost across a
//! restart; its standard error is logged with secrets masked.

mod support;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::cli::{ids, read_jsonl, stderr, text, Pipeline};
use support::{records, wait_until, Paging, TestApi};

/// The fake API serving `n` records at `/orders`, pages of 10.
fn api_with(n: usize) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(n));
    api.serve("/orders", Paging::page(10));
    api
}

/// One keyed source `orders` on `api` into `sink announce = SINK`.
fn pipeline(api: &TestApi, sink: &str, schedule: &str) -> Pipeline {
    Pipeline::new(&format!(
        r#"
service api {{ base_url = "{url}" }}

source orders from api {{
  get      = "/orders"
  schedule = {schedule}
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  key      = id
  fields {{
    id  : string = $.id
    seq : int    = $.seq
  }}
}}

sink announce = {sink}

flow orders -> announce
"#,
        url = api.url()
    ))
}

/// Writes an executable script into the pipeline's folder.
fn script(p: &Pipeline, name: &str, body: &str) {
    let path = p.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The records the script appended to `delivered.jsonl`, in order.
fn delivered(p: &Pipeline) -> Vec<Value> {
    read_jsonl(&p.path("delivered.jsonl"))
}

fn lines(p: &Pipeline, file: &str) -> Vec<String> {
    std::fs::read_to_string(p.path(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Reads the batch, fails its first two runs (saying why on stderr, with the token it
/// was given as its first argument), then appends the batch and its environment.
const FAILS_TWICE: &str = r#"
n=$(cat runs 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > runs
input=$(cat)
if [ "$n" -le 2 ]; then
  echo "run $n refused: the receiver rejected token $1" >&2
  exit 3
fi
printf '%s\n' "$input" >> delivered.jsonl
echo "$HAMSTR_SINK $HAMSTR_SOURCE $(printf '%s\n' "$input" | wc -l | tr -d ' ')" >> env.log
"#;

#[test]
fn a_program_that_fails_twice_is_run_again_until_it_succeeds() {
    let api = api_with(25);
    let p = pipeline(
        &api,
        r#"exec(["./announce.sh", env("HOOK_TOKEN")], batch = 4, timeout = 30s)"#,
        "once",
    );
    script(&p, "announce.sh", FAILS_TWICE);
    let mut cmd = support::cli::hamstr_process();
    cmd.args(["run", "--no-watch", "--data-dir"])
        .arg(&p.data)
        .arg(&p.file)
        .env("HOOK_TOKEN", "tok-SeCrEt-4711");
    let mut run = support::RunningHamstr::start(cmd);
    let all = wait_until(|| delivered(&p).len() >= 25, Duration::from_secs(60));
    let status = run.terminate(Duration::from_secs(20));
    let log = run.stderr();
    assert!(
        all,
        "not everything was delivered: {:?}\n{log}",
        ids(&delivered(&p))
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");

    assert_eq!(
        ids(&delivered(&p)),
        records::ids(&records::make(25)),
        "each record once, in order\n{log}"
    );
    assert_eq!(delivered(&p)[0]["seq"], 1);
    // Pages of 10 in batches of at most 4; the first batch ran three times.
    assert_eq!(lines(&p, "runs"), ["10"], "2 refusals + 8 batches");
    let env: Vec<String> = lines(&p, "env.log");
    assert_eq!(
        env,
        [4, 4, 2, 4, 4, 2, 4, 1].map(|n| format!("announce orders {n}")),
        "HAMSTR_SINK, HAMSTR_SOURCE and the batch sizes"
    );
    assert!(log.contains("exited with status 3"), "{log}");
    assert!(log.contains("the program said"), "{log}");
    assert!(
        log.contains("run 1 refused: the receiver rejected token ***"),
        "stderr logged, its secret masked:\n{log}"
    );
    assert!(!log.contains("SeCrEt"), "a secret in the log:\n{log}");
}

#[test]
fn a_program_past_its_timeout_is_killed_with_what_it_started() {
    let api = api_with(5);
    let p = pipeline(&api, r#"exec(["./announce.sh"], timeout = 1s)"#, "once");
    // The first run starts a child of its own and waits for it, past the timeout.
    script(
        &p,
        "announce.sh",
        r#"
if [ ! -e hung.pid ]; then
  sleep 300 &
  echo "$!" > hung.pid
  wait
fi
cat >> delivered.jsonl
"#,
    );
    let mut run = p.spawn_run(&["--no-watch"]);
    let all = wait_until(|| delivered(&p).len() >= 5, Duration::from_secs(60));
    let status = run.terminate(Duration::from_secs(20));
    let log = run.stderr();
    assert!(all, "not delivered:\n{log}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert_eq!(
        ids(&delivered(&p)),
        records::ids(&records::make(5)),
        "{log}"
    );
    assert!(
        log.contains("ran past its timeout of 1s; its process group was killed"),
        "{log}"
    );
    // The grandchild went with its group (once reaped by whoever adopted it).
    let pid = lines(&p, "hung.pid")[0].clone();
    assert!(
        wait_until(|| !alive(&pid), Duration::from_secs(10)),
        "the program's child {pid} still runs"
    );
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[test]
fn a_program_killed_by_a_signal_is_run_again() {
    let api = api_with(12);
    let p = pipeline(&api, r#"exec(["./announce.sh"], batch = 5)"#, "once");
    // The first run waits to be killed (by the test, as an OOM killer would).
    script(
        &p,
        "announce.sh",
        r#"
if [ ! -e victim.pid ]; then
  echo "$$" > victim.pid
  exec sleep 300
fi
cat >> delivered.jsonl
"#,
    );
    let mut run = p.spawn_run(&["--no-watch"]);
    assert!(
        wait_until(
            || !lines(&p, "victim.pid").is_empty(),
            Duration::from_secs(60)
        ),
        "the program did not start:\n{}",
        run.stderr()
    );
    let pid = lines(&p, "victim.pid")[0].clone();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let all = wait_until(|| delivered(&p).len() >= 12, Duration::from_secs(60));
    let status = run.terminate(Duration::from_secs(20));
    let log = run.stderr();
    assert!(all, "not delivered:\n{log}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert_eq!(
        ids(&delivered(&p)),
        records::ids(&records::make(12)),
        "{log}"
    );
    assert!(log.contains("was killed by signal 9 (SIGKILL)"), "{log}");
}

/// While `down` exists the program fails; records wait in the queue through a `--once`
/// that exits 1 and a run killed with SIGKILL; once it works, everything arrives, the
/// queued pages first, with the source they came from.
#[test]
fn nothing_is_lost_across_restarts_while_the_program_fails() {
    let api = api_with(25);
    let p = pipeline(&api, r#"exec(["./announce.sh"], batch = 10)"#, "once");
    script(
        &p,
        "announce.sh",
        r#"
input=$(cat)
echo "attempt" >> attempts.log
if [ -e down ]; then
  echo "cannot reach the announcer" >&2
  exit 1
fi
printf '%s\n' "$input" >> delivered.jsonl
echo "$HAMSTR_SOURCE" >> env.log
"#,
    );
    std::fs::write(p.path("down"), "").unwrap();

    let out = p.run_once();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("sink announce: 3 pages still wait"),
        "{}",
        text(&out)
    );
    let state = p.state();
    assert!(state.contains("3 pages waiting in its queue"), "{state}");
    assert!(state.contains("cannot reach the announcer"), "{state}");

    // More records; a long run that cannot deliver either, killed mid-way.
    api.push_records("/orders", records::range(26, 10));
    let mut run = p.spawn_run(&["--no-watch"]);
    assert!(
        wait_until(
            || lines(&p, "attempts.log").len() >= 3,
            Duration::from_secs(60)
        ),
        "the program did not run:\n{}",
        run.stderr()
    );
    run.kill();
    assert!(delivered(&p).is_empty());

    std::fs::remove_file(p.path("down")).unwrap();
    let out = p.run_once();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = ids(&delivered(&p));
    // At least once: a page whose commit the kill cut short may come twice; the first
    // time each record arrives is in order.
    let mut first = got.clone();
    let mut seen = std::collections::HashSet::new();
    first.retain(|id| seen.insert(id.clone()));
    assert_eq!(first, records::ids(&records::make(35)), "{got:?}");
    assert!(lines(&p, "env.log").iter().all(|s| s == "orders"));
    let state = p.state();
    assert!(
        state.contains("sink announce: its queue is empty"),
        "{state}"
    );
}

#[test]
fn a_missing_program_is_a_clear_error_and_the_records_wait() {
    let api = api_with(3);
    let p = pipeline(&api, r#"exec(["./nowhere.sh"])"#, "once");
    let out = p.run_once();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sink `announce` (exec ./nowhere.sh): cannot start the program"),
        "{err}"
    );
    assert!(!Path::new(&p.path("delivered.jsonl")).exists());
}
