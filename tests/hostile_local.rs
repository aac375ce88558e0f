//! Issue 10 on the command side, and what another local user can reach: the control
//! socket under large answers and hostile clients, pipeline files that are not regular
//! files, `check` of a generated file, readers that do not keep a run from starting,
//! secrets in what is printed and stored, the socket's fallback folder, the demo's
//! folder, and the modes of what a run creates. Tests that need a second user create
//! one when run as root, and skip with a note otherwise.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::cli::{
    assert_contains, hamstr, hamstr_process, service, stderr, stdout, text, Pipeline, FIELDS,
};
use support::{closed_origin, records, wait_until, Paging, Reply, RunningHamstr, TestApi};

const LIMIT: Duration = Duration::from_secs(60);

/// One source `src` on `/items` (pages of 100) into a sled sink `store`, every hour.
fn collecting(api: &TestApi, n: usize) -> Pipeline {
    api.set_records("/items", records::make(n));
    api.serve("/items", Paging::page(100));
    Pipeline::new(&collecting_text(api))
}

/// A long run of `p` once its first poll is stored and its socket answers.
fn running(p: &Pipeline, api: &TestApi, n: usize) -> RunningHamstr {
    let run = p.spawn_run(&["--no-watch"]);
    assert!(api.wait_for_hits_blocking("/items", 1, LIMIT), "no poll");
    let stored = format!("{n} records");
    assert!(
        wait_until(|| state_now(p).contains(&stored), LIMIT),
        "never stored {n}"
    );
    run
}

/// `hamstr state`'s output, whatever its exit code.
fn state_now(p: &Pipeline) -> String {
    let out = p.cmd(&["state", "--data-dir"]).arg(&p.data).output();
    out.map(|o| stdout(&o)).unwrap_or_default()
}

/// A process's resident size now (`VmRSS`) or at its peak (`VmHWM`), in bytes.
fn rss(pid: u32, which: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with(which)).expect(which);
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

// ---- 13: a large dump over the socket ---------------------------------------------------

/// 16,000 records of 5 kB (80 MB) from `/big` in the sled sink `store`, every hour.
fn big_store(api: &TestApi) -> Pipeline {
    let pad = "p".repeat(5_000);
    let big: Vec<Value> = (1..=BIG)
        .map(|i| json!({"id": format!("r{i:05}"), "pad": pad}))
        .collect();
    api.set_records("/big", big);
    api.serve("/big", Paging::page(1000));
    Pipeline::new(&format!(
        "{}\nsource big from api {{\n  get = \"/big\"\n  schedule = every(1h)\n  paginate = page(size_param = \"per_page\", size = 1000)\n  records = $.data[*]\n  key = id\n  fields {{\n    id  : string = $.id\n    pad : string = $.pad\n  }}\n}}\nsink store = sled(\"big\")\nflow big -> store\n",
        service(&api.url(), "")
    ))
}

const BIG: usize = 16_000;

#[test]
fn a_large_dump_asked_of_a_run_is_streamed_not_held() {
    let api = TestApi::start_blocking();
    let p = big_store(&api);
    let run = p.spawn_run(&["--no-watch"]);
    let stored = format!("{BIG} records");
    assert!(
        wait_until(|| state_now(&p).contains(&stored), Duration::from_secs(240)),
        "never stored {BIG}"
    );
    // The peak so far is the collection's: start it again from what is resident now.
    std::fs::write(format!("/proc/{}/clear_refs", run.id()), "5").expect("reset the peak");
    let before = rss(run.id(), "VmRSS:");
    let out = p
        .cmd(&["dump", "store", "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), BIG);
    // 80 MB of records went out; the run holds a part of them at a time.
    let grew = rss(run.id(), "VmHWM:").saturating_sub(before);
    assert!(grew < 40 << 20, "the run's peak grew by {} MiB", grew >> 20);
}

// ---- 14: `check` of a generated file -----------------------------------------------------

#[test]
fn check_of_thousands_of_misspelled_names_is_bounded() {
    let n = 12_000;
    let mut text = "service api { base_url = \"http://127.0.0.1:9\" }\nsource src from api {\n  get = \"/x\"\n  schedule = once\n  records = $[*]\n  fields { id : string = $.id }\n}\n".to_string();
    for i in 0..n {
        text.push_str(&format!("sink sink_{i:05} = sled(\"t{i}\")\n"));
    }
    for i in 0..n {
        text.push_str(&format!("flow src -> sinc_{i:05}\n"));
    }
    let p = Pipeline::new(&text);
    // Held to 60 s of CPU; unbounded, 144 million comparisons take longer than that.
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -t 60; exec \"$0\" check \"$1\" --format json"])
        .arg(assert_cmd::cargo::cargo_bin("hamstr"))
        .arg(&p.file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let text = report.to_string();
    assert_contains(&text, "sinc_11999");
    assert_contains(&text, "did you mean `sink_00000`?");
}

// ---- 15: the control server under hostile clients ----------------------------------------

/// Connects to the socket of a run on a short data directory path.
fn connect(p: &Pipeline) -> UnixStream {
    UnixStream::connect(p.data.join("control.sock")).expect("connect")
}

#[test]
fn an_endless_request_line_is_cut_off_and_the_run_answers_on() {
    let api = TestApi::start_blocking();
    let p = collecting(&api, 3);
    let _run = running(&p, &api, 3);
    let mut s = connect(&p);
    s.set_write_timeout(Some(LIMIT)).unwrap();
    let junk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match s.write(&junk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "the run read 64 MiB of one request line");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert_contains(&reply, "longer than");
    assert_contains(&p.state(), "records seen: 3");
}

#[test]
fn idle_connections_beyond_the_cap_are_told_the_run_is_busy() {
    let api = TestApi::start_blocking();
    let p = collecting(&api, 3);
    let _run = running(&p, &api, 3);
    let idle: Vec<UnixStream> = (0..40).map(|_| connect(&p)).collect();
    let last = idle.last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(last)
        .read_line(&mut line)
        .expect("an answer, not silence");
    assert_contains(&line, "busy");
    drop(idle);
    assert_contains(&p.state(), "records seen: 3");
}

#[test]
fn the_control_server_outlives_running_out_of_file_descriptors() {
    let api = TestApi::start_blocking();
    let p = collecting(&api, 3);
    let mut run = running(&p, &api, 3);
    let pid = run.id() as libc::pid_t;
    let open = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count() as u64
    };
    let limit = |new: Option<libc::rlim_t>| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads the run's limit into `lim`, a valid rlimit.
        let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) };
        assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
        let old = lim.rlim_cur;
        if let Some(n) = new {
            lim.rlim_cur = n;
            // SAFETY: a valid rlimit for a process of ours, within its hard limit.
            let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
            assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
        }
        old
    };
    let given = limit(Some(open() + 2));
    let waiting: Vec<UnixStream> = (0..20).map(|_| connect(&p)).collect();
    run.wait_for_stderr_line("a failed accept", |l| l.contains("accept failed"), LIMIT);
    drop(waiting);
    limit(Some(given));
    assert_contains(&p.state(), "records seen: 3");
}

// ---- 16: a pipeline file that is not a regular file -----------------------------------

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn check_refuses_a_fifo_instead_of_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.hmr");
    mkfifo(&fifo);
    for file in [fifo.as_path(), Path::new("/dev/zero")] {
        let out = hamstr()
            .arg("check")
            .arg(file)
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert_contains(&stderr(&out), "not a regular file");
    }
}

#[test]
fn a_reload_refuses_a_fifo_and_goes_on_reloading() {
    let api = TestApi::start_blocking();
    let p = collecting(&api, 3);
    let mut run = p.spawn_run(&[]);
    assert!(api.wait_for_hits_blocking("/items", 1, LIMIT), "no poll");
    let fifo = p.path("new.hmr");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &p.file).unwrap();
    run.wait_for_stderr_line("the refusal", |l| l.contains("not a regular file"), LIMIT);
    let good = p.path("good.hmr");
    let source = collecting_text(&api).replace("every(1h)", "every(2h)");
    std::fs::write(&good, source).unwrap();
    std::fs::rename(&good, &p.file).unwrap();
    run.wait_for_stderr_line("a reload", |l| l.starts_with("reloaded:"), LIMIT);
}

fn collecting_text(api: &TestApi) -> String {
    format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = every(1h)\n  paginate = page(size_param = \"per_page\", size = 100)\n  records = $.data[*]\n{FIELDS}\n}}\nsink store = sled(\"items\")\nflow src -> store\n",
        service(&api.url(), "")
    )
}

// ---- 18: readers do not keep a run from starting ----------------------------------------

#[test]
fn runs_start_while_state_is_asked_in_a_loop() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let api = TestApi::start_blocking();
    let p = collecting(&api, 3);
    p.rewrite(&collecting_text(&api).replace("every(1h)", "once"));
    p.run_ok();
    let (stop, asked) = (AtomicBool::new(false), AtomicUsize::new(0));
    let ask = || {
        let mut failed = Vec::new();
        while !stop.load(Relaxed) {
            let out = p
                .cmd(&["state", "--data-dir"])
                .arg(&p.data)
                .output()
                .unwrap();
            asked.fetch_add(1, Relaxed);
            if out.status.code() != Some(0) {
                failed.push(text(&out));
            }
        }
        failed
    };
    std::thread::scope(|s| {
        let askers: Vec<_> = (0..3).map(|_| s.spawn(ask)).collect();
        // At least six runs, and enough that they start among a dozen `state` calls.
        let mut runs = Vec::new();
        while runs.len() < 6 || (asked.load(Relaxed) < 12 && runs.len() < 40) {
            runs.push(p.run_once());
        }
        stop.store(true, Relaxed);
        for out in &runs {
            assert_eq!(out.status.code(), Some(0), "a run refused:\n{}", text(out));
        }
        assert!(asked.load(Relaxed) >= 12, "state was asked {asked:?} times");
        for asker in askers {
            let failed = asker.join().unwrap();
            assert!(failed.is_empty(), "state failed:\n{}", failed.join("\n"));
        }
    });
}

#[test]
fn a_run_waits_for_a_dump_reading_the_store() {
    let api = TestApi::start_blocking();
    let p = big_store(&api);
    p.run_ok();
    let mut dump = hamstr_process();
    dump.args(["dump"])
        .arg(&p.file)
        .args(["store", "--data-dir"])
        .arg(&p.data)
        .stderr(std::process::Stdio::piped());
    let dump = dump.spawn().unwrap();
    // Reading 80 MB takes the dump a while; `/proc/locks` shows when it holds the store.
    let holds_store = |pid: u32| {
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"FLOCK") && f.get(4) == Some(&pid.to_string().as_str())
        })
    };
    assert!(
        wait_until(|| holds_store(dump.id()), LIMIT),
        "the dump never held the store"
    );
    let run = p.run_once();
    assert_eq!(run.status.code(), Some(0), "a run refused:\n{}", text(&run));
    let dump = dump.wait_with_output().unwrap();
    assert_eq!(dump.status.code(), Some(0), "{}", text(&dump));
}

// ---- 20: secrets in what is printed and stored -----------------------------------------

#[test]
fn secrets_in_urls_and_echoed_credentials_are_masked() {
    let api = TestApi::start_blocking();
    let path_token = "t0ken-in-the-base-path";
    api.set_records(&format!("/{path_token}/orders"), records::make(3));
    api.serve(&format!("/{path_token}/orders"), Paging::page(5));
    api.set_handler(&format!("/{path_token}/refused"), |req| {
        let auth = req.header("authorization").unwrap_or_default().to_string();
        Reply::error(401, &format!("credentials {auth} are not valid here"))
    });
    let hook_token = "h00k-t0ken-in-the-path";
    let hook = format!("{}/services/T01/B02/{hook_token}", closed_origin());
    let pg_password = "pg-passw0rd-in-the-query";
    let pg = format!(
        "postgres://app@{}/shop?password={pg_password}",
        &closed_origin()[7..]
    );
    let (user, password) = ("collector", "basic-passw0rd");
    let basic = "Y29sbGVjdG9yOmJhc2ljLXBhc3N3MHJk"; // base64("collector:basic-passw0rd")
    let source = |name: &str, path: &str| {
        format!("source {name} from api {{\n  get = \"{path}\"\n  schedule = once\n  records = $.data[*]\n{FIELDS}\n}}\n")
    };
    let p = Pipeline::new(&format!(
        "service api {{\n  base_url = env(\"HMR_API\")\n  auth = basic(env(\"HMR_USER\"), env(\"HMR_PASS\"))\n  retry {{ attempts = 1 }}\n}}\n{}{}sink hook = webhook(env(\"HMR_HOOK\"))\nsink db = postgres(\"{pg}\", table = \"orders\")\nflow orders -> hook, db\nflow refused -> hook\n",
        source("orders", "/orders"),
        source("refused", "/refused"),
    ));
    let env = [
        ("HMR_API", format!("{}/{path_token}", api.url())),
        ("HMR_USER", user.to_string()),
        ("HMR_PASS", password.to_string()),
        ("HMR_HOOK", hook),
    ];
    let with_env = |args: &[&str]| {
        let mut c = p.cmd(args);
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    let mut shown = String::new();
    let graph = with_env(&["graph"]).output().unwrap();
    assert_eq!(graph.status.code(), Some(0), "{}", text(&graph));
    shown.push_str(&text(&graph));
    let run = with_env(&["run", "--once", "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    shown.push_str(&text(&run));
    assert!(
        !api.requests_to(&format!("/{path_token}/refused"))
            .is_empty(),
        "{}",
        text(&run)
    );
    let state = with_env(&["state", "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    shown.push_str(&text(&state));
    assert_contains(&shown, "401");
    for secret in [path_token, hook_token, pg_password, password, basic] {
        assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
        for file in files_under(&p.data) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "`{secret}` stored in {}", file.display());
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// ---- 21, 22, 23: what another local user can reach ---------------------------------------

/// Two users for a test, created when running as root; `None` (the test skips, saying
/// so) otherwise.
fn other_users() -> Option<[(u32, u32); 2]> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching users needs root");
        return None;
    }
    let mut ids = [(0, 0); 2];
    for (i, name) in ["hamstr-t-one", "hamstr-t-two"].iter().enumerate() {
        let id = |flag: &str| -> Option<u32> {
            let out = std::process::Command::new("id")
                .args([flag, name])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        if id("-u").is_none() {
            let made = std::process::Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ])
                .status();
            if !made.is_ok_and(|s| s.success()) {
                eprintln!("skipped: cannot create user {name}");
                return None;
            }
        }
        ids[i] = (id("-u")?, id("-g")?);
    }
    Some(ids)
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

#[test]
fn another_user_cannot_squat_or_answer_for_the_socket_of_a_long_data_dir() {
    use std::os::unix::process::CommandExt;
    let Some([me, squatter]) = other_users() else {
        return;
    };
    let api = TestApi::start_blocking();
    let mut p = collecting(&api, 3);
    std::fs::set_permissions(p.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = p.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let long = p.path(&format!("{}/{}", "d".repeat(60), "e".repeat(60)));
    std::fs::create_dir_all(&long).unwrap();
    for d in [long.parent().unwrap(), long.as_path()] {
        chown(d, me);
    }
    p.data = long.join("data");
    // Where a socket for this data directory used to be: a name anyone could compute.
    let full = std::fs::canonicalize(&long).unwrap().join("data");
    let id = xxhash_rust::xxh3::xxh3_64(full.as_os_str().as_encoded_bytes());
    let squat = tmp.join(format!("hamstr-{id:016x}.sock"));
    let listener = std::os::unix::net::UnixListener::bind(&squat).unwrap();
    chown(&squat, squatter);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(br#"{"Ok":"forged\n"}"#);
        }
    });
    let as_me = |mut c: std::process::Command| {
        c.uid(me.0).gid(me.1).env("TMPDIR", &tmp);
        c
    };
    let mut run_cmd = hamstr_process();
    run_cmd
        .args(["run", "--no-watch"])
        .arg(&p.file)
        .arg("--data-dir")
        .arg(&p.data);
    let mut run = RunningHamstr::start(as_me(run_cmd));
    let state = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hamstr"));
        c.env("NO_COLOR", "1")
            .arg("state")
            .arg(&p.file)
            .arg("--data-dir")
            .arg(&p.data);
        as_me(c).output().unwrap()
    };
    assert!(
        wait_until(|| stdout(&state()).contains("records seen: 3"), LIMIT),
        "no answer from the run: {}\n{}",
        text(&state()),
        run.stderr()
    );
    // The socket is in a folder of the run's own, which no one else may enter.
    let record = std::fs::read_to_string(p.data.join("control.path")).unwrap();
    let folder = Path::new(&record).parent().unwrap().to_path_buf();
    let meta = std::fs::metadata(&folder).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (me.0, 0o700));
    // The run does not answer another user (root, here).
    let mut s = UnixStream::connect(&record).unwrap();
    let _ = s.write_all(b"\"State\"\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(
        !reply.contains("records seen"),
        "answered another user: {reply}"
    );
    let status = run.terminate(LIMIT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", run.stderr());
    assert!(!folder.exists(), "the socket's folder outlived the run");
    assert!(!p.data.join("control.path").exists());
}

#[test]
fn the_demo_does_not_write_through_a_link_in_the_temporary_folder() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // The link a local user can put where the demo's folder is named after its pid.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ln -s \"$1\" \"$TMPDIR/hamstr-demo-$$\" && exec \"$0\" demo --port 0 --seconds 2",
        ])
        .arg(assert_cmd::cargo::cargo_bin("hamstr"))
        .arg(&elsewhere)
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().flatten().collect();
    assert!(
        written.is_empty(),
        "the demo wrote through the link: {written:?}"
    );
    let made: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let own = made
        .iter()
        .find(|p| !p.is_symlink())
        .expect("the demo's folder");
    assert_eq!(std::fs::metadata(own).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn what_a_run_creates_is_private_whatever_the_umask() {
    let api = TestApi::start_blocking();
    let p = collecting(&api, 3);
    p.rewrite(&collecting_text(&api).replace(
        "flow src -> store",
        "sink lines = jsonl(\"out/lines.jsonl\")\nflow src -> store, lines",
    ));
    let mut c = std::process::Command::new("sh");
    c.args(["-c", "umask 022; exec \"$0\" \"$@\""])
        .arg(assert_cmd::cargo::cargo_bin("hamstr"))
        .args(["run", "--no-watch"])
        .arg(&p.file)
        .arg("--data-dir")
        .arg(&p.data)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null());
    let mut run = RunningHamstr::start(c);
    assert!(
        wait_until(|| state_now(&p).contains("records seen: 3"), LIMIT),
        "{}",
        run.stderr()
    );
    let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o777;
    assert_eq!(mode(&p.data), 0o700, "the data directory");
    assert_eq!(mode(&p.data.join("control.sock")), 0o600, "the socket");
    for file in files_under(&p.data)
        .into_iter()
        .chain([p.path("out/lines.jsonl")])
    {
        assert_eq!(
            mode(&file) & 0o077,
            0,
            "{} is open to others",
            file.display()
        );
    }
    // Another user can read none of it.
    if let Some([other, _]) = other_users() {
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(p.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let read = std::process::Command::new("cat")
            .arg(p.path("out/lines.jsonl"))
            .uid(other.0)
            .gid(other.1)
            .output()
            .unwrap();
        assert!(!read.status.success(), "another user read the jsonl file");
    }
    let status = run.terminate(LIMIT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", run.stderr());
    assert!(
        !p.data.join("control.sock").exists(),
        "the socket outlived the run"
    );
}
