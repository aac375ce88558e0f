//! `run --record DIR` and `run --replay DIR`: exchanges recorded against the fake API
//! (with faults, pagination and credentials) as readable files holding no secret, then
//! replayed with the API gone into the same sink contents; a request the recording does
//! not hold fails the run, naming it.

mod support;

use serde_json::Value;
use support::cli::{assert_contains, service, stderr, text, Pipeline, FIELDS};
use support::{records, Auth, Fault, Paging, TestApi};

const TOKEN: &str = "tok-REC-5ecr3t";
const SIG: &str = "sig-Q-9a8b7c";

fn pipeline(url: &str, extra_query: &str) -> String {
    format!(
        r#"{}
source src from api {{
  get      = "/orders"
  query {{ sig = env("SIG") {extra_query} }}
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
{FIELDS}
}}

sink lines = jsonl("out/src.jsonl")
sink store = sled("orders")
flow src -> lines, store
"#,
        service(url, "  auth = bearer(env(\"TOKEN\"))")
    )
}

/// Every file of a folder, with its text.
fn files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_recorded_run_replays_without_the_api_into_the_same_records() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(35));
    api.serve("/orders", Paging::page(10));
    api.require(Auth::Bearer(TOKEN.into()));
    // Page 2 first loses its connection, page 3 first answers 503: both retried.
    api.fail_after("/orders", 1, Fault::CloseWithoutAnswer);
    api.fail_after("/orders", 1, Fault::Status(503));
    let p = Pipeline::new(&pipeline(&api.url(), ""));
    let recording = p.path("recording");
    let out = p
        .cmd(&["run", "--once", "--record"])
        .arg(&recording)
        .arg("--data-dir")
        .arg(&p.data)
        .env("TOKEN", TOKEN)
        .env("SIG", SIG)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let recorded = p.jsonl("out/src.jsonl");
    assert_eq!(recorded.len(), 35);
    let stored = p.dump("store");
    let hits = api.hits("/orders");
    assert_eq!(hits, 6, "4 pages, 2 retries");

    // One readable file per exchange, in order; no secret anywhere.
    let written = files(&recording);
    assert_eq!(
        written.len(),
        hits,
        "{:?}",
        written.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        written[0]
            .0
            .starts_with(&format!("00001-GET-127.0.0.1-{}-orders", api.port())),
        "{}",
        written[0].0
    );
    for (name, body) in &written {
        assert!(
            !body.contains(TOKEN) && !body.contains(SIG),
            "{name} holds a secret:\n{body}"
        );
        let x: Value = serde_json::from_str(body).unwrap();
        assert_eq!(x["request"]["method"], "GET");
        assert!(
            x["request"]["url"].as_str().unwrap().contains("sig=***"),
            "{body}"
        );
    }
    let first: Value = serde_json::from_str(&written[0].1).unwrap();
    assert_eq!(first["request"]["headers"]["authorization"], "***");
    assert_eq!(first["response"]["status"], 200);
    assert_eq!(first["response"]["body"]["data"][0]["id"], "r00001");
    let second: Value = serde_json::from_str(&written[1].1).unwrap();
    assert!(
        second["error"].is_string(),
        "the lost connection: {second:#}"
    );
    let fourth: Value = serde_json::from_str(&written[3].1).unwrap();
    assert_eq!(fourth["response"]["status"], 503);

    // Replay with the API gone, into a fresh data directory: the same records.
    drop(api);
    std::fs::remove_file(p.path("out/src.jsonl")).unwrap();
    let fresh = p.path("data2");
    let out = p
        .cmd(&["run", "--once", "--replay"])
        .arg(&recording)
        .arg("--data-dir")
        .arg(&fresh)
        .env("TOKEN", "another-token")
        .env("SIG", "another-sig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(p.jsonl("out/src.jsonl"), recorded);
    let mut replayed = p.cmd(&["dump", "store", "--data-dir"]);
    replayed.arg(&fresh);
    let replayed = replayed.output().unwrap();
    assert_eq!(
        support::cli::json_lines(&support::cli::stdout(&replayed)),
        stored
    );
    // The recording is left as it was.
    assert_eq!(files(&recording), written);

    // A pipeline that asks what was not recorded fails, naming the request.
    p.rewrite(&pipeline("http://127.0.0.1:9", "status = \"open\""));
    let out = p
        .cmd(&["run", "--once", "--replay"])
        .arg(&recording)
        .arg("--data-dir")
        .arg(p.path("data3"))
        .env("TOKEN", TOKEN)
        .env("SIG", SIG)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(
        &stderr(&out),
        "replay: no recorded exchange answers GET http://127.0.0.1:9/orders?sig=***&status=open&page=1&per_page=10",
    );
    assert!(!stderr(&out).contains(SIG));
}

#[test]
fn record_and_replay_refuse_folders_they_cannot_use() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(3));
    api.serve("/orders", Paging::page(10));
    let p = Pipeline::new(&pipeline(&api.url(), ""));
    let recording = p.path("rec");
    let record = |dir: &std::path::Path| {
        p.cmd(&["run", "--once", "--record"])
            .arg(dir)
            .arg("--data-dir")
            .arg(&p.data)
            .env("TOKEN", TOKEN)
            .env("SIG", SIG)
            .output()
            .unwrap()
    };
    assert_eq!(record(&recording).status.code(), Some(0));
    // A second recording into the same folder would mix two runs.
    let out = record(&recording);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "already holds a recording");

    let empty = p.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = p
        .cmd(&["run", "--once", "--replay"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "holds no recorded exchange");

    std::fs::write(empty.join("00001-GET-x.json"), "{ not json").unwrap();
    let out = p
        .cmd(&["run", "--once", "--replay"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "is not a recorded exchange");

    let out = p
        .cmd(&["run", "--once", "--record"])
        .arg(&recording)
        .arg("--replay")
        .arg(&recording)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
