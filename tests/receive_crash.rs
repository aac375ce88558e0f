//! Crash exactness for events (spec §11, "acknowledgement after commit"): senders post
//! 2,000 signed events, sending again whatever was not answered 200, while `hamstr run`
//! is SIGKILLed at random instants and restarted. After every kill, every event answered
//! 200 so far is in the store; at the end the store holds every event's record once.

mod support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::cli::hamstr_process;
use support::events::{github_signature, listener_url, Sender};
use support::RunningHamstr;

const EVENTS: usize = 2000;
const SENDERS: usize = 4;
const KILLS: usize = 10;
const SECRET: &str = "crash-secret";

const PIPELINE: &str = r#"
service pay { base_url = "http://127.0.0.1:9/unused" }
source events from pay {
  receive {
    path   = "/hooks/events"
    verify = hmac(header = "X-Hub-Signature-256", secret = "crash-secret", prefix = "sha256=")
  }
  key = id
  fields { id : string = $.id  n : int = $.n  amount : decimal = $.amount }
}
sink store = sled("store")
flow events -> store
"#;

fn event(i: usize) -> Value {
    json!({"id": format!("ev-{i:05}"), "n": i, "amount": format!("{}.{:02}", i / 7, i % 100)})
}

fn dump(file: &std::path::Path, data: &std::path::Path) -> BTreeMap<String, Value> {
    let out = Command::new(assert_cmd::cargo::cargo_bin("hamstr"))
        .arg("dump")
        .arg(file)
        .arg("store")
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        assert!(map.insert(id.clone(), v).is_none(), "{id} twice");
    }
    map
}

#[test]
fn events_answered_200_survive_any_kill_and_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.hmr");
    std::fs::write(&file, PIPELINE).unwrap();
    let data = dir.path().join("data");

    // Where the run listens now (None between a kill and the next start), and the
    // events answered 200.
    let target: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let answered: Arc<Mutex<BTreeSet<usize>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (target, answered, done) = (target.clone(), answered.clone(), done.clone());
            std::thread::spawn(move || {
                let sender = Sender::new();
                for i in (s..EVENTS).step_by(SENDERS) {
                    let body = serde_json::to_vec(&event(i)).unwrap();
                    let headers = vec![
                        ("content-type", "application/json".to_string()),
                        ("X-Hub-Signature-256", github_signature(SECRET, &body)),
                    ];
                    loop {
                        if done.load(Ordering::SeqCst) {
                            return;
                        }
                        let url = target.lock().unwrap().clone();
                        let answer =
                            url.map(|u| sender.post(&format!("{u}/hooks/events"), &headers, &body));
                        match answer {
                            Some(Ok((200, _))) => {
                                answered.lock().unwrap().insert(i);
                                // Paced (at most 500 events a second in all), so that
                                // the kills land among the events, not after the last.
                                std::thread::sleep(Duration::from_millis(8));
                                break;
                            }
                            Some(Ok((status, text))) => {
                                assert!(status == 503, "event {i}: {status} {text}");
                            }
                            // No run, or killed mid-answer: send it again.
                            Some(Err(_)) | None => {}
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();

    let mut rand = support::xorshift(0x2545_f491_4f6c_dd1du64);
    let start = || {
        let mut cmd = hamstr_process();
        cmd.args(["run", "--no-watch", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg(&file)
            .env("RUST_LOG", "hamstr=warn");
        let mut run = RunningHamstr::start(cmd);
        let url = listener_url(&mut run);
        (run, url)
    };
    for kill in 0..KILLS {
        let (mut run, url) = start();
        *target.lock().unwrap() = Some(url);
        // Time passes at random: the kill lands mid-request, mid-commit, mid-flush
        // (every third one in the first moments, as units start).
        let after = if kill % 3 == 0 {
            rand(30)
        } else {
            50 + rand(350)
        };
        std::thread::sleep(Duration::from_millis(after));
        run.kill();
        *target.lock().unwrap() = None;
        let acknowledged = answered.lock().unwrap().clone();
        let stored = dump(&file, &data);
        let lost: Vec<&usize> = acknowledged
            .iter()
            .filter(|i| !stored.contains_key(event(**i)["id"].as_str().unwrap()))
            .collect();
        assert!(
            lost.is_empty(),
            "answered 200 but not stored after a kill: {lost:?}"
        );
    }
    let before_last = answered.lock().unwrap().len();
    eprintln!("{before_last} of {EVENTS} events answered 200 across {KILLS} kills, each found stored after the kill");
    assert!(
        before_last < EVENTS,
        "every event was sent before the last kill: the kills tested too little"
    );
    // A last run takes the rest.
    let (mut run, url) = start();
    *target.lock().unwrap() = Some(url);
    let all = support::wait_until(
        || answered.lock().unwrap().len() == EVENTS,
        Duration::from_secs(240),
    );
    done.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    assert!(
        all,
        "{} of {EVENTS} answered",
        answered.lock().unwrap().len()
    );
    let status = run.terminate(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", run.stderr());
    let stored = dump(&file, &data);
    assert_eq!(stored.len(), EVENTS);
    for i in 0..EVENTS {
        let e = event(i);
        assert_eq!(stored.get(e["id"].as_str().unwrap()), Some(&e), "event {i}");
    }
}
