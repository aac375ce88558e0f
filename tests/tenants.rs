//! Tenants (spec §13) end to end: one definition run for the shops of a CSV file, each
//! shop on its own local server with its own data and token, into one sled sink keyed
//! `[shop, id]`; a second run; a failing shop; per-tenant `state`, `dump` and `try`;
//! live reload of the tenants file.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::cli::{assert_contains, stderr, text, Pipeline};
use support::{records, wait_until, Auth, Fault, Paging, TestApi};

const LIMIT: Duration = Duration::from_secs(30);

fn pipeline(schedule: &str) -> String {
    format!(
        r#"
tenants shops = csv("shops.csv")

service till for shops {{
  base_url = tenant.url
  auth     = bearer(env(tenant.token_var))
  retry {{ attempts = 1  backoff = 50ms }}
}}

source orders from till {{
  get      = "/orders"
  schedule = {schedule}
  paginate = page(size_param = "per_page", size = 4)
  records  = $.data[*]
  key      = [shop, id]
  incremental {{ cursor = updated_at  param = "since" }}
  fields {{
    shop       : string   = tenant.name
    id         : string   = $.id
    name       : string   = $.name
    updated_at : datetime = $.updated_at
  }}
}}

sink store = sled("orders")
flow orders -> store
"#
    )
}

/// One shop's server: `n` records named after the shop, behind its own token.
fn shop_api(shop: &str, n: usize) -> TestApi {
    let api = TestApi::start_blocking();
    let data = records::make(n)
        .into_iter()
        .map(|mut r| {
            r["name"] = json!(format!("{shop} {}", r["id"].as_str().unwrap()));
            r
        })
        .collect();
    api.set_records("/orders", data);
    api.serve("/orders", Paging::page(4));
    api.set_since_filter("/orders", "since", "updated_at");
    api.require(Auth::Bearer(token(shop)));
    api
}

fn token(shop: &str) -> String {
    format!("tok-{shop}-0123456789")
}

fn var(shop: &str) -> String {
    format!("HAMSTR_TEST_TOKEN_{}", shop.to_uppercase())
}

fn shops_csv(rows: &[(&str, &TestApi)]) -> String {
    let mut out = String::from("name,url,token_var\n");
    for (shop, api) in rows {
        out.push_str(&format!("{shop},{},{}\n", api.url(), var(shop)));
    }
    out
}

fn env_of(shops: &[&str]) -> Vec<(String, String)> {
    shops.iter().map(|s| (var(s), token(s))).collect()
}

fn run_once(p: &Pipeline, env: &[(String, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    p.run_once_with(&env)
}

/// The sink's records by (shop, id), from `dump`.
fn stored(p: &Pipeline) -> BTreeMap<(String, String), Value> {
    p.dump("store")
        .into_iter()
        .map(|r| {
            let shop = r["shop"].as_str().unwrap().to_string();
            let id = r["id"].as_str().unwrap().to_string();
            ((shop, id), r)
        })
        .collect()
}

/// What each shop's server holds, as the sink should hold it.
fn expected(shops: &[(&str, &TestApi)]) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (shop, api) in shops {
        for r in api.records("/orders") {
            let id = r["id"].as_str().unwrap().to_string();
            out.insert(
                (shop.to_string(), id),
                r["name"].as_str().unwrap().to_string(),
            );
        }
    }
    out
}

fn names(stored: &BTreeMap<(String, String), Value>) -> BTreeMap<(String, String), String> {
    stored
        .iter()
        .map(|(k, v)| (k.clone(), v["name"].as_str().unwrap().to_string()))
        .collect()
}

/// `orders[soho]: 1 run, 2 pages, 5 records, 5 new, 0 rejected`: the "new" count.
fn new_of(summary: &str, unit: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.starts_with(&format!("{unit}:")))
        .unwrap_or_else(|| panic!("no summary line for {unit} in\n{summary}"));
    line.split(", ")
        .find_map(|part| part.strip_suffix(" new"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no new count in {line}"))
}

#[test]
fn three_shops_into_one_keyed_sink_each_with_its_own_data_and_token() {
    let (soho, camden, brixton) = (
        shop_api("soho", 9),
        shop_api("camden", 5),
        shop_api("brixton", 3),
    );
    let shops = [("soho", &soho), ("camden", &camden), ("brixton", &brixton)];
    let p = Pipeline::new(&pipeline("every(1m)"));
    std::fs::write(p.path("shops.csv"), shops_csv(&shops)).unwrap();
    let env = env_of(&["soho", "camden", "brixton"]);

    let out = run_once(&p, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        names(&stored(&p)),
        expected(&shops),
        "every shop's records, exactly"
    );
    // The same ids (r00001...) at three shops are three records each.
    assert_eq!(stored(&p).len(), 9 + 5 + 3);

    // Each server saw only its own token.
    for (shop, api) in &shops {
        let auths: Vec<String> = api
            .requests()
            .iter()
            .map(|r| r.header("authorization").unwrap_or("").to_string())
            .collect();
        assert!(!auths.is_empty());
        assert!(
            auths
                .iter()
                .all(|a| *a == format!("Bearer {}", token(shop))),
            "{shop} saw {auths:?}"
        );
    }

    // A second run: soho gets two new records, one of camden's changes, brixton stays.
    soho.push_records("/orders", records::range(10, 2));
    let mut changed = camden.records("/orders")[2].clone();
    changed["name"] = json!("camden renamed");
    changed["updated_at"] = json!("2027-01-01T00:00:00Z");
    camden.upsert_record("/orders", "id", changed);
    let out = run_once(&p, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = stderr(&out);
    assert_eq!(new_of(&summary, "orders[soho]"), 2, "{summary}");
    assert_eq!(new_of(&summary, "orders[camden]"), 1, "{summary}");
    assert_eq!(new_of(&summary, "orders[brixton]"), 0, "{summary}");
    assert_eq!(names(&stored(&p)), expected(&shops));

    // Per tenant: state lists each unit, dump reads one unit's keys.
    let state = p.state();
    for shop in ["soho", "camden", "brixton"] {
        assert_contains(&state, &format!("orders[{shop}]\n"));
    }
    let keys = p.ok(&["dump", "orders", "--tenant", "brixton", "--data-dir"]);
    assert_eq!(keys.lines().count(), 3, "{keys}");

    // `state --reset orders[camden]` forgets that unit only: its next run takes all.
    p.ok(&["state", "--reset", "orders[camden]", "--data-dir"]);
    let out = run_once(&p, &env);
    let summary = stderr(&out);
    assert_eq!(new_of(&summary, "orders[camden]"), 5, "{summary}");
    assert_eq!(new_of(&summary, "orders[soho]"), 0, "{summary}");
}

#[test]
fn one_failing_shop_does_not_stop_the_others_and_state_names_it() {
    let (soho, camden, brixton) = (
        shop_api("soho", 6),
        shop_api("camden", 4),
        shop_api("brixton", 2),
    );
    // The failing server echoes the shop's token: it is masked like every secret.
    camden.fail_always(
        "/orders",
        Fault::StatusWithBody(
            500,
            format!(r#"{{"error":"bad token {}"}}"#, token("camden")),
        ),
    );
    let shops = [("soho", &soho), ("camden", &camden), ("brixton", &brixton)];
    let p = Pipeline::new(&pipeline("every(1m)"));
    std::fs::write(p.path("shops.csv"), shops_csv(&shops)).unwrap();
    let mut env = env_of(&["soho", "camden", "brixton"]);
    env.push(("RUST_LOG".into(), "trace".into()));
    let out = run_once(&p, &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_contains(&stderr(&out), "orders[camden]");
    let got = stored(&p);
    assert_eq!(got.keys().filter(|(s, _)| s == "soho").count(), 6);
    assert_eq!(got.keys().filter(|(s, _)| s == "brixton").count(), 2);
    assert_eq!(got.keys().filter(|(s, _)| s == "camden").count(), 0);

    let state = p.state();
    let block = |unit: &str| -> String {
        let start = state.find(&format!("{unit}\n")).unwrap();
        state[start..]
            .lines()
            .take_while(|l| l.starts_with(unit) || l.starts_with("  "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_contains(&block("orders[camden]"), "500");
    assert_contains(&block("orders[soho]"), "last error:   none");
    assert_contains(&block("orders[brixton]"), "last error:   none");
    // The failure names no token, though the server said it (and the run logged at
    // `trace`).
    assert!(!state.contains(&token("camden")));
    for shop in ["soho", "camden", "brixton"] {
        assert!(
            !stderr(&out).contains(&token(shop)),
            "{shop}'s token in the log"
        );
    }
}

#[test]
fn try_and_dump_take_a_tenant() {
    let soho = shop_api("soho", 3);
    let p = Pipeline::new(&pipeline("every(1m)"));
    std::fs::write(p.path("shops.csv"), shops_csv(&[("soho", &soho)])).unwrap();
    let out = p
        .cmd(&["try", "orders"])
        .env(var("soho"), token("soho"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &stderr(&out),
        "runs per tenant: add --tenant NAME (tenants: `soho`)",
    );
    let out = p
        .cmd(&["try", "orders", "--tenant", "sohoo"])
        .env(var("soho"), token("soho"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(&stderr(&out), "did you mean `soho`?");
    let out = p
        .cmd(&["try", "orders", "--tenant", "soho"])
        .env(var("soho"), token("soho"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_contains(&String::from_utf8_lossy(&out.stdout), "soho r00001");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token("soho")));
}

/// Reload: a row added starts its unit, a row removed stops its unit, a changed URL
/// restarts only that shop's unit. On `every(1h)` each unit runs once when it starts,
/// so the request counts show exactly which ones (re)started.
#[test]
fn a_changed_tenants_file_starts_stops_and_restarts_only_its_rows() {
    let (a, b, c) = (shop_api("a", 3), shop_api("b", 3), shop_api("c", 3));
    let (b2, d) = (shop_api("b", 4), shop_api("d", 2));
    let p = Pipeline::new(&pipeline("every(1h)"));
    std::fs::write(
        p.path("shops.csv"),
        shops_csv(&[("a", &a), ("b", &b), ("c", &c)]),
    )
    .unwrap();
    let mut cmd = support::cli::hamstr_process();
    cmd.arg("run")
        .arg(&p.file)
        .arg("--data-dir")
        .arg(&p.data)
        .envs(env_of(&["a", "b", "c", "d"]));
    let mut run = support::RunningHamstr::start(cmd);
    for api in [&a, &b, &c] {
        assert!(
            api.wait_for_hits_blocking("/orders", 1, LIMIT),
            "{}",
            run.stderr()
        );
    }
    assert!(
        wait_until(|| stored_count(&run, &p) == 9, LIMIT),
        "{}",
        run.stderr()
    );

    // d added, c removed, b moved to another server.
    std::fs::write(
        p.path("shops.csv"),
        shops_csv(&[("a", &a), ("b", &b2), ("d", &d)]),
    )
    .unwrap();
    let summary = run.wait_for_stderr_line("the reload", |l| l.starts_with("reloaded:"), LIMIT);
    assert_eq!(
        summary,
        "reloaded: +1 source, ~1 source, -1 source",
        "{}",
        run.stderr()
    );
    assert!(
        d.wait_for_hits_blocking("/orders", 1, LIMIT),
        "{}",
        run.stderr()
    );
    assert!(
        b2.wait_for_hits_blocking("/orders", 1, LIMIT),
        "{}",
        run.stderr()
    );

    // A broken tenants file (a name twice) keeps the running graph.
    std::fs::write(p.path("shops.csv"), shops_csv(&[("a", &a), ("a", &b2)])).unwrap();
    let kept = run.wait_for_stderr_line(
        "the refused reload",
        |l| l.contains("the previous pipeline keeps running"),
        LIMIT,
    );
    assert_contains(&kept, "reload: the file has errors");
    assert_contains(&run.stderr(), "repeats the name `a`");

    // c back: its unit resumes from its kept watermark (the request says `since`).
    std::fs::write(
        p.path("shops.csv"),
        shops_csv(&[("a", &a), ("b", &b2), ("d", &d), ("c", &c)]),
    )
    .unwrap();
    run.wait_for_stderr_line("the second reload", |l| l.starts_with("reloaded:"), LIMIT);
    assert!(
        c.wait_for_hits_blocking("/orders", 2, LIMIT),
        "{}",
        run.stderr()
    );
    let status = run.terminate(LIMIT);
    assert!(status.is_some_and(|s| s.success()), "{}", run.stderr());

    assert_eq!(runs(&a), 1, "a was never restarted");
    assert_eq!(runs(&b), 1, "b's old server: only its first run");
    assert_eq!(runs(&b2), 1);
    assert_eq!(runs(&d), 1);
    assert_eq!(runs(&c), 2);
    let resumed = c.requests_to("/orders").last().unwrap().clone();
    assert!(resumed.query_value("since").is_some(), "{resumed:?}");
    // b's records from both servers (same ids, the new server's names), a's, c's, d's.
    let got = stored(&p);
    assert_eq!(got.len(), 3 + 4 + 3 + 2, "{got:?}");
}

/// How many runs a server saw: requests for a first page.
fn runs(api: &TestApi) -> usize {
    api.requests_to("/orders")
        .iter()
        .filter(|r| r.query_value("page").is_none_or(|p| p == "1"))
        .count()
}

fn stored_count(run: &support::RunningHamstr, p: &Pipeline) -> usize {
    let _ = run;
    let out = p
        .cmd(&["dump", "store", "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The service's `concurrency = 1` is each shop's own budget (spec §13): one shop's
/// requests never overlap each other, and the two shops' requests do overlap (with a
/// budget shared by the shops, every request would wait for the one before it).
#[test]
fn each_shop_has_its_own_concurrency_budget() {
    const DELAY: Duration = Duration::from_millis(300);
    let (soho, camden) = (shop_api("soho", 24), shop_api("camden", 24));
    for api in [&soho, &camden] {
        api.fail_always("/orders", Fault::Delay(DELAY));
    }
    let shops = [("soho", &soho), ("camden", &camden)];
    let limited = pipeline("every(1m)").replace("  retry {", "  concurrency = 1\n  retry {");
    assert_contains(&limited, "concurrency = 1");
    let p = Pipeline::new(&limited);
    std::fs::write(p.path("shops.csv"), shops_csv(&shops)).unwrap();
    let out = run_once(&p, &env_of(&["soho", "camden"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names(&stored(&p)), expected(&shops));

    let arrivals = |api: &TestApi| -> Vec<std::time::Instant> {
        let mut at: Vec<_> = api.requests_to("/orders").iter().map(|r| r.at).collect();
        at.sort();
        at
    };
    let (a, b) = (arrivals(&soho), arrivals(&camden));
    assert!(
        a.len() >= 6 && b.len() >= 6,
        "{} and {} requests",
        a.len(),
        b.len()
    );
    for own in [&a, &b] {
        for w in own.windows(2) {
            assert!(
                w[1] - w[0] >= DELAY - Duration::from_millis(20),
                "one shop's requests overlap"
            );
        }
    }
    // Some request of one shop arrived while one of the other's was being answered
    // (either shop may be first).
    let close = |x: std::time::Instant, y: std::time::Instant| {
        let gap = if x >= y { x - y } else { y - x };
        gap < DELAY - Duration::from_millis(50)
    };
    let overlap = a.iter().any(|sa| b.iter().any(|sb| close(*sa, *sb)));
    assert!(overlap, "the shops waited for each other: {a:?} {b:?}");
}
