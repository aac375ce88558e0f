//! Sinks and the CLI around `run` (spec §5.3, §6, §8, §9): sled upserts and `dump`
//! (jsonl and csv), jsonl appends and path resolution, stdout, fan-in and fan-out,
//! child sources, `state` and `state --reset`, `graph`, the data-directory lock, and
//! the exit codes of `run --once`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cli::{
    assert_contains, hamstr, id_range, ids, json_lines, one_source, service, sorted_ids, stderr,
    stdout, text, Pipeline, FIELDS,
};
use support::{records, Fault, Paging, TestApi};

const PATH: &str = "/items";

fn api_with(n: usize) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records(PATH, records::make(n));
    api.serve(PATH, Paging::page(5));
    api
}

/// One source `src` from `/items` (paged) into the sinks declared in `sinks`.
fn pipeline(url: &str, sinks: &str, flow: &str) -> String {
    format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page(size_param = \"per_page\", size = 5)\n  records = $.data[*]\n{FIELDS}\n}}\n{sinks}\nflow src -> {flow}\n",
        service(url, "")
    )
}

/// Records whose ids start with `prefix` instead of `r`.
fn prefixed(prefix: &str, n: usize) -> Vec<Value> {
    records::make(n)
        .into_iter()
        .map(|mut r| {
            let id = r["id"].as_str().unwrap().replacen('r', prefix, 1);
            r["id"] = json!(id);
            r
        })
        .collect()
}

// ---- sled and dump -------------------------------------------------------------------

#[test]
fn sled_upserts_by_key_and_dump_shows_one_record_per_key() {
    let api = api_with(10);
    let p = Pipeline::new(&pipeline(
        &api.url(),
        "sink store = sled(\"items\")",
        "store",
    ));
    p.run_ok();
    assert_eq!(sorted_ids(&p.dump("store")), id_range(1, 10));

    api.upsert_record(
        PATH,
        "id",
        records::changed(&records::record(2), "amount", json!("0.01")),
    );
    api.push_records(PATH, records::range(11, 2));
    p.run_ok();
    let rows = p.dump("store");
    assert_eq!(sorted_ids(&rows), id_range(1, 12), "one record per key");
    let two = rows.iter().find(|r| r["id"] == "r00002").unwrap();
    assert_eq!(
        two["amount"],
        json!("0.01"),
        "the update replaced the record"
    );
    assert_eq!(two["created_at"], json!(records::created_at(2)));

    let csv = p.ok(&["dump", "store", "--format", "csv", "--data-dir"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,seq,created_at,amount,currency");
    assert_eq!(lines.len(), 13, "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("r00002,2,") && l.contains(",0.01,")),
        "{csv}"
    );
    // Nothing rejected: an empty CSV, not a row holding one empty field.
    let none = p.ok(&["dump", "src", "--rejected", "--format", "csv", "--data-dir"]);
    assert_eq!(none, "");
}

// ---- jsonl ----------------------------------------------------------------------------

#[test]
fn jsonl_appends_relative_to_the_pipeline_folder() {
    let api = api_with(10);
    let p = Pipeline::new(&pipeline(
        &api.url(),
        "sink lines = jsonl(\"out/deep/items.jsonl\")",
        "lines",
    ));
    let elsewhere = tempfile::tempdir().unwrap();
    // an absolute pipeline path, run from another folder, default data directory
    let out = hamstr()
        .current_dir(elsewhere.path())
        .args(["run", "--once"])
        .arg(&p.file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(ids(&p.jsonl("out/deep/items.jsonl")), id_range(1, 10));
    assert!(
        p.path(".hamstr").is_dir(),
        "the data directory sits beside the file"
    );
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none(),
        "nothing in the cwd"
    );

    // a relative pipeline path from the folder above: the lines are appended
    api.push_records(PATH, records::range(11, 3));
    let parent = p.dir.path().parent().unwrap();
    let rel = p.file.strip_prefix(parent).unwrap();
    let out = hamstr()
        .current_dir(parent)
        .args(["run", "--once"])
        .arg(rel)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(ids(&p.jsonl("out/deep/items.jsonl")), id_range(1, 13));
}

// ---- stdout ---------------------------------------------------------------------------

#[test]
fn stdout_prints_json_lines_with_null_for_missing_optionals() {
    let api = api_with(6);
    let text_ = format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page(size_param = \"per_page\", size = 5)\n  records = $.data[*]\n  key = id\n  fields {{\n    id : string = $.id\n    amount : decimal = $.amount\n    note : string? = $.note\n  }}\n}}\nsink console = stdout()\nflow src -> console\n",
        service(&api.url(), "")
    );
    let p = Pipeline::new(&text_);
    let out = p.run_once();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(ids(&lines), id_range(1, 6));
    assert_eq!(
        lines[0],
        json!({"id": "r00001", "amount": "12.50", "note": null})
    );
    assert!(!stdout(&out).contains("run"), "the summary goes to stderr");
}

// ---- fan-in and fan-out -----------------------------------------------------------------

#[test]
fn two_sources_feed_one_sink_and_one_source_feeds_three() {
    let api = TestApi::start_blocking();
    api.set_records("/a", prefixed("a", 4));
    api.set_records("/b", prefixed("b", 3));
    let src = |name: &str, path: &str| {
        format!("source {name} from api {{\n  get = \"{path}\"\n  schedule = once\n{FIELDS}\n}}\n")
    };
    let p = Pipeline::new(&format!(
        "{}\n{}\n{}\nsink store = sled(\"all\")\nsink lines = jsonl(\"a.jsonl\")\nsink console = stdout()\nflow src_a, src_b -> store\nflow src_a -> lines, console\n",
        service(&api.url(), ""),
        src("src_a", "/a"),
        src("src_b", "/b"),
    ));
    let out = p.run_once();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut all: Vec<String> = [
        "a00001", "a00002", "a00003", "a00004", "b00001", "b00002", "b00003",
    ]
    .map(String::from)
    .to_vec();
    all.sort();
    assert_eq!(sorted_ids(&p.dump("store")), all);
    let a: Vec<String> = all[..4].to_vec();
    assert_eq!(ids(&p.jsonl("a.jsonl")), a);
    assert_eq!(ids(&json_lines(&stdout(&out))), a);
}

// ---- child sources -----------------------------------------------------------------------

fn parent(id: &str, seq: u64) -> Value {
    let mut r = records::record(seq);
    r["id"] = json!(id);
    r
}

#[test]
fn child_sources_run_once_per_new_or_changed_parent() {
    let api = TestApi::start_blocking();
    api.set_records(
        "/orders",
        vec![parent("o1", 1), parent("a b", 2), parent("x/y", 3)],
    );
    // routes as the encoded path arrives: a raw space or slash would miss them
    let items = |id: &str| json!({ "items": [ { "sku": format!("{id}-1"), "qty": 1 }, { "sku": format!("{id}-2"), "qty": 2 } ] });
    api.set_json("/orders/o1/items", items("o1"));
    api.set_json("/orders/a%20b/items", items("a b"));
    api.set_json("/orders/x%2Fy/items", items("x/y"));
    api.set_json("/orders/n1/items", items("n1"));
    let p = Pipeline::new(&format!(
        "{}\nsource orders from api {{\n  get = \"/orders\"\n  schedule = once\n{FIELDS}\n}}\nsource order_items from api {{\n  for_each = orders\n  get = \"/orders/{{id}}/items\"\n  records = $.items[*]\n  key = [order_id, sku]\n  fields {{\n    order_id : string = parent.id\n    sku : string = $.sku\n    qty : int = $.qty\n  }}\n}}\nsink store = sled(\"orders\")\nsink items = sled(\"items\")\nflow orders -> store\nflow order_items -> items\n",
        service(&api.url(), "")
    ));
    let hits = |api: &TestApi| {
        [
            "/orders/o1/items",
            "/orders/a%20b/items",
            "/orders/x%2Fy/items",
            "/orders/n1/items",
        ]
        .map(|path| api.requests().iter().filter(|r| r.path == path).count())
    };
    p.run_ok();
    assert_eq!(hits(&api), [1, 1, 1, 0]);
    let rows = p.dump("items");
    assert_eq!(rows.len(), 6);
    assert!(
        rows.contains(&json!({"order_id": "x/y", "sku": "x/y-2", "qty": 2})),
        "{rows:?}"
    );
    assert!(
        rows.contains(&json!({"order_id": "a b", "sku": "a b-1", "qty": 1})),
        "{rows:?}"
    );

    p.run_ok();
    assert_eq!(
        hits(&api),
        [1, 1, 1, 0],
        "unchanged parents trigger nothing"
    );

    api.upsert_record(
        "/orders",
        "id",
        records::changed(&parent("a b", 2), "amount", json!("1.00")),
    );
    api.push_records("/orders", vec![parent("n1", 4)]);
    p.run_ok();
    assert_eq!(
        hits(&api),
        [1, 2, 1, 1],
        "the changed and the new parent only"
    );
    assert_eq!(p.dump("items").len(), 8);
    assert_contains(&p.state(), "pending parent records: 0");
}

// ---- state ------------------------------------------------------------------------------

/// `dump SOURCE` prints what a source holds: the keys it remembers (with their cursor
/// under `incremental`), one object each.
#[test]
fn dump_of_a_source_lists_the_keys_it_remembers() {
    let api = api_with(4);
    let p = Pipeline::new(&pipeline(
        &api.url(),
        "sink store = sled(\"items\")",
        "store",
    ));
    p.run_ok();
    let keys = p.dump("src");
    assert_eq!(
        keys,
        (1..=4)
            .map(|i| json!({ "key": { "id": format!("r{i:05}") } }))
            .collect::<Vec<_>>()
    );

    let p = Pipeline::new(
        &pipeline(&api.url(), "sink store = sled(\"items\")", "store").replace(
            "records = $.data[*]",
            "records = $.data[*]\n  incremental { cursor = created_at }",
        ),
    );
    p.run_ok();
    // Only the keys at the watermark stay (the ties); older ones are pruned.
    assert_eq!(
        p.dump("src"),
        [json!({ "key": { "id": "r00004" }, "cursor": records::created_at(4) })]
    );
}

#[test]
fn state_shows_the_watermark_and_counts_and_reset_starts_over() {
    let api = api_with(10);
    let text_ = pipeline(
        &api.url(),
        "sink lines = jsonl(\"out/items.jsonl\")",
        "lines",
    )
    .replace(
        "records = $.data[*]",
        "records = $.data[*]\n  incremental { cursor = created_at }",
    );
    let p = Pipeline::new(&text_);
    p.run_ok();
    let state = p.state();
    assert_contains(&state, "src");
    assert_contains(
        &state,
        &format!("watermark:    \"{}\"", records::created_at(10)),
    );
    assert_contains(&state, "records seen: 10");
    assert_contains(&state, "emitted: 10");
    assert_contains(&state, "runs:         1");
    assert_contains(&state, "last error:   none");

    p.run_ok();
    assert_eq!(p.jsonl("out/items.jsonl").len(), 10);

    let mut c = p.cmd(&["state", "--reset", "src", "--data-dir"]);
    let out = c.arg(&p.data).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_contains(&stdout(&out), "watermark:    none");
    p.run_ok();
    assert_eq!(
        ids(&p.jsonl("out/items.jsonl")[10..]),
        id_range(1, 10),
        "everything is collected again"
    );

    let mut c = p.cmd(&["state", "--reset", "nope", "--data-dir"]);
    let out = c.arg(&p.data).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_contains(&stderr(&out), "nope");
}

// ---- graph ------------------------------------------------------------------------------

#[test]
fn graph_shows_the_nodes_and_no_secret() {
    let token = "tok-Graph-5ecret-1";
    let key = "qkey-Graph-5ecret-2";
    let header = "hdr-Graph-5ecret-3";
    // Passwords and tokens in URLs too: a base URL's userinfo, a webhook's password and
    // the token in its query.
    let base_pw = "basepw-Graph-5ecret-4";
    let hook_pw = "hookpw-Graph-5ecret-5";
    let hook_token = "hooktok-Graph-5ecret-6";
    let text_ = format!(
        "service api {{\n  base_url = \"http://user:{base_pw}@127.0.0.1:9/v1\"\n  auth = bearer(env(\"HMR_T_TOKEN\"))\n  headers {{ \"X-Extra\" = env(\"HMR_T_HEADER\") }}\n}}\nsource src from api {{\n  get = \"/items\"\n  query {{ key = env(\"HMR_T_KEY\") }}\n  schedule = every(1m)\n  where = currency == \"EUR\"\n{FIELDS}\n}}\nsink store = sled(\"items\")\nsink lines = jsonl(\"out/x.jsonl\")\nsink hook = webhook(\"http://u:{hook_pw}@127.0.0.1:9/in?token={hook_token}\")\nflow src -> store, lines, hook\n"
    );
    let p = Pipeline::new(&text_);
    for format in ["dot", "mermaid"] {
        let out = p
            .cmd(&["graph", "--format", format])
            .env("HMR_T_TOKEN", token)
            .env("HMR_T_KEY", key)
            .env("HMR_T_HEADER", header)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        for node in [
            "source:src",
            "extract:src",
            "filter:src",
            "sink:store",
            "sink:lines",
        ] {
            assert_contains(&all, node);
        }
        for secret in [token, key, header, base_pw, hook_pw, hook_token] {
            assert!(!all.contains(secret), "{format} shows a secret:\n{all}");
        }
    }
}

// ---- the data-directory lock and exit codes ----------------------------------------------

#[test]
fn a_second_run_on_the_same_data_dir_is_refused() {
    let api = api_with(3);
    let p = Pipeline::new(
        &pipeline(&api.url(), "sink store = sled(\"items\")", "store")
            .replace("schedule = once", "schedule = every(1h)"),
    );
    let mut first = p.spawn_run(&["--no-watch"]);
    assert!(
        api.wait_for_hits_blocking(PATH, 1, Duration::from_secs(30)),
        "the first run never polled"
    );
    let second = p.run_once();
    first.kill();
    assert_ne!(second.status.code(), Some(0), "{}", text(&second));
    let err = stderr(&second);
    assert_contains(&err, "in use");
    assert_contains(&err, &p.data.display().to_string());
}

#[test]
fn run_once_exits_0_on_success_and_1_when_a_source_failed() {
    let api = api_with(3);
    let p = Pipeline::new(&one_source(&api.url(), "get = \"/items\"\n  paginate = page(size_param = \"per_page\", size = 5)\n  records = $.data[*]"));
    let summary = p.run_ok();
    assert_contains(&summary, "src: 1 run");

    api.fail_always(PATH, Fault::Status(404));
    let summary = p.run_failing();
    assert_contains(&summary, "FAILED");
    assert_contains(&summary, "404");
}

#[test]
fn a_failed_child_request_is_retried_and_filtered_parents_trigger_nothing() {
    let api = TestApi::start_blocking();
    // record 4 is in USD and filtered out by the parent's `where`
    api.set_records("/orders", records::make(4));
    for seq in 1..=4 {
        api.set_json(
            &format!("/orders/{}/items", records::id(seq)),
            json!({ "items": [ { "sku": "s", "qty": seq } ] }),
        );
    }
    api.fail_always("/orders/r00002/items", Fault::Status(503));
    let p = Pipeline::new(&format!(
        "{}\nsource orders from api {{\n  get = \"/orders\"\n  schedule = once\n  where = currency == \"EUR\"\n{FIELDS}\n}}\nsource order_items from api {{\n  for_each = orders\n  get = \"/orders/{{id}}/items\"\n  records = $.items[*]\n  key = [order_id, sku]\n  fields {{\n    order_id : string = parent.id\n    sku : string = $.sku\n    qty : int = $.qty\n  }}\n}}\nsink items = sled(\"items\")\nflow order_items -> items\n",
        service(&api.url(), "")
    ));
    let summary = p.run_failing();
    assert_contains(&summary, "order_items");
    assert_eq!(
        api.hits("/orders/r00004/items"),
        0,
        "a filtered parent triggers nothing"
    );
    let orders: Vec<String> = p
        .dump("items")
        .iter()
        .map(|r| r["order_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_contains(&p.state(), "pending parent records: 1");

    api.clear_faults("/orders/r00002/items");
    let before = api.hits("/orders/r00001/items");
    p.run_ok();
    assert_eq!(
        api.hits("/orders/r00001/items"),
        before,
        "done requests are not repeated"
    );
    let mut orders: Vec<String> = p
        .dump("items")
        .iter()
        .map(|r| r["order_id"].as_str().unwrap().to_string())
        .collect();
    orders.sort();
    assert_eq!(orders, ["r00001", "r00002", "r00003"]);
    assert_contains(&p.state(), "pending parent records: 0");
    assert_eq!(api.hits("/orders/r00004/items"), 0);
}

#[test]
fn state_answers_while_a_run_holds_the_data_dir() {
    let api = api_with(3);
    let p = Pipeline::new(
        &pipeline(&api.url(), "sink store = sled(\"items\")", "store")
            .replace("schedule = once", "schedule = every(1h)"),
    );
    assert_contains(&state_while_running(&p, &api), "src");
}

/// `hamstr state` asked while `run` holds the data directory (once it has polled).
fn state_while_running(p: &Pipeline, api: &TestApi) -> String {
    let mut running = p.spawn_run(&["--no-watch"]);
    assert!(
        api.wait_for_hits_blocking(PATH, 1, Duration::from_secs(30)),
        "the run never polled"
    );
    let mut c = p.cmd(&["state", "--data-dir"]);
    let state = c.arg(&p.data).output().unwrap();
    running.kill();
    assert_eq!(state.status.code(), Some(0), "{}", text(&state));
    stdout(&state)
}

/// A data directory whose path is too long for a Unix socket (about 100 bytes): the run
/// still starts, and `state` still gets its answer from it.
#[test]
fn a_data_dir_with_a_long_path_still_answers_while_running() {
    let api = api_with(3);
    let mut p = Pipeline::new(
        &pipeline(&api.url(), "sink store = sled(\"items\")", "store")
            .replace("schedule = once", "schedule = every(1h)"),
    );
    p.data = p.path(&format!("{}/{}/data", "d".repeat(60), "e".repeat(60)));
    assert!(p.data.join("control.sock").as_os_str().len() > 110);
    assert_contains(&state_while_running(&p, &api), "records seen: 3");
}

#[test]
fn run_repeats_on_its_schedule_and_exits_0_on_sigterm() {
    let api = api_with(3);
    let p = Pipeline::new(
        &pipeline(&api.url(), "sink store = sled(\"items\")", "store")
            .replace("schedule = once", "schedule = every(1s)"),
    );
    let mut running = p.spawn_run(&["--no-watch"]);
    // three records, pages of five: one request per run
    assert!(
        api.wait_for_hits_blocking(PATH, 3, Duration::from_secs(30)),
        "fewer than three runs"
    );
    let status = running.terminate(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit 0 after SIGTERM"
    );
    let reqs = api.requests_to(PATH);
    assert!(
        reqs[2].at - reqs[0].at >= Duration::from_millis(1500),
        "runs start every second, not sooner"
    );
    assert_eq!(sorted_ids(&p.dump("store")), id_range(1, 3));
    assert_contains(&p.state(), "runs:");
}

/// `cron` runs at its times only, not at start as `every` does; `--once` runs it now.
#[test]
fn a_cron_source_waits_for_its_time_and_once_runs_it_now() {
    let api = api_with(3);
    api.set_records("/yearly", records::make(2));
    api.serve("/yearly", Paging::page(5));
    let source = |name: &str, path: &str, schedule: &str| {
        format!(
            "source {name} from api {{\n  get = \"{path}\"\n  schedule = {schedule}\n  records = $.data[*]\n{FIELDS}\n}}\n"
        )
    };
    let text = format!(
        "{}\n{}{}sink store = sled(\"items\")\nflow src, yearly -> store\n",
        service(&api.url(), ""),
        source("src", PATH, "every(500ms)"),
        source("yearly", "/yearly", "cron(\"0 0 1 1 *\")"),
    );
    let p = Pipeline::new(&text);
    let mut running = p.spawn_run(&["--no-watch"]);
    // The `every` source ran three times: the cron source had every chance to run.
    assert!(api.wait_for_hits_blocking(PATH, 3, Duration::from_secs(30)));
    running.kill();
    assert!(api.requests_to("/yearly").is_empty(), "cron ran at start");

    p.run_ok();
    assert_eq!(api.requests_to("/yearly").len(), 1, "--once runs it");
}

// ---- what sinks hold ------------------------------------------------------------------------

#[test]
fn jsonl_cuts_a_half_written_line_of_its_own_and_writes_values_as_the_spec_says() {
    let api = TestApi::start_blocking();
    // raw bytes: an exact decimal number and a datetime with an offset
    let answer = |ids: &[u32]| {
        let items: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id": {id}, "seq": "{id}", "created_at": "2026-01-01T02:00:00+02:00", "amount": 12.50, "currency": "EUR"}}"#))
            .collect();
        support::Reply::text(200, "application/json", format!("[{}]", items.join(",")))
    };
    api.set_reply(PATH, answer(&[7]));
    let p = Pipeline::new(&one_source(&api.url(), "get = \"/items\""));
    p.run_ok();
    // A write of hamstr's cut short (a crash mid-line): the next write cuts it first.
    // (A file hamstr did not write is never cut: see `hostile_state.rs`.)
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(p.path("out/src.jsonl"))
        .unwrap()
        .write_all(b"{\"id\":\"torn")
        .unwrap();
    api.set_reply(PATH, answer(&[7, 8]));
    p.run_ok();
    let record = |id: &str, seq: u32| json!({"id": id, "seq": seq, "created_at": "2026-01-01T00:00:00Z", "amount": "12.50", "currency": "EUR"});
    assert_eq!(
        p.jsonl("out/src.jsonl"),
        vec![record("7", 7), record("8", 8)]
    );
}

/// A jsonl sink at `file` that cannot take records while `block` holds: `n` records
/// wait in its queue (the run fails saying `why`), then, once `unblock` ran, arrive in
/// order, and only once.
fn queued_while_blocked_then_delivered(
    n: usize,
    file: &str,
    block: impl Fn(&Pipeline),
    why: &str,
    unblock: impl Fn(&Pipeline),
) {
    let api = api_with(n);
    let p = Pipeline::new(&pipeline(
        &api.url(),
        &format!("sink lines = jsonl(\"{file}\")"),
        "lines",
    ));
    block(&p);
    let summary = p.run_failing();
    assert_contains(&summary, "still wait");
    assert_contains(&summary, why);
    let state = p.state();
    assert_contains(&state, &format!("emitted: {n}"));
    assert_contains(
        &state,
        &format!("sink lines: {} pages waiting in its queue", n.div_ceil(5)),
    );
    // `state` says why, not only how many.
    assert_contains(&state, "; last error: ");
    assert_contains(&state, why);

    unblock(&p);
    p.run_ok();
    assert!(!p.state().contains("waiting in its queue"));
    assert!(!p.state().contains("; last error: "));
    assert_eq!(ids(&p.jsonl(file)), id_range(1, n as u64));
    p.run_ok();
    assert_eq!(p.jsonl(file).len(), n, "delivered once");
}

#[test]
fn records_wait_in_the_queue_of_a_sink_that_is_down() {
    // a file where the sink's folder should be: the sink cannot open its file
    queued_while_blocked_then_delivered(
        7,
        "blocked/items.jsonl",
        |p| std::fs::write(p.path("blocked"), "not a folder").unwrap(),
        "cannot open",
        |p| std::fs::remove_file(p.path("blocked")).unwrap(),
    );
}

/// A full disk, for real: the jsonl file is `/dev/full`, where every write fails with
/// ENOSPC; once there is room (the file is a plain one again) the records arrive.
#[cfg(target_os = "linux")]
#[test]
fn records_wait_while_the_disk_of_a_jsonl_sink_is_full() {
    queued_while_blocked_then_delivered(
        9,
        "out/items.jsonl",
        |p| {
            std::fs::create_dir_all(p.path("out")).unwrap();
            std::os::unix::fs::symlink("/dev/full", p.path("out/items.jsonl")).unwrap();
        },
        "No space left on device",
        |p| std::fs::remove_file(p.path("out/items.jsonl")).unwrap(),
    );
}
