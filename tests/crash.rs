//! Crash safety: `hamstr run` killed with SIGKILL at random instants against an API whose
//! data keeps growing and changing, restarted each time; at the end the sled stores hold
//! exactly the API's records and the jsonl files lost nothing.

mod support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::cli::hamstr_process;
use support::{records, Order, Paging, RunningHamstr, TestApi};

const KILLS: usize = 30;

fn pipeline(url: &str) -> String {
    format!(
        r#"
service api {{
  base_url = "{url}"
  retry {{ attempts = 3  backoff = 50ms }}
}}

model Row {{
  id         : string
  seq        : int
  updated_at : datetime
  amount     : decimal
  name       : string
}}

source ascending from api {{
  get      = "/asc"
  query {{ per_page = 7 }}
  schedule = every(300ms)
  paginate = page(param = "page", size_param = "per_page", size = 7)
  records  = $.data[*]
  model    = Row
  key      = id
  incremental {{ cursor = updated_at  param = "since" }}
  fields {{ id = $.id  seq = $.seq  updated_at = $.updated_at  amount = $.amount  name = $.name }}
}}

source descending from api {{
  get      = "/desc"
  schedule = every(400ms)
  paginate = next_url($._links.next.href)
  records  = $._embedded.items[*]
  model    = Row
  key      = id
  incremental {{ cursor = updated_at  order = newest_first }}
  fields {{ id = $.id  seq = $.seq  updated_at = $.updated_at  amount = $.amount  name = $.name }}
}}

sink a_store = sled("a")
sink d_store = sled("d")
sink a_lines = jsonl("out/a.jsonl")
sink d_lines = jsonl("out/d.jsonl")

flow ascending -> a_store, a_lines
flow descending -> d_store, d_lines
"#
    )
}

fn expected(r: &Value) -> Value {
    json!({
        "id": r["id"], "seq": r["seq"], "updated_at": r["updated_at"],
        "amount": r["amount"], "name": r["name"],
    })
}

fn dump(bin: &Path, file: &Path, data: &Path, sink: &str) -> BTreeMap<String, Value> {
    let out = Command::new(bin)
        .args(["dump"])
        .arg(file)
        .arg(sink)
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
        assert!(map.insert(id.clone(), v).is_none(), "{id} twice in {sink}");
    }
    map
}

/// Every (id, updated_at) in the API appears in the jsonl file; returns how many lines
/// were repeats (from pages that were delivered but not committed before a kill).
fn check_lines(path: &Path, api: &[Value]) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a broken line in {}: {e}: {line}", path.display()));
        *seen
            .entry((
                v["id"].as_str().unwrap().into(),
                v["updated_at"].as_str().unwrap().into(),
            ))
            .or_default() += 1;
    }
    for r in api {
        let k = (
            r["id"].as_str().unwrap().to_string(),
            r["updated_at"].as_str().unwrap().to_string(),
        );
        assert!(
            seen.contains_key(&k),
            "{k:?} is missing from {}",
            path.display()
        );
    }
    seen.values().map(|n| n - 1).sum()
}

#[test]
fn killed_at_random_instants_loses_nothing_and_stores_nothing_twice() {
    let api = TestApi::start_blocking();
    api.serve("/asc", Paging::page(7));
    api.set_order("/asc", Order::Ascending("updated_at".into()));
    api.set_since_filter("/asc", "since", "updated_at");
    api.serve("/desc", Paging::next_url(6, true));
    api.set_order("/desc", Order::Descending("updated_at".into()));
    let initial = records::make(60);
    api.set_records("/asc", initial.clone());
    api.set_records("/desc", initial);

    // The data keeps growing, and now and then an old record changes.
    let growing = Arc::new(AtomicBool::new(true));
    let api = Arc::new(api);
    let grower = {
        let growing = growing.clone();
        let api = api.clone();
        std::thread::spawn(move || {
            let mut next = 61u64;
            let mut tick = 0u64;
            while growing.load(Ordering::SeqCst) {
                let batch = records::range(next, 2);
                api.push_records("/asc", batch.clone());
                api.push_records("/desc", batch);
                next += 2;
                tick += 1;
                if tick.is_multiple_of(5) {
                    let victim = records::record(1 + (tick * 7) % (next - 1));
                    // Changed now: its `updated_at` ties with the newest records.
                    let mut changed =
                        records::changed(&victim, "name", json!(format!("changed {tick}")));
                    changed["updated_at"] = json!(records::updated_at(next - 1));
                    // Only the newest-first listing sees updates: there an updated record
                    // moves to the front and shifts older ones back (seen twice, settled by
                    // key). In the ascending page listing a move would shift records
                    // forward past a page already read, which no client of page numbers
                    // can see; such APIs need a cursor paginator for updates.
                    api.upsert_record("/desc", "id", changed);
                }
                // Paces the growth: time passing between batches is the point.
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crash.hmr");
    std::fs::write(&file, pipeline(&api.url())).unwrap();
    let data = dir.path().join("data");
    let bin = assert_cmd::cargo::cargo_bin("hamstr");

    let mut rand = support::xorshift(0x9e37_79b9_7f4a_7c15u64);
    for kill in 0..KILLS {
        let mut run = hamstr_process();
        run.args(["run", "--no-watch", "--data-dir"])
            .arg(&data)
            .arg(&file)
            .env("RUST_LOG", "hamstr=warn");
        let mut child = RunningHamstr::start(run);
        // Let time pass, at random: the kill lands at whatever the run is doing then.
        // Every third kill lands while the store is being opened, when sled writes a
        // snapshot of a store that has grown; the others mid-request, mid-page, mid-flush.
        let after = if kill % 3 == 0 {
            5 + rand(80)
        } else {
            80 + rand(900)
        };
        std::thread::sleep(Duration::from_millis(after));
        child.kill();
    }
    growing.store(false, Ordering::SeqCst);
    grower.join().unwrap();

    // Two quiet runs after the storm: the first may still deliver queued pages.
    for _ in 0..2 {
        let out = Command::new(&bin)
            .args(["run", "--once", "--data-dir"])
            .arg(&data)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    for (path, sink, lines) in [
        ("/asc", "a_store", "out/a.jsonl"),
        ("/desc", "d_store", "out/d.jsonl"),
    ] {
        let want: BTreeMap<String, Value> = api
            .records(path)
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_string(), expected(r)))
            .collect();
        let got = dump(&bin, &file, &data, sink);
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{sink}: missing {missing:?}, extra {extra:?}; their lines in {lines}: {:?}",
            std::fs::read_to_string(dir.path().join(lines))
                .unwrap_or_default()
                .lines()
                .filter(|l| missing.iter().any(|m| l.contains(m.as_str())))
                .collect::<Vec<_>>()
        );
        for (id, w) in &want {
            assert_eq!(&got[id], w, "{sink}: record {id} differs");
        }
        let repeats = check_lines(&dir.path().join(lines), &api.records(path));
        eprintln!("{sink}: {} records exactly once after {KILLS} kills; {lines}: {repeats} repeated lines", want.len());
    }
}
