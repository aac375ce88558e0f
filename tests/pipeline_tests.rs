//! `hamstr test FILE [--update]`: the examples pass their tests recorded against the
//! demo API; an edited expected file fails with a readable diff and `--update` restores
//! it; a test recorded against the fake API; a pipeline that asks what was not recorded
//! fails. `record_examples_against_the_demo_api` (ignored) makes the examples' recordings.

mod support;

use std::path::{Path, PathBuf};
use support::cli::{assert_contains, hamstr, one_source, stderr, text, Pipeline};
use support::{records, Paging, TestApi};

/// The examples that have tests, recorded against the demo API.
const TESTED_EXAMPLES: [&str; 3] = ["restaurant", "order_items", "restaurant_pg"];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Copies a folder, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn the_examples_pass_their_recorded_tests_and_write_nothing_beside_them() {
    for name in TESTED_EXAMPLES {
        let file = examples().join(format!("{name}.hmr"));
        let out = hamstr()
            .arg("test")
            .arg(&file)
            .env_remove("POS_URL")
            .env_remove("PAY_URL")
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert_contains(&stderr(&out), &format!("test {name}/demo: ok"));
        assert_contains(&stderr(&out), "1 passed, 0 failed");
    }
    assert!(!examples().join(".hamstr").exists());
    assert!(!examples().join("out").exists());
}

#[test]
fn an_edited_expected_file_fails_with_a_diff_and_update_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("restaurant.hmr"),
        dir.path().join("restaurant.hmr"),
    )
    .unwrap();
    copy_dir(
        &examples().join("tests/restaurant"),
        &dir.path().join("tests/restaurant"),
    );
    let file = dir.path().join("restaurant.hmr");
    let expected = dir
        .path()
        .join("tests/restaurant/demo/expected/orders.jsonl");
    let original = std::fs::read_to_string(&expected).unwrap();
    let first = original.lines().next().unwrap().to_string();
    let mut record: serde_json::Value = serde_json::from_str(&first).unwrap();
    record["amount"] = serde_json::json!("0.01");
    let edited = original.replacen(&first, &record.to_string(), 1);
    std::fs::write(&expected, &edited).unwrap();

    let out = hamstr().arg("test").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert_contains(&err, "test restaurant/demo: FAILED");
    assert_contains(&err, "sink `orders`");
    assert_contains(&err, &format!("-{}", record));
    assert_contains(&err, &format!("+{first}"));
    assert_contains(&err, "0 passed, 1 failed");
    // Only the changed record is in the diff, not the whole sink.
    assert!(
        err.lines()
            .filter(|l| l.trim_start().starts_with('+'))
            .count()
            <= 2,
        "{err}"
    );

    let out = hamstr()
        .arg("test")
        .arg(&file)
        .arg("--update")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&expected).unwrap(), original);
    let out = hamstr().arg("test").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nothing was written beside the pipeline but the expected files.
    assert!(!dir.path().join(".hamstr").exists());
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_test_recorded_against_the_fake_api_and_what_breaks_it() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(23));
    api.serve("/orders", Paging::page(10));
    let body = r#"  get = "/orders"
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records = $.data[*]"#;
    let p = Pipeline::new(&one_source(&api.url(), body));
    let recording = p.path("tests/first/recording");
    let out = p
        .cmd(&["run", "--once", "--record"])
        .arg(&recording)
        .arg("--data-dir")
        .arg(&p.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let collected = p.jsonl("out/src.jsonl");
    drop(api);

    // No expected file yet: a failure that says how to write it.
    let out = p.cmd(&["test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(
        &stderr(&out),
        "no expected file; the sink received 23 record(s)",
    );
    let out = p.cmd(&["test", "--update"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(p.jsonl("tests/first/expected/lines.jsonl"), collected);
    let out = p.cmd(&["test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_contains(&stderr(&out), "test first: ok");
    // The test wrote to none of the pipeline's sinks.
    assert_eq!(p.jsonl("out/src.jsonl"), collected);

    // A stale expected file, then a pipeline asking a page size that was not recorded.
    std::fs::write(p.path("tests/first/expected/gone.jsonl"), "").unwrap();
    let out = p.cmd(&["test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(&stderr(&out), "gone.jsonl` names no sink of the pipeline");
    std::fs::remove_file(p.path("tests/first/expected/gone.jsonl")).unwrap();
    p.rewrite(&one_source(
        "http://127.0.0.1:9",
        &body.replace("size = 10", "size = 20"),
    ));
    let out = p.cmd(&["test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(
        &stderr(&out),
        "replay: no recorded exchange answers GET http://127.0.0.1:9/orders?page=1&per_page=20",
    );

    let empty = Pipeline::new(&one_source("http://127.0.0.1:9", body));
    let out = empty.cmd(&["test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "no tests for");
}

/// Makes the examples' recordings and expected files against the demo API (static
/// data, on its default port 8700, which the examples default to):
/// `cargo test --test pipeline_tests -- --ignored record_examples`.
#[test]
#[ignore = "rewrites examples/tests; run by hand when the demo API or the examples change"]
fn record_examples_against_the_demo_api() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:8700"))
        .expect("port 8700 must be free to record the examples");
    let config = hamstr::app::demo::DemoConfig {
        new_order_every: None,
        ..Default::default()
    };
    rt.spawn(hamstr::app::demo::serve(listener, config));
    for name in TESTED_EXAMPLES {
        let file = examples().join(format!("{name}.hmr"));
        let test = examples().join("tests").join(name).join("demo");
        let _ = std::fs::remove_dir_all(&test);
        let data = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        // Recorded from a copy, so that its sinks write into the scratch folder.
        let copy = scratch.path().join(format!("{name}.hmr"));
        std::fs::copy(&file, &copy).unwrap();
        let out = hamstr()
            .args(["run", "--once", "--no-watch", "--record"])
            .arg(test.join("recording"))
            .arg("--data-dir")
            .arg(data.path())
            .arg(&copy)
            .env_remove("POS_URL")
            .env_remove("PAY_URL")
            .env("DATABASE_URL", "postgres://127.0.0.1:9/none")
            .output()
            .unwrap();
        // restaurant_pg's database is not there: its records wait in the queue (exit 1),
        // every request was made all the same.
        assert!(
            out.status.code() == Some(0) || name == "restaurant_pg",
            "{name}: {}",
            text(&out)
        );
        let out = hamstr()
            .arg("test")
            .arg(&file)
            .arg("--update")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    }
}
