//! `hamstr lsp` driven by a test client over real stdio JSON-RPC: initialize;
//! diagnostics of a broken file with the codes and ranges `check --format json` gives
//! (UTF-16 columns after non-ASCII text); a fix clears them; completion of properties
//! and paginators; hover; definition; symbols; formatting as `fmt` does; shutdown; and
//! random edits that never crash the server.

mod support;

use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{json, Value};
use std::io::BufReader;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::cli::{hamstr, stdout};

const URI: &str = "file:///work/shop.hmr";

/// `hamstr lsp` as a child process, and the messages it sent that were not read yet.
struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: mpsc::Receiver<Message>,
    pending: Vec<Message>,
    next_id: i32,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("hamstr"))
            .arg("lsp")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("hamstr lsp");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            while let Ok(Some(msg)) = Message::read(&mut reader) {
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            incoming,
            pending: Vec::new(),
            next_id: 0,
        };
        let caps = c.request("initialize", json!({"capabilities": {}}));
        assert_eq!(caps["capabilities"]["positionEncoding"], "utf-16");
        assert_eq!(caps["serverInfo"]["name"], "hamstr");
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, msg: Message) {
        msg.write(&mut self.stdin).expect("write to hamstr lsp");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(Message::Notification(Notification::new(
            method.into(),
            params,
        )));
    }

    fn next(&mut self, limit: Duration) -> Message {
        self.incoming
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("hamstr lsp said nothing for {limit:?}"))
    }

    /// Sends a request and waits for its answer (a result, or null for an error).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        self.send(Message::Request(Request::new(
            id.clone(),
            method.into(),
            params,
        )));
        loop {
            match self.next(Duration::from_secs(30)) {
                Message::Response(r) if r.id == id => {
                    return r.result.unwrap_or(Value::Null);
                }
                other => self.pending.push(other),
            }
        }
    }

    /// The next diagnostics published for `URI`.
    fn diagnostics(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self.pending.iter().position(|m| {
                matches!(m, Message::Notification(n) if n.method == "textDocument/publishDiagnostics")
            }) {
                let Message::Notification(n) = self.pending.remove(at) else {
                    unreachable!()
                };
                assert_eq!(n.params["uri"], URI);
                return n.params["diagnostics"].as_array().unwrap().clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.next(left);
            self.pending.push(msg);
        }
    }

    fn open(&mut self, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": URI, "languageId": "hmr", "version": 1, "text": text}}),
        );
    }

    fn change(&mut self, version: i32, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    fn at(&mut self, method: &str, pos: (usize, usize)) -> Value {
        self.request(
            method,
            json!({"textDocument": {"uri": URI}, "position": {"line": pos.0, "character": pos.1}}),
        )
    }

    fn shutdown(mut self) {
        assert_eq!(self.request("shutdown", Value::Null), Value::Null);
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "hamstr lsp exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "hamstr lsp did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A diagnostic's code and where it starts and ends (line, UTF-16 column).
type Located = (String, (usize, usize), (usize, usize));

/// The (line, UTF-16 column) of a byte offset.
fn utf16(text: &str, offset: usize) -> (usize, usize) {
    let line = text[..offset].matches('\n').count();
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    (line, text[start..offset].encode_utf16().count())
}

/// The (line, UTF-16 column) of the first `needle` after `after`, plus `skip` bytes.
fn find(text: &str, needle: &str, skip: usize) -> (usize, usize) {
    utf16(text, text.find(needle).expect(needle) + skip)
}

const BROKEN: &str = r#"# Bestellungen der Filiale «Zürich» 😀
service pos {
  base_url = "http://127.0.0.1:8700/pos"
  retry { attempts = 3 }
}

model Order {
  id     : string
  amount : decimal
}

source orders from pos {
  get = "/bestellungen/café/😀"  model = Ordr
  schedule = every(30s)
  paginate = page(param = "page")
  records = $.data[*]
  key = id
  fields { id = $.id  amount = $.amount }
}

sink store = sled("orders")
flow orders -> store
"#;

#[test]
fn diagnostics_match_check_and_clear_when_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.hmr");
    std::fs::write(&file, BROKEN).unwrap();
    let out = hamstr()
        .args(["check", "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let expected: Vec<Located> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let l = &d["labels"][0];
            let (offset, len) = (
                l["offset"].as_u64().unwrap() as usize,
                l["length"].as_u64().unwrap() as usize,
            );
            (
                d["code"].as_str().unwrap().to_string(),
                utf16(BROKEN, offset),
                utf16(BROKEN, offset + len),
            )
        })
        .collect();
    assert!(
        expected.iter().any(|(c, ..)| c == "hamstr::unknown_model"),
        "{report:#}"
    );

    let mut c = Client::start();
    c.open(BROKEN);
    let got: Vec<Located> = c
        .diagnostics()
        .iter()
        .map(|d| {
            let r = &d["range"];
            let pos = |p: &Value| {
                (
                    p["line"].as_u64().unwrap() as usize,
                    p["character"].as_u64().unwrap() as usize,
                )
            };
            (
                d["code"].as_str().unwrap().to_string(),
                pos(&r["start"]),
                pos(&r["end"]),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // `Ordr` after `é` and `😀` on its line: UTF-16 columns, not bytes or characters.
    let ordr = got
        .iter()
        .find(|(c, ..)| c == "hamstr::unknown_model")
        .unwrap();
    assert_eq!(ordr.1, (12, 41));
    assert_eq!(ordr.2, (12, 45));

    c.change(2, &BROKEN.replace("model = Ordr", "model = Order"));
    assert_eq!(c.diagnostics(), Vec::<Value>::new());
    c.shutdown();
}

#[test]
fn completion_hover_definition_symbols_and_formatting() {
    let text = BROKEN.replace("model = Ordr", "model = Order");
    let mut c = Client::start();
    c.open(&text);
    assert_eq!(c.diagnostics(), Vec::<Value>::new());

    let labels = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect()
    };
    // At the start of a statement in a source: its properties.
    let (line, _) = find(&text, "  schedule", 0);
    let props = labels(&c.at("textDocument/completion", (line, 2)));
    for p in ["paginate", "records", "incremental", "fields", "for_each"] {
        assert!(props.contains(&p.to_string()), "{p} in {props:?}");
    }
    assert!(!props.contains(&"base_url".to_string()), "{props:?}");
    // After `paginate = `: the paginators.
    let kinds = labels(&c.at("textDocument/completion", find(&text, "page(param", 0)));
    for k in ["page", "offset", "cursor", "next_url", "link_header"] {
        assert!(kinds.contains(&k.to_string()), "{k} in {kinds:?}");
    }
    // In a service's `retry` block.
    let retry = labels(&c.at("textDocument/completion", find(&text, "attempts", 0)));
    assert!(retry.contains(&"max_backoff".to_string()), "{retry:?}");
    // After `model = `: the models.
    let models = labels(&c.at(
        "textDocument/completion",
        find(&text, "Order\n  schedule", 0),
    ));
    assert_eq!(models, ["Order"]);

    // Hover: a field's type, a property's meaning, a name's declaration.
    let hover = |c: &mut Client, pos| {
        c.at("textDocument/hover", pos)["contents"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let amount = hover(&mut c, find(&text, "amount = $.amount", 1));
    assert!(amount.contains("field `amount`: `decimal`"), "{amount}");
    let paginate = hover(&mut c, find(&text, "paginate", 2));
    assert!(
        paginate.contains("How the next page is requested"),
        "{paginate}"
    );
    let pos = hover(&mut c, find(&text, "from pos", 6));
    assert!(pos.contains("service pos"), "{pos}");

    // Definition of a service name, a model and a key field.
    let def = c.at("textDocument/definition", find(&text, "from pos", 6));
    assert_eq!(def["uri"], URI);
    let (line, col) = find(&text, "service pos", 8);
    assert_eq!(
        def["range"]["start"],
        json!({"line": line, "character": col})
    );
    let def = c.at("textDocument/definition", find(&text, "key = id", 6));
    let (line, col) = find(&text, "id = $.id", 0);
    assert_eq!(
        def["range"]["start"],
        json!({"line": line, "character": col})
    );
    let def = c.at("textDocument/definition", find(&text, "model = Order", 9));
    assert_eq!(def["range"]["start"]["line"], 6);

    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": URI}}),
    );
    let names: Vec<_> = labels_of(&symbols, "name");
    assert_eq!(names, ["pos", "Order", "orders", "store"]);

    // Formatting: the edit `hamstr fmt` makes.
    let edits = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": URI}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.hmr");
    std::fs::write(&file, &text).unwrap();
    assert_eq!(
        hamstr()
            .arg("fmt")
            .arg(&file)
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_ne!(formatted, text);
    assert_eq!(edits.as_array().unwrap().len(), 1);
    assert_eq!(edits[0]["newText"], formatted);
    assert_eq!(
        edits[0]["range"]["start"],
        json!({"line": 0, "character": 0})
    );
    c.shutdown();
}

fn labels_of(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap().to_string())
        .collect()
}

/// A half-typed file still gets answers.
#[test]
fn a_half_typed_file_is_answered() {
    let mut c = Client::start();
    let text =
        "service pos {\n  base_url = \"http://x\"\n}\nsource orders from pos {\n  paginate = \n  ";
    c.open(text);
    let diags = c.diagnostics();
    assert!(
        diags.iter().any(|d| d["code"] == "hamstr::syntax"),
        "{diags:?}"
    );
    let kinds = c.at("textDocument/completion", (4, 13));
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["label"] == "cursor"),
        "{kinds}"
    );
    let props = c.at("textDocument/completion", (5, 2));
    assert!(
        props
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["label"] == "records"),
        "{props}"
    );
    let def = c.at("textDocument/definition", (3, 20));
    assert_eq!(def["range"]["start"], json!({"line": 0, "character": 8}));
    assert_eq!(
        c.request(
            "textDocument/formatting",
            json!({"textDocument": {"uri": URI}, "options": {"tabSize": 2, "insertSpaces": true}})
        ),
        json!([])
    );
    c.shutdown();
}

/// Random edits (inserted pieces and cut ranges, by incremental changes with UTF-16
/// ranges) and requests at random places: every request is answered and the server
/// exits cleanly.
#[test]
fn random_edits_never_crash_the_server() {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "=",
        "\"",
        "$.",
        "é",
        "😀",
        "\n",
        " ",
        "source x from ",
        "paginate = ",
        "fields {",
        "#",
        "->",
        ":",
        "?",
        "\u{0}",
    ];
    let mut text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/order_items.hmr"),
    )
    .unwrap();
    let mut next = support::xorshift(0x5eed_1234_abcd);
    let mut rand = |n: usize| next(n as u64) as usize;
    let mut c = Client::start();
    c.open(&text);
    for version in 2..300 {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        let a = boundaries[rand(boundaries.len())];
        let b = if rand(3) == 0 {
            boundaries[rand(boundaries.len())].max(a).min(a + 40)
        } else {
            a
        };
        let b = (b..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap();
        let piece = if a == b || rand(2) == 0 {
            PIECES[rand(PIECES.len())]
        } else {
            ""
        };
        let (start, end) = (utf16(&text, a), utf16(&text, b));
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [{
                "range": {"start": {"line": start.0, "character": start.1}, "end": {"line": end.0, "character": end.1}},
                "text": piece,
            }]}),
        );
        text.replace_range(a..b, piece);
        let at = boundaries[rand(boundaries.len())].min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap();
        let pos = utf16(&text, at);
        let method = [
            "textDocument/completion",
            "textDocument/hover",
            "textDocument/definition",
        ][rand(3)];
        let _ = c.at(method, pos);
        if version % 50 == 0 {
            let _ = c.request(
                "textDocument/documentSymbol",
                json!({"textDocument": {"uri": URI}}),
            );
            let _ = c.request("textDocument/formatting", json!({"textDocument": {"uri": URI}, "options": {"tabSize": 2, "insertSpaces": true}}));
        }
    }
    // The diagnostics of the last text come once typing stops.
    let _ = c.diagnostics();
    c.shutdown();
}
