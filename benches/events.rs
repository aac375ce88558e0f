//! Events acknowledged by `hamstr run` (spec §11): signed events POSTed to a push-only
//! source with a sled sink, by 1 and by 32 concurrent senders; events/s answered 200
//! (each committed and flushed before its answer) and the p50/p99 time to that answer.
//! Then the same through `fetch`: id-only events, each record read from a local API.
//!
//! `cargo build --release && cargo bench --bench events` (HAMSTR_BIN overrides the
//! binary; EVENTS the events per case, default 4,000).

use hmac::{KeyInit, Mac};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";

fn pipeline(api: &str, fetch: bool) -> String {
    let receive = if fetch {
        "receive { path = \"/hooks/e\"  verify = none  fetch = \"/payments/{id}\" }"
    } else {
        "receive { path = \"/hooks/e\"  verify = hmac(header = \"X-Signature\", secret = \"bench-secret\") }"
    };
    format!(
        "service api {{ base_url = \"{api}\"  concurrency = 32 }}\nsource events from api {{\n  {receive}\n  key = id\n  fields {{ id : string = $.id  n : int = $.n  amount : decimal = $.amount }}\n}}\nsink store = sled(\"store\")\nflow events -> store\n"
    )
}

/// `hamstr run` on `text` in a fresh folder; its listener's URL.
fn start(bin: &str, text: &str, tag: &str) -> (Child, String, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("hamstr-events-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.hmr");
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(bin)
        .args(["run", "--no-watch", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg(&file)
        .env("RUST_LOG", "hamstr=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hamstr");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("hamstr ended").unwrap();
        if let Some(u) = line.strip_prefix("listening on ") {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url, dir)
}

fn signature(body: &[u8]) -> String {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends `events` events from `senders` tasks; the events/s and every answer's latency.
fn send(url: &str, events: usize, senders: usize, fetch: bool) -> (f64, Vec<Duration>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = hamstr::nodes::net::http_client().unwrap();
        let hook = Arc::new(format!("{url}/hooks/e"));
        let started = Instant::now();
        let tasks: Vec<_> = (0..senders)
            .map(|s| {
                let (client, hook) = (client.clone(), hook.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    for i in (s..events).step_by(senders) {
                        let (body, headers) = if fetch {
                            (
                                format!("id=p{i}").into_bytes(),
                                vec![(
                                    "content-type",
                                    "application/x-www-form-urlencoded".to_string(),
                                )],
                            )
                        } else {
                            let body =
                                format!(r#"{{"id":"e{i}","n":{i},"amount":"{}.50"}}"#, i % 1000)
                                    .into_bytes();
                            let sig = signature(&body);
                            (
                                body,
                                vec![
                                    ("content-type", "application/json".to_string()),
                                    ("X-Signature", sig),
                                ],
                            )
                        };
                        let t = Instant::now();
                        // A sender sends again what was answered 503, as providers do;
                        // the latency is the time to the 200.
                        loop {
                            let mut req = client.post(hook.as_str()).body(body.clone());
                            for (k, v) in &headers {
                                req = req.header(*k, v);
                            }
                            let resp = req.send().await.expect("an answer");
                            let status = resp.status().as_u16();
                            let text = resp.text().await.unwrap_or_default();
                            if status == 503 {
                                eprintln!("event {i}: 503 {text}; sent again");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                            assert_eq!(status, 200, "event {i}: {text}");
                            break;
                        }
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::with_capacity(events);
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let rate = events as f64 / started.elapsed().as_secs_f64();
        all.sort();
        (rate, all)
    })
}

/// A local API serving `/payments/{id}`, on a thread of its own.
fn api() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/payments/{id}",
                axum::routing::get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                    let n: u64 = id.trim_start_matches('p').parse().unwrap_or(0);
                    axum::Json(serde_json::json!({"id": id, "n": n, "amount": format!("{}.25", n % 1000)}))
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let bin = std::env::var("HAMSTR_BIN").unwrap_or_else(|_| "target/release/hamstr".into());
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(4000);
    let api = api();
    println!("| case | senders | events | events/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for fetch in [false, true] {
        for senders in [1, 32] {
            let tag = format!("{fetch}-{senders}");
            let (mut child, url, dir) = start(&bin, &pipeline(&api, fetch), &tag);
            let (rate, latencies) = send(&url, events, senders, fetch);
            let case = if fetch {
                "id-only, fetch from a local API"
            } else {
                "signed (hmac), body is the record"
            };
            println!(
                "| {case} | {senders} | {events} | {rate:.0} | {:.2} | {:.2} |",
                pct(&latencies, 0.5),
                pct(&latencies, 0.99)
            );
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
