//! Aggregates end to end (spec §7): `hamstr run --once` against a fake API, an update in
//! the API, a second run, and `dump AGGREGATE` equal to a recomputation over the API's
//! records; `examples/order_items.hmr` against the bundled demo API; and reloads that
//! rewire and retire an aggregate in a running graph.

mod support;

use assert_cmd::Command;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use support::{Paging, TestApi};

const ORDERS: &str = "/orders";

fn pipeline(url: &str) -> String {
    format!(
        r#"
service pos {{ base_url = "{url}" }}

model Order {{
  id         : string
  amount     : decimal
  currency   : string
  status     : string
  created_at : datetime
}}

source orders from pos {{
  get      = "/orders"
  schedule = every(10s)
  paginate = offset(param = "offset", limit_param = "limit", limit = 4, total = $.total)
  records  = $.items[*]
  model    = Order
  key      = id
  where    = status != "open"
  fields {{
    id         = $.id
    amount     = $.amount
    currency   = $.currency ?? "EUR"
    status     = lower($.status)
    created_at = $.created_at
  }}
}}

source order_items from pos {{
  for_each = orders
  get      = "/orders/{{id}}/items"
  records  = $.items[*]
  key      = [order_id, sku]
  fields {{
    order_id : string = parent.id
    sku      : string = $.sku
    qty      : int    = $.qty
  }}
}}

aggregate daily_revenue {{
  from     = [orders]
  group_by = [day(created_at), currency]
  compute {{
    orders  = count()
    revenue = sum(amount)
    largest = max(amount)
    average = avg(amount)
  }}
}}

sink store   = sled("orders")
sink items   = sled("order_items")
sink revenue = sled("daily_revenue")

flow orders -> store
flow order_items -> items
flow daily_revenue -> revenue
"#
    )
}

fn order(id: u32, day: u32, amount: &str, currency: &str, status: &str) -> Value {
    json!({
        "id": format!("o{id}"),
        "amount": amount,
        "currency": currency,
        "status": status,
        "created_at": format!("2026-03-{day:02}T{:02}:30:00Z", id % 24),
    })
}

/// Runs `hamstr` with `args`, where `{file}` and `{data}` stand for the paths.
fn cmd(args: &[&str], file: &Path, data: &Path, envs: &[(&str, String)]) -> String {
    let mut c = Command::cargo_bin("hamstr").unwrap();
    c.env("NO_COLOR", "1");
    for (k, v) in envs {
        c.env(k, v);
    }
    for a in args {
        match *a {
            "{file}" => c.arg(file),
            "{data}" => c.arg(data),
            other => c.arg(other),
        };
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "hamstr {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// (day, currency) → (orders, revenue, largest, average), from the API's records.
type Groups = BTreeMap<(String, String), (u64, Decimal, Decimal, Decimal)>;

fn recompute(orders: &[Value]) -> Groups {
    let mut by: BTreeMap<(String, String), Vec<Decimal>> = BTreeMap::new();
    for o in orders.iter().filter(|o| o["status"] != "open") {
        let day = o["created_at"].as_str().unwrap()[..10].to_string();
        let cur = o["currency"].as_str().unwrap().to_string();
        by.entry((day, cur)).or_default().push(dec(&o["amount"]));
    }
    by.into_iter()
        .map(|(g, a)| {
            let sum: Decimal = a.iter().sum();
            let n = a.len() as u64;
            let max = a.iter().max().copied().unwrap();
            (g, (n, sum, max, sum / Decimal::from(n)))
        })
        .collect()
}

fn view(rows: &[Value]) -> Groups {
    rows.iter()
        .map(|r| {
            let g = (
                r["day_created_at"].as_str().unwrap().to_string(),
                r["currency"].as_str().unwrap().to_string(),
            );
            let n = r["orders"].as_u64().unwrap();
            (
                g,
                (
                    n,
                    dec(&r["revenue"]),
                    dec(&r["largest"]),
                    dec(&r["average"]),
                ),
            )
        })
        .collect()
}

#[test]
fn the_view_follows_updates_in_the_api() {
    let api = TestApi::start_blocking();
    let mut data = vec![
        order(1, 1, "10.00", "EUR", "paid"),
        order(2, 1, "5.50", "EUR", "paid"),
        order(3, 1, "7.25", "USD", "paid"),
        order(4, 2, "99.99", "EUR", "open"),
        order(5, 2, "1.01", "EUR", "PAID"),
        order(6, 3, "20", "USD", "refunded"),
        order(7, 3, "0.99", "EUR", "paid"),
    ];
    api.set_records(ORDERS, data.clone());
    api.serve(
        ORDERS,
        Paging::Offset {
            param: "offset".into(),
            limit_param: Some("limit".into()),
            default_limit: 4,
            records_key: "items".into(),
            total_key: Some("total".into()),
        },
    );
    for o in &data {
        let path = format!("/orders/{}/items", o["id"].as_str().unwrap());
        api.set_records(&path, vec![json!({"sku": "A", "qty": 1})]);
        api.serve(&path, Paging::wrapped("items"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.hmr");
    std::fs::write(&file, pipeline(&api.url())).unwrap();
    let data_dir = dir.path().join("data");
    let run = ["run", "--once", "{file}", "--data-dir", "{data}"];
    let dump = |name: &str| {
        lines(&cmd(
            &["dump", "{file}", name, "--data-dir", "{data}"],
            &file,
            &data_dir,
            &[],
        ))
    };

    cmd(&run, &file, &data_dir, &[]);
    let rows = dump("daily_revenue");
    assert_eq!(view(&rows), recompute(&data));
    assert_eq!(
        rows.iter()
            .find(|r| r["day_created_at"] == "2026-03-01" && r["currency"] == "EUR"),
        Some(
            &json!({"day_created_at": "2026-03-01", "currency": "EUR", "orders": 2, "revenue": "15.50", "largest": "10.00", "average": "7.75"})
        )
    );
    assert_eq!(
        dump("revenue").len(),
        rows.len(),
        "the sink holds every group"
    );
    let state = cmd(
        &["state", "{file}", "--data-dir", "{data}"],
        &file,
        &data_dir,
        &[],
    );
    let line = format!(
        "aggregate daily_revenue: {} groups, 0 waiting for its sinks",
        rows.len()
    );
    assert!(state.contains(&line), "{state}");

    // Updates: a new amount, a move to another day and currency (emptying a group), an
    // open order paid, and a new order.
    let updates = [
        order(1, 1, "12.00", "EUR", "paid"),
        order(3, 2, "7.25", "EUR", "paid"),
        order(4, 2, "99.99", "EUR", "paid"),
        order(8, 4, "3.30", "USD", "paid"),
    ];
    for u in updates {
        api.upsert_record(ORDERS, "id", u.clone());
        let id = u["id"].as_str().unwrap().to_string();
        match data.iter_mut().find(|o| o["id"] == id.as_str()) {
            Some(slot) => *slot = u,
            None => data.push(u),
        }
    }
    let path = "/orders/o8/items";
    api.set_records(path, vec![json!({"sku": "B", "qty": 2})]);
    api.serve(path, Paging::wrapped("items"));
    cmd(&run, &file, &data_dir, &[]);
    let rows = dump("daily_revenue");
    assert_eq!(view(&rows), recompute(&data));
    assert!(
        !rows
            .iter()
            .any(|r| r["day_created_at"] == "2026-03-01" && r["currency"] == "USD"),
        "the group whose only order moved away is gone"
    );
    // The keyed sink got the new values of every changed group; the emptied one shows zero.
    let sink: BTreeMap<(String, String), Value> = dump("revenue")
        .into_iter()
        .map(|r| {
            let g = (
                r["day_created_at"].as_str().unwrap().to_string(),
                r["currency"].as_str().unwrap().to_string(),
            );
            (g, r)
        })
        .collect();
    for r in &rows {
        let g = (
            r["day_created_at"].as_str().unwrap().to_string(),
            r["currency"].as_str().unwrap().to_string(),
        );
        assert_eq!(sink.get(&g), Some(r));
    }
    let emptied = &sink[&("2026-03-01".to_string(), "USD".to_string())];
    assert_eq!(emptied["orders"], json!(0));
    assert_eq!(emptied["revenue"], Value::Null);

    // A third run with nothing new changes nothing.
    cmd(&run, &file, &data_dir, &[]);
    assert_eq!(dump("daily_revenue"), rows);
}

#[test]
fn order_items_example_against_the_demo_api() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let config = hamstr::app::demo::DemoConfig {
                new_order_every: None,
                ..Default::default()
            };
            let _ = hamstr::app::demo::serve(listener, config).await;
        });
    });
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/order_items.hmr");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let env = [("POS_URL", format!("http://{addr}/pos"))];
    let out = cmd(
        &["run", "--once", "{file}", "--data-dir", "{data}"],
        &file,
        &data,
        &env,
    );
    let dump = |name: &str| {
        lines(&cmd(
            &["dump", "{file}", name, "--data-dir", "{data}"],
            &file,
            &data,
            &env,
        ))
    };
    let stored = dump("store");
    let items = dump("items");
    let groups = dump("daily_revenue");
    assert!(!stored.is_empty() && !items.is_empty() && !groups.is_empty());
    assert!(stored.iter().all(|o| o["status"] != "open"));
    let counted: u64 = groups.iter().map(|g| g["orders"].as_u64().unwrap()).sum();
    assert_eq!(
        counted,
        stored.len() as u64,
        "every stored order in one group"
    );
    let revenue: Decimal = groups.iter().map(|g| dec(&g["revenue"])).sum();
    let amounts: Decimal = stored.iter().map(|o| dec(&o["amount"])).sum();
    assert_eq!(revenue, amounts);
    // The console sink printed each group as it changed; its last line is the view.
    let mut printed: BTreeMap<String, Value> = BTreeMap::new();
    for line in out.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if v.get("day_created_at").is_some() {
                printed.insert(format!("{}{}", v["day_created_at"], v["currency"]), v);
            }
        }
    }
    assert_eq!(printed.into_values().collect::<Vec<_>>(), groups);
}

/// A running graph (in process) whose file changes: the aggregate's sink is swapped
/// (the view is kept and goes on following updates), then the aggregate is removed.
#[test]
fn reloads_rewire_and_retire_aggregates() {
    use hamstr::runtime::{self, Options, Reload};
    use hamstr::stop::Stop;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use support::wait_until;

    let api = TestApi::start_blocking();
    let data = vec![
        order(1, 1, "2.00", "EUR", "paid"),
        order(2, 1, "3.00", "USD", "paid"),
    ];
    api.set_records(ORDERS, data);
    api.serve(ORDERS, Paging::wrapped("items"));
    let text = |sink: &str, with_aggregate: bool| {
        let mut t = format!(
            r#"
service pos {{ base_url = "{}" }}
source orders from pos {{
  get = "/orders"  schedule = every(200ms)  records = $.items[*]  key = id
  fields {{ id : string = $.id  amount : decimal = $.amount  currency : string = $.currency }}
}}
sink store = sled("orders")
sink {sink} = sled("{sink}")
flow orders -> store
"#,
            api.url()
        );
        if with_aggregate {
            t.push_str(&format!(
                "aggregate totals {{\n  from = [orders]\n  group_by = [currency]\n  compute {{ n = count()  total = sum(amount) }}\n}}\nflow totals -> {sink}\n"
            ));
        }
        t
    };
    let check = |t: &str| {
        let checked = hamstr::check::check("p.hmr", t, &|_| None);
        checked.pipeline.expect("the test pipeline checks")
    };
    let dir = tempfile::tempdir().unwrap();
    let store = hamstr::app::open_store(dir.path()).unwrap();
    let first = check(&text("first", true));
    let view = hamstr::nodes::aggregate::View::new(&first, "totals").unwrap();
    let groups = |store: &dyn hamstr::state::StateStore| -> Vec<Value> {
        view.rows(store)
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_slice(&r.json).unwrap())
            .collect()
    };
    let sink_rows = |store: &dyn hamstr::state::StateStore, tree: &str| -> Vec<Value> {
        store
            .sink_records(tree)
            .unwrap()
            .into_iter()
            .map(|b| serde_json::from_slice(&b).unwrap())
            .collect()
    };
    let limit = Duration::from_secs(20);

    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let stop = Stop::new();
    let stop_handle = stop.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The pipeline the graph runs now: set once a reload is applied.
    let current = Arc::new(Mutex::new(first.clone()));
    let runs = |p: &hamstr::check::Pipeline| *current.lock().unwrap() == *p;
    let reload = |p: &hamstr::check::Pipeline| {
        let (current, p) = (current.clone(), p.clone());
        Reload {
            plan: hamstr::plan::Plan::new(&p),
            applied: Box::new(move || *current.lock().unwrap() = p),
        }
    };
    let running = {
        let store = store.clone();
        let plan = hamstr::plan::Plan::new(&first);
        let opts = Options {
            once: false,
            base_dir: dir.path().to_path_buf(),
            ..Options::default()
        };
        rt.spawn(async move { runtime::run(plan, store, opts, stop, Some(reload_rx)).await })
    };
    let eur = |n: u64, total: &str| json!({"currency": "EUR", "n": n, "total": total});
    assert!(
        wait_until(|| groups(store.as_ref()).len() == 2, limit),
        "the first groups never came"
    );
    // The view is updated first, then its changed groups go to the sink.
    assert!(
        wait_until(|| sink_rows(store.as_ref(), "first").len() == 2, limit),
        "the first sink never got the groups"
    );

    // Another sink for the aggregate: it is replaced, its view kept.
    let second = check(&text("second", true));
    reload_tx.blocking_send(reload(&second)).unwrap();
    assert!(
        wait_until(|| runs(&second), limit),
        "the reload never applied"
    );
    api.upsert_record(ORDERS, "id", order(3, 2, "4.50", "EUR", "paid"));
    assert!(
        wait_until(|| groups(store.as_ref()).contains(&eur(2, "6.50")), limit),
        "the view never followed an update after the reload"
    );
    assert!(
        wait_until(
            || sink_rows(store.as_ref(), "second") == vec![eur(2, "6.50")],
            limit
        ),
        "the new sink never got the changed group"
    );

    // Without the aggregate: its unit is retired, the source goes on alone.
    let without = check(&text("second", false));
    reload_tx.blocking_send(reload(&without)).unwrap();
    assert!(
        wait_until(|| runs(&without), limit),
        "the reload never applied"
    );
    api.upsert_record(ORDERS, "id", order(4, 2, "1.00", "EUR", "paid"));
    assert!(
        wait_until(|| sink_rows(store.as_ref(), "orders").len() == 4, limit),
        "the source did not go on"
    );
    assert!(groups(store.as_ref()).contains(&eur(2, "6.50")));

    stop_handle.stop();
    let report = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), running).await })
        .expect("the graph shuts down")
        .unwrap()
        .unwrap();
    assert!(!report.failed());
}
