//! Crash safety with tenants (the test of `crash.rs` for a chain of shops): `hamstr run`
//! killed with SIGKILL at random instants while it collects from three shops on three
//! servers whose data keeps growing and changing; at the end the shared sled sink keyed
//! `[shop, id]` holds exactly every shop's records.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::cli::hamstr_process;
use support::{records, Order, Paging, RunningHamstr, TestApi};

const KILLS: usize = 10;
const SHOPS: [&str; 3] = ["soho", "camden", "brixton"];

const PIPELINE: &str = r#"
tenants shops = csv("shops.csv")

service till for shops {
  base_url = tenant.url
  auth     = bearer(env(tenant.token_var))
  retry { attempts = 3  backoff = 50ms }
}

source orders from till {
  get      = "/orders"
  schedule = every(300ms)
  paginate = page(size_param = "per_page", size = 7)
  records  = $.data[*]
  key      = [shop, id]
  incremental { cursor = updated_at  param = "since" }
  fields {
    shop       : string   = tenant.name
    id         : string   = $.id
    seq        : int      = $.seq
    updated_at : datetime = $.updated_at
    name       : string   = $.name
  }
}

sink store = sled("orders")
flow orders -> store
"#;

fn token(shop: &str) -> String {
    format!("secret-{shop}")
}

fn var(shop: &str) -> String {
    format!("CRASH_TOKEN_{}", shop.to_uppercase())
}

#[test]
fn three_shops_killed_at_random_instants_lose_nothing_and_store_nothing_twice() {
    let apis: Vec<Arc<TestApi>> = SHOPS
        .iter()
        .enumerate()
        .map(|(i, shop)| {
            let api = TestApi::start_blocking();
            api.serve("/orders", Paging::page(7));
            api.set_order("/orders", Order::Ascending("updated_at".into()));
            api.set_since_filter("/orders", "since", "updated_at");
            api.set_records("/orders", records::make(30 + 10 * i));
            api.require(support::Auth::Bearer(token(shop)));
            Arc::new(api)
        })
        .collect();

    // Each shop's data keeps growing, at its own pace.
    let growing = Arc::new(AtomicBool::new(true));
    let growers: Vec<_> = apis
        .iter()
        .enumerate()
        .map(|(i, api)| {
            let (growing, api) = (growing.clone(), api.clone());
            std::thread::spawn(move || {
                let mut next = 31 + 10 * i as u64;
                while growing.load(Ordering::SeqCst) {
                    api.push_records("/orders", records::range(next, 1 + i));
                    next += 1 + i as u64;
                    // Paces the growth: time passing between batches is the point.
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chain.hmr");
    std::fs::write(&file, PIPELINE).unwrap();
    let mut csv = String::from("name,url,token_var\n");
    for (shop, api) in SHOPS.iter().zip(&apis) {
        csv.push_str(&format!("{shop},{},{}\n", api.url(), var(shop)));
    }
    std::fs::write(dir.path().join("shops.csv"), csv).unwrap();
    let data = dir.path().join("data");
    let bin = assert_cmd::cargo::cargo_bin("hamstr");
    let env: Vec<(String, String)> = SHOPS.iter().map(|s| (var(s), token(s))).collect();

    let mut rand = support::xorshift(0x2545_f491_4f6c_dd1du64);
    for kill in 0..KILLS {
        let mut run = hamstr_process();
        run.args(["run", "--no-watch", "--data-dir"])
            .arg(&data)
            .arg(&file)
            .env("RUST_LOG", "hamstr=warn")
            .envs(env.iter().cloned());
        let mut child = RunningHamstr::start(run);
        // Let time pass, at random: the kill lands at whatever the run is doing then
        // (opening the store, mid-request, mid-page, mid-commit).
        let after = if kill % 3 == 0 {
            5 + rand(80)
        } else {
            80 + rand(900)
        };
        std::thread::sleep(Duration::from_millis(after));
        child.kill();
    }
    growing.store(false, Ordering::SeqCst);
    for g in growers {
        g.join().unwrap();
    }

    // Two quiet runs after the storm: the first may still deliver queued pages.
    for _ in 0..2 {
        let out = Command::new(&bin)
            .args(["run", "--once", "--data-dir"])
            .arg(&data)
            .arg(&file)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let out = Command::new(&bin)
        .args(["dump"])
        .arg(&file)
        .arg("store")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: BTreeMap<(String, String), Value> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = (
            v["shop"].as_str().unwrap().to_string(),
            v["id"].as_str().unwrap().to_string(),
        );
        assert!(got.insert(key.clone(), v).is_none(), "{key:?} twice");
    }
    let mut want: BTreeMap<(String, String), Value> = BTreeMap::new();
    for (shop, api) in SHOPS.iter().zip(&apis) {
        for r in api.records("/orders") {
            let id = r["id"].as_str().unwrap().to_string();
            let row = json!({
                "shop": shop, "id": r["id"], "seq": r["seq"],
                "updated_at": r["updated_at"], "name": r["name"],
            });
            want.insert((shop.to_string(), id), row);
        }
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(got, want);
    eprintln!(
        "{} records of {} shops exactly once after {KILLS} kills",
        want.len(),
        SHOPS.len()
    );
}
