//! Live reload end to end: `hamstr run` keeps running while its file is edited — a source
//! added, a schedule changed, the syntax broken and fixed, a sink removed, a source
//! renamed — and unchanged sources are never restarted, nothing is lost or duplicated.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use support::cli::{ids, Pipeline};
use support::{records, wait_until, Fault, Order, Paging, RunningHamstr, TestApi};

/// Longest wait for anything the running process should do soon.
const LIMIT: Duration = Duration::from_secs(20);

fn pipeline(url: &str, b_every: &str, c_name: Option<&str>, with_lines: bool) -> String {
    let mut text = format!(
        r#"
service api {{ base_url = "{url}" }}

source a from api {{
  get = "/a"  schedule = every(1h)  records = $.data[*]  key = id
  fields {{ id : string = $.id  seq : int = $.seq }}
}}

source b from api {{
  get = "/b"  schedule = every({b_every})  records = $.data[*]  key = id
  paginate = page(param = "page", size_param = "per_page", size = 10)
  incremental {{ cursor = created_at  param = "since" }}
  fields {{ id : string = $.id  seq : int = $.seq  created_at : datetime = $.created_at }}
}}

sink sa = sled("a")
sink sb = sled("b")
flow a -> sa
flow b -> sb
"#
    );
    if with_lines {
        text.push_str("sink lines = jsonl(\"out/b.jsonl\")\nflow b -> lines\n");
    }
    if let Some(c) = c_name {
        text.push_str(&format!(
            "source {c} from api {{\n  get = \"/c\"  schedule = every(300ms)  records = $.data[*]  key = id\n  fields {{ id : string = $.id  seq : int = $.seq }}\n}}\nsink sc = sled(\"c\")\nflow {c} -> sc\n"
        ));
    }
    text
}

/// Saves like an editor: write a new file, rename it over the old one.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The ids `dump SINK` prints, in order.
fn ids_in(p: &Pipeline, sink: &str) -> Vec<String> {
    ids(&p.dump(sink))
}

/// `hamstr run FILE --data-dir DATA`, watching the file.
fn run_watching(p: &Pipeline) -> RunningHamstr {
    p.spawn_run(&[])
}

fn is_reload_summary(line: &str) -> bool {
    line.starts_with("reloaded:")
}

#[test]
fn edits_while_running_restart_only_what_changed() {
    let api = TestApi::start_blocking();
    api.serve("/a", Paging::wrapped("data"));
    api.set_records("/a", records::make(5));
    api.serve("/b", Paging::page(10));
    api.set_order("/b", Order::Ascending("created_at".into()));
    api.set_since_filter("/b", "since", "created_at");
    api.set_records("/b", records::make(30));
    api.serve("/c", Paging::wrapped("data"));
    api.set_records("/c", records::range(1000, 12));

    let p = Pipeline::new(&pipeline(&api.url(), "300ms", None, true));
    let mut child = run_watching(&p);
    let mut next = 31u64;
    let mut grow = |api: &TestApi| {
        api.push_records("/b", records::range(next, 3));
        next += 3;
    };
    let lines_in_jsonl = || {
        std::fs::read_to_string(p.path("out/b.jsonl"))
            .unwrap()
            .lines()
            .count()
    };

    assert!(
        api.wait_for_hits_blocking("/b", 3, LIMIT),
        "b never collected\n{}",
        child.stderr()
    );
    grow(&api);
    // 1. A new source.
    save(&p.file, &pipeline(&api.url(), "300ms", Some("c"), true));
    child.wait_for_stderr_line("the first reload", is_reload_summary, LIMIT);
    assert!(
        api.wait_for_hits_blocking("/c", 1, LIMIT),
        "c never collected\n{}",
        child.stderr()
    );
    grow(&api);
    // 2. A schedule change, written in place (not by rename).
    p.rewrite(&pipeline(&api.url(), "200ms", Some("c"), true));
    child.wait_for_stderr_line("the second reload", is_reload_summary, LIMIT);
    // 3. Broken syntax: collection goes on.
    save(
        &p.file,
        &pipeline(&api.url(), "200ms", Some("c"), true).replace("sink sb", "sink sb sb"),
    );
    child.wait_for_stderr_line(
        "the error report",
        |l| l.contains("previous pipeline keeps running"),
        LIMIT,
    );
    let hits_while_broken = api.hits("/b");
    grow(&api);
    assert!(
        api.wait_for_hits_blocking("/b", hits_while_broken + 3, LIMIT),
        "b stopped while the file is broken\n{}",
        child.stderr()
    );
    // 4. Fixed, and the jsonl sink removed.
    save(&p.file, &pipeline(&api.url(), "200ms", Some("c"), false));
    child.wait_for_stderr_line("the third reload", is_reload_summary, LIMIT);
    let lines_after_removal = lines_in_jsonl();
    grow(&api);
    // 5. A renamed source.
    save(&p.file, &pipeline(&api.url(), "200ms", Some("c2"), false));
    child.wait_for_stderr_line("the fourth reload", is_reload_summary, LIMIT);
    let c_hits = api.hits("/c");
    assert!(
        api.wait_for_hits_blocking("/c", c_hits + 1, LIMIT),
        "c2 never collected\n{}",
        child.stderr()
    );
    grow(&api);
    let total_b = api.records("/b").len();
    let b_hits = api.hits("/b");
    assert!(
        api.wait_for_hits_blocking("/b", b_hits + 2, LIMIT),
        "b never caught up\n{}",
        child.stderr()
    );
    // The last records went all the way through b's pipeline, so had the removed jsonl
    // sink still been wired, it would have got them.
    assert!(
        wait_until(|| ids_in(&p, "sb").len() >= total_b, LIMIT),
        "sb never held all {total_b} records\n{}",
        child.stderr()
    );

    // SIGTERM: a clean stop.
    let status = child.terminate(LIMIT);
    let log = child.stderr();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}\n{log}"
    );

    // The unchanged hourly source ran once: it was never restarted.
    assert_eq!(api.hits("/a"), 1, "{log}");
    let summaries: Vec<&str> = log.lines().filter(|l| is_reload_summary(l)).collect();
    assert_eq!(
        summaries[0], "reloaded: +1 source, +1 sink, ~0, -0",
        "{log}"
    );
    assert_eq!(summaries[1], "reloaded: +0, ~1 source, -0", "{log}");
    assert_eq!(summaries[2], "reloaded: +0, ~0, -1 sink", "{log}");
    assert_eq!(summaries[3], "reloaded: +1 source, ~0, -1 source", "{log}");

    let b_ids = ids_in(&p, "sb");
    let unique: BTreeSet<&String> = b_ids.iter().collect();
    assert_eq!(b_ids.len(), total_b, "every b record once\n{log}");
    assert_eq!(unique.len(), total_b);
    assert_eq!(ids_in(&p, "sc").len(), 12);
    assert_eq!(ids_in(&p, "sa").len(), 5);
    assert_eq!(
        lines_in_jsonl(),
        lines_after_removal,
        "the removed sink got no more records"
    );
}

/// A source whose identity changes (here its path) starts from scratch, and only once the
/// old one is gone: the new one's first request carries no watermark of the old, and it
/// does not start while the old one's request is still in flight.
#[test]
fn a_changed_identity_starts_from_scratch_after_the_old_run_ends() {
    let api = TestApi::start_blocking();
    for path in ["/old", "/new"] {
        api.serve(path, Paging::page(10));
        api.set_order(path, Order::Ascending("created_at".into()));
        api.set_since_filter(path, "since", "created_at");
    }
    api.set_records("/old", records::make(10));
    // The same timestamps, other ids: all at or below the old source's watermark.
    let renamed: Vec<Value> = records::make(10)
        .into_iter()
        .map(|mut r| {
            r["id"] = Value::from(r["id"].as_str().unwrap().replacen('r', "n", 1));
            r
        })
        .collect();
    api.set_records("/new", renamed);

    let text = |path: &str| {
        format!(
            r#"
service api {{ base_url = "{}" }}
source s from api {{
  get = "{path}"  schedule = every(200ms)  records = $.data[*]  key = id
  paginate = page(param = "page", size_param = "per_page", size = 10)
  incremental {{ cursor = created_at  param = "since" }}
  fields {{ id : string = $.id  created_at : datetime = $.created_at }}
}}
sink store = sled("s")
flow s -> store
"#,
            api.url()
        )
    };
    let p = Pipeline::new(&text("/old"));
    let mut child = run_watching(&p);
    // Two runs: the watermark is the newest record's.
    assert!(
        api.wait_for_hits_blocking("/old", 2, LIMIT),
        "the old source never ran twice"
    );
    // Its next request hangs for a while; the edit lands while it is in flight.
    api.fail_always("/old", Fault::Delay(Duration::from_millis(1500)));
    let before = api.hits("/old");
    assert!(
        api.wait_for_hits_blocking("/old", before + 1, LIMIT),
        "no slow request in flight"
    );
    save(&p.file, &text("/new"));
    assert!(
        api.wait_for_hits_blocking("/new", 1, LIMIT),
        "the new source never ran\n{}",
        child.stderr()
    );
    assert!(
        wait_until(
            || ids_in(&p, "store")
                .iter()
                .filter(|id| id.starts_with('n'))
                .count()
                == 10,
            LIMIT
        ),
        "never stored every new record"
    );
    assert!(child.terminate(LIMIT).is_some_and(|s| s.success()));

    let old = api.requests_to("/old");
    let new = api.requests_to("/new");
    assert_eq!(
        new[0].query_value("since"),
        None,
        "the first request of a source collected from scratch carries no watermark"
    );
    let last_old = old.last().unwrap();
    assert!(
        new[0].at >= last_old.at + Duration::from_millis(1400),
        "the new source started while the old one's request was in flight"
    );
}

/// While a run holds the data directory, `dump` and `state` answer for the pipeline it
/// runs now: after a reload, a new sink can be dumped, a new source is listed and a
/// removed one is not.
#[test]
fn dump_and_state_answer_for_the_reloaded_pipeline() {
    let api = TestApi::start_blocking();
    for path in ["/b", "/c"] {
        api.serve(path, Paging::wrapped("data"));
    }
    api.set_records("/b", records::make(3));
    api.set_records("/c", records::range(100, 4));
    let text = |source: &str| {
        format!(
            r#"
service api {{ base_url = "{}" }}
source {source} from api {{
  get = "/{source}"  schedule = every(200ms)  records = $.data[*]  key = id
  fields {{ id : string = $.id }}
}}
sink store_{source} = sled("{source}")
flow {source} -> store_{source}
"#,
            api.url()
        )
    };
    let p = Pipeline::new(&text("b"));
    let mut child = run_watching(&p);
    assert!(api.wait_for_hits_blocking("/b", 1, LIMIT), "b never ran");
    save(&p.file, &text("c"));
    assert!(
        api.wait_for_hits_blocking("/c", 2, LIMIT),
        "c never ran twice\n{}",
        child.stderr()
    );
    let mut state = p.cmd(&["state", "--data-dir"]);
    let state = state.arg(&p.data).output().unwrap();
    let state = String::from_utf8_lossy(&state.stdout).to_string();
    assert!(state.lines().any(|l| l == "c"), "{state}");
    assert!(!state.lines().any(|l| l == "b"), "{state}");
    assert_eq!(ids_in(&p, "store_c").len(), 4);
    assert!(child.terminate(LIMIT).is_some_and(|s| s.success()));
}
