//! The `webhook` sink: whole pipelines run through the built binary, with sources on
//! the fake API and a local receiver (axum, 127.0.0.1) that records what it is sent
//! and answers with the statuses a test queues.

mod support;

use assert_cmd::Command;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::cli::hamstr_process;
use support::{records, wait_until, Paging, RunningHamstr, TestApi};

/// What the receiver saw and what it answers next.
#[derive(Default)]
struct Seen {
    /// Every POST: its content type and body.
    posts: Vec<(String, Vec<u8>)>,
    /// Statuses (and a `Retry-After`) for the next POSTs; 200 when empty.
    answers: VecDeque<(u16, Option<&'static str>)>,
}

struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    /// Serves `POST /hook` on 127.0.0.1:`port` (0: any free port).
    fn start_on(port: u16) -> Receiver {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .route("/hook", axum::routing::post(receive))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Receiver {
            port,
            seen,
            _stop: stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn answer_next(&self, status: u16, retry_after: Option<&'static str>) {
        self.seen
            .lock()
            .unwrap()
            .answers
            .push_back((status, retry_after));
    }

    fn posts(&self) -> usize {
        self.seen.lock().unwrap().posts.len()
    }

    /// The arrays of the POSTs answered 200, in order.
    fn delivered(&self) -> Vec<Vec<Value>> {
        self.seen
            .lock()
            .unwrap()
            .posts
            .iter()
            .filter_map(|(_, body)| serde_json::from_slice::<Vec<Value>>(body).ok())
            .collect()
    }
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut seen = seen.lock().unwrap();
    let (status, after) = seen.answers.pop_front().unwrap_or((200, None));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Only what was accepted counts as delivered.
    let kept = if status == 200 {
        body.to_vec()
    } else {
        Vec::new()
    };
    seen.posts.push((content_type, kept));
    let status = StatusCode::from_u16(status).expect("status");
    match after {
        Some(a) => (status, [("retry-after", a)], "").into_response(),
        None => (status, "").into_response(),
    }
}

/// One source on the fake API's `/orders` (pages of 10) into `webhook(env("HOOK_URL"),
/// batch = 4)`.
fn pipeline(dir: &Path) -> PathBuf {
    let text = r#"
service api { base_url = env("API_URL") }

source orders from api {
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  key      = id
  fields {
    id     : string  = $.id
    seq    : int     = $.seq
    amount : decimal = $.amount
  }
}

sink hook = webhook(env("HOOK_URL"), batch = 4)

flow orders -> hook
"#;
    let path = dir.join("p.hmr");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

struct Output {
    code: i32,
    text: String,
}

fn hamstr(args: &[&str], file: &Path, data: &Path, api: &TestApi, hook: &str) -> Output {
    let out = Command::cargo_bin("hamstr")
        .expect("binary")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg(file)
        .env("API_URL", api.url())
        .env("HOOK_URL", hook)
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run hamstr");
    Output {
        code: out.status.code().unwrap_or(-1),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn run_once(file: &Path, data: &Path, api: &TestApi, hook: &str) -> Output {
    hamstr(&["run", "--once", "--no-watch"], file, data, api, hook)
}

fn api_with(n: usize) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(n));
    api.serve("/orders", Paging::page(10));
    api
}

/// A port where nothing listens yet, and the hook URL on it.
fn closed_hook() -> (u16, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (port, format!("http://127.0.0.1:{port}/hook"))
}

fn ids(arrays: &[Vec<Value>]) -> Vec<String> {
    arrays
        .iter()
        .flatten()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn records_go_out_in_arrays_of_at_most_batch() {
    let receiver = Receiver::start_on(0);
    let api = api_with(25);
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path());
    let out = run_once(&file, &dir.path().join("data"), &api, &receiver.url());
    assert_eq!(out.code, 0, "{}", out.text);

    let arrays = receiver.delivered();
    let sizes: Vec<usize> = arrays.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 4, 2, 4, 4, 2, 4, 1], "pages of 10, 10 and 5");
    assert_eq!(ids(&arrays), records::ids(&records::make(25)));
    let first = &arrays[0][0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["amount"], records::amount(1));
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.posts.iter().all(|(ct, _)| ct == "application/json"));
}

#[test]
fn a_503_is_retried_then_delivered() {
    let receiver = Receiver::start_on(0);
    receiver.answer_next(503, None);
    receiver.answer_next(503, Some("1"));
    receiver.answer_next(429, None);
    let api = api_with(6);
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path());
    let out = run_once(&file, &dir.path().join("data"), &api, &receiver.url());
    assert_eq!(out.code, 0, "{}", out.text);
    assert_eq!(receiver.posts(), 3 + 2, "three refusals, then two arrays");
    assert_eq!(ids(&receiver.delivered()), records::ids(&records::make(6)));
}

#[test]
fn a_400_is_not_retried_and_the_page_waits() {
    let receiver = Receiver::start_on(0);
    receiver.answer_next(200, None);
    receiver.answer_next(400, None);
    let api = api_with(6);
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path());
    let data = dir.path().join("data");
    let out = run_once(&file, &data, &api, &receiver.url());
    // The second array fails at once, so the page waits in the queue; the last try
    // before exit sends what had not arrived, and only that.
    assert!(out.text.contains("HTTP 400"), "{}", out.text);
    assert_eq!(out.code, 0, "{}", out.text);
    assert_eq!(receiver.posts(), 3, "no retry of a 400 within the write");
    assert_eq!(ids(&receiver.delivered()), records::ids(&records::make(6)));
}

#[test]
fn records_wait_while_the_receiver_is_down() {
    let (port, url) = closed_hook();
    let api = api_with(15);
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path());
    let data = dir.path().join("data");

    let out = run_once(&file, &data, &api, &url);
    assert_eq!(out.code, 1, "{}", out.text);
    assert!(
        out.text.contains("sink hook: 2 pages still wait"),
        "{}",
        out.text
    );
    let state = hamstr(&["state"], &file, &data, &api, &url);
    assert!(
        state
            .text
            .contains("sink hook: 2 pages waiting in its queue"),
        "{}",
        state.text
    );

    let receiver = Receiver::start_on(port);
    let out = run_once(&file, &data, &api, &url);
    assert_eq!(out.code, 0, "{}", out.text);
    assert_eq!(ids(&receiver.delivered()), records::ids(&records::make(15)));
    let state = hamstr(&["state"], &file, &data, &api, &url);
    assert!(
        state.text.contains("sink hook: its queue is empty"),
        "{}",
        state.text
    );
}

/// A long run delivers its queue once the receiver is back, while pages (here empty
/// ones: nothing new) keep arriving more often than it retries; before, every arriving
/// page put the retry off again and the queue went out only at exit.
#[test]
fn a_running_pipeline_delivers_its_queue_when_the_receiver_comes_back() {
    let (port, url) = closed_hook();
    let api = api_with(15);
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path());
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("schedule = once", "schedule = every(200ms)");
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let mut run = hamstr_process();
    run.args(["run", "--no-watch", "--data-dir"])
        .arg(&data)
        .arg(&file)
        .env("API_URL", api.url())
        .env("HOOK_URL", &url);
    let mut child = RunningHamstr::start(run);
    // Several runs while nobody listens: the pages wait in the queue.
    assert!(
        api.wait_for_hits_blocking("/orders", 8, Duration::from_secs(30)),
        "the source did not run\n{}",
        child.stderr()
    );
    let receiver = Receiver::start_on(port);
    // On a timeout the assertion below shows what did arrive.
    wait_until(
        || ids(&receiver.delivered()).len() >= 15,
        Duration::from_secs(20),
    );
    let delivered = ids(&receiver.delivered());
    child.terminate(Duration::from_secs(20));
    assert_eq!(
        delivered,
        records::ids(&records::make(15)),
        "delivered while running, in order, once"
    );
}
