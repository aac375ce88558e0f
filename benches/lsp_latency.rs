//! How long `hamstr lsp` takes from a `didChange` to the `publishDiagnostics` it causes,
//! on pipelines of 500 and 5,000 sources (the generator of `check_bench`): the built
//! binary is driven over real stdio JSON-RPC, as an editor drives it, and each change
//! edits one source's filter. The figure includes the server's 150 ms debounce.
//!
//! Run with `cargo bench --bench lsp_latency`.

#[path = "common/big_pipeline.rs"]
mod big_pipeline;

use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{json, Value};
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const URI: &str = "file:///bench/big.hmr";
const CHANGES: usize = 9;

fn main() {
    for sources in [500, 5_000] {
        let text = big_pipeline::pipeline(sources);
        let lines = text.lines().count();
        let mut times = latency(&text);
        times.sort();
        let median = times[times.len() / 2];
        let (min, max) = (times[0], times[times.len() - 1]);
        println!(
            "{sources:>5} sources, {lines:>6} lines: didChange → publishDiagnostics median {median:>8.1?} (min {min:.1?}, max {max:.1?}, {CHANGES} changes)"
        );
    }
}

/// The latency of each of `CHANGES` edits of `text`.
fn latency(text: &str) -> Vec<Duration> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hamstr"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hamstr lsp");
    let mut stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        while let Ok(Some(msg)) = Message::read(&mut reader) {
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    let mut send = |msg: Message| msg.write(&mut stdin).expect("write");
    let diagnostics = |rx: &mpsc::Receiver<Message>| loop {
        match rx
            .recv_timeout(Duration::from_secs(120))
            .expect("an answer")
        {
            Message::Notification(n) if n.method == "textDocument/publishDiagnostics" => {
                return n.params["diagnostics"].as_array().map_or(0, Vec::len)
            }
            _ => {}
        }
    };
    send(Message::Request(Request::new(
        RequestId::from(1),
        "initialize".into(),
        json!({"capabilities": {}}),
    )));
    let _ = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("initialized");
    send(notification("initialized", json!({})));
    send(notification(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "hmr", "version": 1, "text": text}}),
    ));
    let first = diagnostics(&rx);
    assert_eq!(first, 0, "the generated pipeline has errors");
    let mut times = Vec::new();
    for n in 0..CHANGES {
        let edited = text.replacen(
            "where    = amount > 0",
            &format!("where    = amount > {}", n + 1),
            1,
        );
        let started = Instant::now();
        send(notification(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": n + 2}, "contentChanges": [{"text": edited}]}),
        ));
        diagnostics(&rx);
        times.push(started.elapsed());
    }
    send(Message::Request(Request::new(
        RequestId::from(2),
        "shutdown".into(),
        Value::Null,
    )));
    send(notification("exit", Value::Null));
    let _ = child.wait();
    times
}

fn notification(method: &str, params: Value) -> Message {
    Message::Notification(Notification::new(method.into(), params))
}
