//! The `postgres` sink against a real PostgreSQL (`DATABASE_URL`, started by
//! `tests/pg_setup.sh`): whole pipelines run through the built binary, with sources on
//! the fake API. Without `DATABASE_URL` these tests are skipped, except under `CI`,
//! where a missing database fails them.

mod support;

use assert_cmd::Command;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::{records, Paging, TestApi};
use tokio_postgres::{NoTls, Row};

/// The test database's URL, or `None` (with a note) when there is none outside CI.
fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DATABASE_URL is not set: CI must start PostgreSQL (tests/pg_setup.sh)")
        }
        _ => {
            eprintln!("skipped: DATABASE_URL is not set (start one with tests/pg_setup.sh)");
            None
        }
    }
}

/// Runs SQL on the test database; every call has its own runtime and connection.
fn sql(url: &str, query: &str) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("connect to DATABASE_URL");
        tokio::spawn(conn);
        if query.starts_with("SELECT") {
            client.query(query, &[]).await.expect(query)
        } else {
            client.batch_execute(query).await.expect(query);
            Vec::new()
        }
    })
}

/// A table name of this test process, dropped first.
fn fresh_table(url: &str, tag: &str) -> String {
    let name = format!("t_{tag}_{}", std::process::id());
    sql(url, &format!("DROP TABLE IF EXISTS \"{name}\""));
    name
}

/// `url` with the password `pw` and, when given, another host and port.
fn with_password(url: &str, pw: &str, addr: Option<SocketAddr>) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL parses");
    u.set_password(Some(pw)).expect("password");
    if let Some(a) = addr {
        u.set_host(Some(&a.ip().to_string())).expect("host");
        u.set_port(Some(a.port())).expect("port");
    }
    u.to_string()
}

/// A pipeline: one source on the fake API's `/orders` (pages of 10), into
/// `postgres(env("PG_URL"), table = TABLE, batch = 4)`.
fn pipeline(dir: &Path, table: &str, keyed: bool, fields: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
service api {{ base_url = env("API_URL") }}

source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  {key}
  fields {{
{fields}
  }}
}}

sink db = postgres(env("PG_URL"), table = "{table}", batch = 4)

flow orders -> db
"#,
        key = if keyed { "key      = id" } else { "" },
    );
    let path = dir.join("p.hmr");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

const ALL_TYPES: &str = r#"    id         : string   = $.id
    seq        : int      = $.seq
    ratio      : float    = $.seq
    amount     : decimal  = $.amount
    paid       : bool     = true
    created_at : datetime = $.created_at
    nested     : json     = $.nested
    note       : string?  = $.note"#;

const SMALL: &str = r#"    id     : string  = $.id
    seq    : int     = $.seq
    amount : decimal = $.amount"#;

struct Output {
    code: i32,
    text: String,
}

fn hamstr(args: &[&str], file: &Path, data: &Path, api: &TestApi, pg_url: &str) -> Output {
    let out = Command::cargo_bin("hamstr")
        .expect("binary")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg(file)
        .env("API_URL", api.url())
        .env("PG_URL", pg_url)
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("run hamstr");
    Output {
        code: out.status.code().unwrap_or(-1),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn run_once(file: &Path, data: &Path, api: &TestApi, pg_url: &str) -> Output {
    hamstr(&["run", "--once", "--no-watch"], file, data, api, pg_url)
}

fn api_with(n: usize) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(n));
    api.serve("/orders", Paging::page(10));
    api
}

#[test]
fn the_table_is_created_from_the_model() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "create");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &table, true, ALL_TYPES);
    let api = api_with(25);
    let out = run_once(&file, &dir.path().join("data"), &api, &url);
    assert_eq!(out.code, 0, "{}", out.text);

    let columns: Vec<(String, String, String)> = sql(
        &url,
        &format!(
            "SELECT column_name::text, data_type::text, is_nullable::text \
             FROM information_schema.columns WHERE table_name = '{table}' \
             ORDER BY ordinal_position"
        ),
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let expected = [
        ("id", "text", "NO"),
        ("seq", "bigint", "NO"),
        ("ratio", "double precision", "NO"),
        ("amount", "numeric", "NO"),
        ("paid", "boolean", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("nested", "jsonb", "NO"),
        ("note", "text", "YES"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(columns, expected);

    let pk: Vec<String> = sql(
        &url,
        &format!(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = '\"{table}\"'::regclass AND i.indisprimary"
        ),
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(pk, ["id"]);

    let rows = sql(
        &url,
        &format!(
            "SELECT id, seq, ratio, amount::text, paid, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
             nested::text, note FROM \"{table}\" ORDER BY seq"
        ),
    );
    assert_eq!(rows.len(), 25);
    let r = &rows[6];
    let seven = records::record(7);
    assert_eq!(r.get::<_, String>(0), seven["id"].as_str().unwrap());
    assert_eq!(r.get::<_, i64>(1), 7);
    assert_eq!(r.get::<_, f64>(2), 7.0);
    assert_eq!(r.get::<_, String>(3), records::amount(7));
    assert!(r.get::<_, bool>(4));
    assert_eq!(r.get::<_, String>(5), records::created_at(7));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(6)).unwrap(),
        json!({"a": 7})
    );
    assert_eq!(r.get::<_, Option<String>>(7), None);
    sql(&url, &format!("DROP TABLE \"{table}\""));
}

#[test]
fn keyed_records_are_upserted() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "upsert");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &table, true, SMALL);
    let api = api_with(12);
    let data = dir.path().join("data");
    assert_eq!(run_once(&file, &data, &api, &url).code, 0);

    // One record changes: the next run emits it alone, and it replaces the old row.
    let old = records::record(5);
    api.upsert_record(
        "/orders",
        "id",
        records::changed(&old, "amount", json!("99.99")),
    );
    let out = run_once(&file, &data, &api, &url);
    assert_eq!(out.code, 0, "{}", out.text);
    // A fresh data directory sends every record again: still one row per key.
    let out = run_once(&file, &dir.path().join("data2"), &api, &url);
    assert_eq!(out.code, 0, "{}", out.text);

    let rows = sql(
        &url,
        &format!("SELECT id, amount::text FROM \"{table}\" ORDER BY id"),
    );
    assert_eq!(rows.len(), 12, "one row per key");
    let five: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(0) == records::id(5))
        .map(|r| r.get(1))
        .collect();
    assert_eq!(five, ["99.99"]);
    sql(&url, &format!("DROP TABLE \"{table}\""));
}

#[test]
fn unkeyed_records_are_appended() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "append");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &table, false, SMALL);
    let api = api_with(7);
    let data = dir.path().join("data");
    assert_eq!(run_once(&file, &data, &api, &url).code, 0);
    assert_eq!(run_once(&file, &data, &api, &url).code, 0);
    let pk = sql(
        &url,
        &format!(
            "SELECT 1 FROM pg_index WHERE indrelid = '\"{table}\"'::regclass AND indisprimary"
        ),
    );
    assert!(pk.is_empty(), "an unkeyed table has no primary key");
    let rows = sql(
        &url,
        &format!("SELECT count(*), count(DISTINCT id) FROM \"{table}\""),
    );
    assert_eq!(rows[0].get::<_, i64>(0), 14, "two runs, each appended");
    assert_eq!(rows[0].get::<_, i64>(1), 7);
    sql(&url, &format!("DROP TABLE \"{table}\""));
}

#[test]
fn a_table_that_does_not_fit_is_named() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "mismatch");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &table, true, SMALL);
    let api = api_with(5);
    let data = dir.path().join("data");
    let pg = with_password(&url, "pw-never-shown", None);

    sql(
        &url,
        &format!("CREATE TABLE \"{table}\" (id text PRIMARY KEY, seq bigint, amount text)"),
    );
    let out = run_once(&file, &data, &api, &pg);
    assert_eq!(out.code, 1, "{}", out.text);
    assert!(
        out.text.contains("column `amount` has type text")
            && out.text.contains("field `amount` is decimal"),
        "{}",
        out.text
    );
    assert!(!out.text.contains("pw-never-shown"), "{}", out.text);

    sql(&url, &format!("ALTER TABLE \"{table}\" DROP COLUMN amount"));
    let out = run_once(&file, &data, &api, &pg);
    assert_eq!(out.code, 1, "{}", out.text);
    assert!(
        out.text
            .contains(&format!("table `{table}` has no column `amount`")),
        "{}",
        out.text
    );

    // A numeric with a fixed scale would round the decimals: refused, not rounded.
    sql(
        &url,
        &format!("ALTER TABLE \"{table}\" ADD COLUMN amount numeric(5,1)"),
    );
    let out = run_once(&file, &data, &api, &pg);
    assert_eq!(out.code, 1, "{}", out.text);
    assert!(
        out.text
            .contains("column `amount` is a numeric with a fixed scale"),
        "{}",
        out.text
    );

    // Fixed by hand: the queued records go in on the next run.
    sql(
        &url,
        &format!("ALTER TABLE \"{table}\" ALTER COLUMN amount TYPE numeric"),
    );
    let out = run_once(&file, &data, &api, &pg);
    assert_eq!(out.code, 0, "{}", out.text);
    let rows = sql(&url, &format!("SELECT count(*) FROM \"{table}\""));
    assert_eq!(rows[0].get::<_, i64>(0), 5);
    assert!(!out.text.contains("pw-never-shown"));
    sql(&url, &format!("DROP TABLE \"{table}\""));
}

#[test]
fn records_wait_while_the_database_is_down() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "down");
    // An extra serial column shows the order rows arrived in.
    sql(
        &url,
        &format!(
            "CREATE TABLE \"{table}\" (n bigserial, id text PRIMARY KEY, seq bigint NOT NULL, \
             amount numeric NOT NULL)"
        ),
    );
    let target = db_addr(&url);
    let proxy = Proxy::start(target);
    let pg = with_password(&url, "s3cr3t-pw", Some(proxy.addr));
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &table, true, SMALL);
    let data = dir.path().join("data");
    let api = api_with(15);
    let mut seen = String::new();

    // Down: the run ends with its records queued, and says so.
    let out = run_once(&file, &data, &api, &pg);
    seen.push_str(&out.text);
    assert_eq!(out.code, 1, "{}", out.text);
    assert!(
        out.text.contains("sink db: 2 pages still wait"),
        "{}",
        out.text
    );
    let state = hamstr(&["state"], &file, &data, &api, &pg);
    seen.push_str(&state.text);
    assert!(
        state.text.contains("sink db: 2 pages waiting in its queue"),
        "{}",
        state.text
    );

    // Still down, and new records come: they queue behind the others.
    api.push_records("/orders", records::range(16, 5));
    let out = run_once(&file, &data, &api, &pg);
    seen.push_str(&out.text);
    assert_eq!(out.code, 1, "{}", out.text);
    let state = hamstr(&["state"], &file, &data, &api, &pg);
    assert!(
        state.text.contains("sink db: 3 pages waiting"),
        "{}",
        state.text
    );
    assert_eq!(count(&url, &table), 0);

    // Back: everything arrives, in the order it was collected.
    proxy.set_up(true);
    let out = run_once(&file, &data, &api, &pg);
    seen.push_str(&out.text);
    assert_eq!(out.code, 0, "{}", out.text);
    let ids: Vec<String> = sql(&url, &format!("SELECT id FROM \"{table}\" ORDER BY n"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, records::ids(&records::make(20)));
    let state = hamstr(&["state"], &file, &data, &api, &pg);
    seen.push_str(&state.text);
    assert!(
        state.text.contains("sink db: its queue is empty"),
        "{}",
        state.text
    );

    assert!(seen.contains("***"), "the URL is shown masked: {seen}");
    assert!(!seen.contains("s3cr3t-pw"), "the password leaked: {seen}");
    sql(&url, &format!("DROP TABLE \"{table}\""));
}

fn count(url: &str, table: &str) -> i64 {
    sql(url, &format!("SELECT count(*) FROM \"{table}\""))[0].get(0)
}

/// The address of the server of `url` (host and port; 5432 when none).
fn db_addr(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("DATABASE_URL parses");
    let host = u.host_str().unwrap_or("127.0.0.1");
    let host = if host.is_empty() || host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", u.port().unwrap_or(5432))
        .parse()
        .expect("DATABASE_URL has an IP host")
}

/// A TCP proxy to the database that can be "down": while down, it accepts and at once
/// closes every connection.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let flag = up.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    while let Ok((mut client, _)) = listener.accept().await {
                        if !flag.load(Ordering::SeqCst) {
                            continue;
                        }
                        tokio::spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Proxy {
            addr,
            up,
            _stop: stop,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// An aggregate into PostgreSQL, grouped by an optional field: the table hamstr creates
/// (its primary key makes the group column NOT NULL) is accepted on the next run too, and
/// the groups are upserted as they change.
#[test]
fn an_aggregate_keeps_upserting_its_groups() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "agg");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
service api {{ base_url = env("API_URL") }}
source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  key      = id
  fields {{
    id     : string  = $.id
    kind   : string? = $.currency
    amount : decimal = $.amount
  }}
}}
aggregate by_kind {{
  from     = orders
  group_by = [kind]
  compute {{ n = count()  total = sum(amount) }}
}}
sink db = postgres(env("PG_URL"), table = "{table}")
flow by_kind -> db
"#
    );
    let file = dir.path().join("p.hmr");
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let api = api_with(4);
    let out = run_once(&file, &data, &api, &url);
    assert_eq!(out.code, 0, "{}", out.text);
    let count = |url: &str| {
        sql(url, &format!("SELECT sum(n)::bigint FROM \"{table}\""))[0].get::<_, i64>(0)
    };
    assert_eq!(count(&url), 4);

    api.set_records("/orders", records::make(6));
    let out = run_once(&file, &data, &api, &url);
    assert_eq!(out.code, 0, "the second run: {}", out.text);
    assert_eq!(count(&url), 6);
    sql(&url, &format!("DROP TABLE \"{table}\""));
}

/// PostgreSQL's text and jsonb cannot hold NUL at all: the character is left out (with a
/// warning) instead of the page being refused for good and the sink blocked behind it.
#[test]
fn a_nul_character_is_left_out_not_a_blocked_sink() {
    let Some(url) = database_url() else { return };
    let table = fresh_table(&url, "nul");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), &table, true, ALL_TYPES);
    let mut recs = records::make(3);
    recs[1]["note"] = json!("a\u{0}b");
    recs[1]["nested"] = json!({"k\u{0}": ["x\u{0}y"]});
    let api = TestApi::start_blocking();
    api.set_records("/orders", recs);
    api.serve("/orders", Paging::page(10));
    let out = run_once(&file, &dir.path().join("data"), &api, &url);
    assert_eq!(out.code, 0, "{}", out.text);
    assert!(out.text.contains("NUL"), "{}", out.text);
    let rows = sql(
        &url,
        &format!("SELECT note, nested::text FROM \"{table}\" ORDER BY seq"),
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].get::<_, Option<String>>(0).as_deref(), Some("ab"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rows[1].get::<_, String>(1)).unwrap(),
        json!({"k": ["xy"]})
    );
    sql(&url, &format!("DROP TABLE \"{table}\""));
}
