//! Crash safety where the key index writes its runs: a source of 60,000 keys (two folds
//! of 27,000, each a run's file written, synced and then named in the index's meta, its
//! key log retired; and each start folds the committed pages the key logs hold) killed
//! with SIGKILL at random instants, restarted each time.
//! Afterwards the index knows every key exactly once, a run over the same data emits
//! nothing, and the jsonl file lost nothing.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use support::cli::Pipeline;
use support::{records, Paging, TestApi};

const RECORDS: usize = 60_000;
const KILLS: u64 = 6;

fn pipeline(url: &str) -> String {
    format!(
        r#"
service api {{
  base_url = "{url}"
  retry {{ attempts = 3  backoff = 50ms }}
}}

source items from api {{
  get      = "/items"
  schedule = every(200ms)
  paginate = page(param = "page", size_param = "per_page", size = 500)
  records  = $.data[*]
  key      = id
  fields {{ id : string = $.id  seq : int = $.seq  name : string = $.name }}
}}

sink lines = jsonl("out/items.jsonl")

flow items -> lines
"#
    )
}

/// The `.run` files in the sources' folders under `state/runs`.
fn run_files(p: &Pipeline) -> usize {
    std::fs::read_dir(p.data.join("state").join("runs"))
        .map(|d| {
            d.filter_map(|f| std::fs::read_dir(f.ok()?.path()).ok())
                .flatten()
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".run"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn killed_while_runs_are_written_the_index_keeps_every_key_once() {
    let api = TestApi::start_blocking();
    api.serve("/items", Paging::page(500));
    api.set_records("/items", records::make(RECORDS));
    let p = Pipeline::new(&pipeline(&api.url()));

    let mut rand = support::xorshift(0x2545_f491_4f6c_dd1du64);
    for _ in 0..KILLS {
        let mut run = p.spawn_run(&["--no-watch"]);
        std::thread::sleep(Duration::from_millis(300 + rand(2_500)));
        run.kill();
    }
    // A quiet run collects what the kills cut off.
    p.run_ok();
    // Two folds of 27,000 keys, and at most one more run for each start after a kill
    // (the pages its key logs held).
    assert!(
        (2..=2 + KILLS as usize + 1).contains(&run_files(&p)),
        "the keys were folded into runs' files: {} files",
        run_files(&p)
    );

    let lines = p.jsonl("out/items.jsonl");
    let ids: HashSet<&str> = lines.iter().filter_map(|v| v["id"].as_str()).collect();
    for r in records::make(RECORDS) {
        let id = r["id"].as_str().unwrap();
        assert!(ids.contains(id), "{id} is missing from the jsonl file");
    }

    // The index holds each key once, and a run over the same data finds them all.
    let keys: Vec<Value> = p.dump("items");
    let distinct: HashSet<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys.len(), RECORDS, "keys in the index");
    assert_eq!(distinct.len(), RECORDS);
    p.run_ok();
    assert_eq!(
        p.jsonl("out/items.jsonl").len(),
        lines.len(),
        "a run over the same records wrote lines"
    );
    eprintln!(
        "{RECORDS} keys after {KILLS} kills; {} lines ({} repeats from pages cut off before their commit); {} run files",
        lines.len(),
        lines.len() - RECORDS,
        run_files(&p)
    );
}
