//! `hamstr run --cluster` (spec §14) with real processes on one PostgreSQL database
//! (`DATABASE_URL`, a fresh database per test) against the fake API: units spread over
//! the instances and owned once each; a stalled owner's work is refused once its lease
//! is taken; a reload that makes one instance's file differ is reported and runs no unit
//! two ways; a shutdown hands its leases back before they expire.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;
use support::cli::{hamstr, hamstr_process, read_jsonl, Pipeline};
use support::pg::{database_url, fresh_database, sql};
use support::{records, wait_until, RunningHamstr, TestApi};

/// Unkeyed fields: every run of a unit writes its records again, so an instance's
/// files show which units it ran.
const FIELDS: &str = "  fields {\n    id  : string = $.id\n    seq : int    = $.seq\n  }";

/// `n` units `u00`…, each a source polling `/uNN` every second into `out/uNN.jsonl`;
/// `paths` overrides a unit's path.
fn pipeline(api: &TestApi, n: usize, paths: &BTreeMap<String, String>) -> String {
    let mut text = format!("service api {{\n  base_url = \"{}\"\n}}\n", api.url());
    for i in 0..n {
        let unit = format!("u{i:02}");
        let path = paths.get(&unit).cloned().unwrap_or(format!("/{unit}"));
        text.push_str(&format!(
            "\nsource {unit} from api {{\n  get = \"{path}\"\n  schedule = every(1s)\n{FIELDS}\n}}\nsink o{unit} = jsonl(\"out/{unit}.jsonl\")\nflow {unit} -> o{unit}\n"
        ));
    }
    text
}

fn api_with_units(n: usize) -> TestApi {
    let api = TestApi::start_blocking();
    for i in 0..n {
        api.set_records(&format!("/u{i:02}"), records::make(3));
    }
    api
}

/// One instance: its own folder (file, data directory, jsonl files) and process.
struct Instance {
    p: Pipeline,
    run: RunningHamstr,
    id: i64,
}

/// `hamstr run` of `p`'s file in the cluster on `db`, watching off unless `watch`.
fn run_in_cluster(p: &Pipeline, db: &str, lease: &str, watch: bool) -> RunningHamstr {
    let mut c = hamstr_process();
    c.arg("run")
        .arg(&p.file)
        .args(["--cluster", db, "--lease", lease]);
    if !watch {
        c.arg("--no-watch");
    }
    c.arg("--data-dir").arg(&p.data);
    RunningHamstr::start(c)
}

/// Waits until the instance joined the cluster; its instance id.
fn joined(run: &mut RunningHamstr) -> i64 {
    let line = run.wait_for_stderr_line(
        "joining the cluster",
        |l| l.starts_with("joined the cluster as instance"),
        Duration::from_secs(60),
    );
    line.split_whitespace()
        .nth(5)
        .and_then(|w| w.parse().ok())
        .expect("an instance id")
}

impl Instance {
    fn start(text: &str, db: &str, lease: &str) -> Instance {
        let p = Pipeline::new(text);
        let mut run = run_in_cluster(&p, db, lease, true);
        let id = joined(&mut run);
        Instance { p, run, id }
    }

    /// Lines in `out/UNIT.jsonl` of this instance.
    fn lines(&self, unit: &str) -> usize {
        read_jsonl(&self.p.path(&format!("out/{unit}.jsonl"))).len()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.run.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }
}

/// The units held now (lease not run out), by owner.
fn owners(db: &str) -> BTreeMap<String, i64> {
    sql(
        db,
        "SELECT unit, owner FROM hamstr_units WHERE owner IS NOT NULL AND lease_until > now()",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn held_by(db: &str, id: i64) -> usize {
    owners(db).values().filter(|o| **o == id).count()
}

fn state(file: &std::path::Path, db: &str, lease: &str) -> String {
    let out = hamstr()
        .arg("state")
        .arg(file)
        .args(["--cluster", db, "--lease", lease])
        .output()
        .expect("state");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn thirty_units_spread_over_three_instances_each_owned_once() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "spread");
    let api = api_with_units(30);
    let text = pipeline(&api, 30, &BTreeMap::new());
    let lease = "3s";
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(&text, &db, lease)).collect();
    let ids: BTreeSet<i64> = instances.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 3, "three distinct instance ids");
    // Steady: every unit held, by the three, none above the fair share (10) plus one.
    let steady = wait_until(
        || {
            let o = owners(&db);
            let per: Vec<usize> = instances.iter().map(|i| held_by(&db, i.id)).collect();
            o.len() == 30 && per.iter().all(|n| (1..=11).contains(n))
        },
        Duration::from_secs(90),
    );
    assert!(
        steady,
        "not spread: {:?}\n{}",
        owners(&db),
        instances[0].run.stderr()
    );
    let units: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    let before: Vec<Vec<usize>> = instances
        .iter()
        .map(|i| units.iter().map(|u| i.lines(u)).collect())
        .collect();
    let owned = owners(&db);
    // One lease period of steady running: time itself must pass for units to run.
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<Vec<usize>> = instances
        .iter()
        .map(|i| units.iter().map(|u| i.lines(u)).collect())
        .collect();
    for (n, unit) in units.iter().enumerate() {
        let ran: Vec<i64> = (0..3)
            .filter(|&k| after[k][n] > before[k][n])
            .map(|k| instances[k].id)
            .collect();
        assert_eq!(
            ran.len(),
            1,
            "unit {unit} ran on {ran:?} in one lease period"
        );
        assert_eq!(
            Some(&ran[0]),
            owned.get(unit),
            "unit {unit} ran on its owner"
        );
    }
    for i in &instances {
        assert!(
            held_by(&db, i.id) <= 11,
            "instance {} above its fair share plus one",
            i.id
        );
    }
    let shown = state(&instances[0].p.file, &db, lease);
    assert_eq!(shown.matches(", epoch ").count(), 30, "{shown}");
    assert_eq!(shown.matches(": owner ").count(), 30, "{shown}");
    assert_eq!(shown.matches(", live").count(), 3, "{shown}");
}

#[test]
fn a_stalled_owner_resumed_after_its_lease_was_taken_writes_nothing() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "stalled");
    let api = api_with_units(1);
    let text = pipeline(&api, 1, &BTreeMap::new());
    let lease = "2s";
    let mut a = Instance::start(&text, &db, lease);
    assert!(
        wait_until(|| a.lines("u00") >= 3, Duration::from_secs(60)),
        "the first instance never ran the unit: {}",
        a.run.stderr()
    );
    let b = Instance::start(&text, &db, lease);
    // A stopped (as by a long pause of its machine) past its lease: B takes the unit.
    a.signal("-STOP");
    assert!(
        wait_until(
            || owners(&db).get("u00") == Some(&b.id),
            Duration::from_secs(60)
        ),
        "the unit was not taken over: {:?}",
        owners(&db)
    );
    assert!(wait_until(|| b.lines("u00") >= 3, Duration::from_secs(60)));
    let written = a.lines("u00");
    a.signal("-CONT");
    a.run.wait_for_stderr_line(
        "the lost lease noticed",
        |l| l.contains("fenced") || l.contains("lost the lease"),
        Duration::from_secs(30),
    );
    // A few of its schedule's periods: a unit it still ran would write again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.lines("u00"),
        written,
        "the stalled instance wrote after it lost the lease"
    );
    assert_eq!(owners(&db).get("u00"), Some(&b.id));
    let before = b.lines("u00");
    assert!(
        wait_until(|| b.lines("u00") > before, Duration::from_secs(30)),
        "the new owner stopped"
    );
}

#[test]
fn a_shutdown_hands_the_leases_back_before_they_expire() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "handback");
    let api = api_with_units(4);
    let text = pipeline(&api, 4, &BTreeMap::new());
    // A long lease: a takeover within it can only come from the leases handed back.
    let lease = "60s";
    let mut a = Instance::start(&text, &db, lease);
    let b = Instance::start(&text, &db, lease);
    assert!(
        wait_until(
            || held_by(&db, a.id) == 2 && held_by(&db, b.id) == 2,
            Duration::from_secs(120)
        ),
        "not spread: {:?}",
        owners(&db)
    );
    let status = a
        .run
        .terminate(Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{}", a.run.stderr());
    assert!(
        wait_until(|| held_by(&db, b.id) == 4, Duration::from_secs(50)),
        "the leases were not handed back: {:?}",
        owners(&db)
    );
    let gone = sql(
        &db,
        &format!("SELECT count(*) FROM hamstr_instances WHERE id = {}", a.id),
    );
    assert_eq!(gone[0].get::<_, i64>(0), 0, "the instance left");
}

#[test]
fn a_reload_that_makes_one_file_differ_is_reported_and_runs_no_unit_two_ways() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "mismatch");
    let api = api_with_units(4);
    api.set_records("/u00v2", records::make(3));
    let text = pipeline(&api, 4, &BTreeMap::new());
    let lease = "3s";
    let mut a = Instance::start(&text, &db, lease);
    let b = Instance::start(&text, &db, lease);
    assert!(
        wait_until(
            || held_by(&db, a.id) == 2 && held_by(&db, b.id) == 2,
            Duration::from_secs(90)
        ),
        "not spread: {:?}",
        owners(&db)
    );
    let changed = pipeline(
        &api,
        4,
        &BTreeMap::from([("u00".to_string(), "/u00v2".to_string())]),
    );
    a.p.rewrite(&changed);
    a.run.wait_for_stderr_line(
        "the reload",
        |l| l.starts_with("reloaded:"),
        Duration::from_secs(30),
    );
    // Whoever owns u00, the other's file disagrees with what runs: reported either as
    // a unit whose recorded version is not this file's, or as an instance's mismatch.
    let reported = wait_until(
        || {
            let shown = state(&b.p.file, &db, lease);
            shown.contains("MISMATCH") || shown.contains("version mismatch")
        },
        Duration::from_secs(30),
    );
    assert!(reported, "{}", state(&b.p.file, &db, lease));
    let owner = owners(&db).get("u00").copied();
    api.clear_requests();
    // Some periods of the schedule: time must pass for the unit to run.
    std::thread::sleep(Duration::from_secs(3));
    let (old, new) = (api.hits("/u00"), api.hits("/u00v2"));
    assert_eq!(owners(&db).get("u00").copied(), owner, "u00 changed hands");
    assert!(old + new > 0, "u00 did not run");
    assert!(
        old == 0 || new == 0,
        "u00 ran two definitions: {old} and {new} requests"
    );
    if owner == Some(a.id) {
        assert!(new > 0, "the owner runs its own file's definition");
    } else {
        assert!(old > 0, "the owner runs its own file's definition");
    }
}

#[test]
fn once_with_cluster_is_refused_and_a_sled_sink_is_an_error() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "refusals");
    let api = api_with_units(1);
    let text = pipeline(&api, 1, &BTreeMap::new());
    let p = Pipeline::new(&text);
    let out = p
        .cmd(&["run", "--once", "--cluster", &db, "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`--once` cannot be used with `--cluster`")
    );
    let sled = text.replace("jsonl(\"out/u00.jsonl\")", "sled(\"u00\")");
    let p = Pipeline::new(&sled);
    let out = p
        .cmd(&["run", "--no-watch", "--data-dir"])
        .arg(&p.data)
        .env("HAMSTR_CLUSTER", &db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hamstr::local_in_cluster"));
    let checked = p.cmd(&["check", "--cluster"]).output().unwrap();
    assert_eq!(checked.status.code(), Some(1));
    let plain = p.cmd(&["check"]).output().unwrap();
    assert_eq!(plain.status.code(), Some(0));
}

/// Six keyed units `c00`… polling a growing API every second, each into a table of its
/// own on the cluster database.
fn keyed_pipeline(api: &TestApi, db: &str, n: usize) -> String {
    let mut text = format!("service api {{\n  base_url = \"{}\"\n}}\n", api.url());
    for i in 0..n {
        let unit = format!("c{i:02}");
        text.push_str(&format!(
            "\nsource {unit} from api {{\n  get = \"/{unit}\"\n  schedule = every(1s)\n  key = id\n{FIELDS}\n}}\nsink t{unit} = postgres(\"{db}\", table = \"t_{unit}\")\nflow {unit} -> t{unit}\n"
        ));
    }
    text
}

/// 60 seconds of SIGKILL and restarts, SIGSTOP past the lease then SIGCONT, and SIGTERM
/// and restarts of three instances while the API grows; afterwards every table holds
/// every record of its unit once, with the API's values, and the logs show work of a
/// lost lease refused.
#[test]
fn chaos_kills_stops_and_restarts_lose_and_double_nothing() {
    use rand::Rng;
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "chaos");
    let units = 6;
    let api = TestApi::start_blocking();
    for i in 0..units {
        api.set_records(&format!("/c{i:02}"), records::make(5));
    }
    let text = keyed_pipeline(&api, &db, units);
    let lease = "2s";
    let folders: Vec<Pipeline> = (0..3).map(|_| Pipeline::new(&text)).collect();
    let start = |p: &Pipeline| run_in_cluster(p, &db, lease, false);
    let mut runs: Vec<RunningHamstr> = folders.iter().map(start).collect();
    let mut logs = String::new();
    let mut rng = rand::rng();
    let mut next = vec![6u64; units];
    let began = std::time::Instant::now();
    let mut round = 0;
    while began.elapsed() < Duration::from_secs(60) {
        // The API grows: new records for one unit, changed values for another.
        let u = rng.random_range(0..units);
        api.push_records(&format!("/c{u:02}"), records::range(next[u], 3));
        next[u] += 3;
        let k = rng.random_range(0..3);
        let pid = runs[k].id().to_string();
        match round % 3 {
            0 => {
                logs.push_str(&runs[k].stderr());
                runs[k].kill();
                runs[k] = start(&folders[k]);
            }
            1 => {
                Command::new("kill").args(["-STOP", &pid]).status().unwrap();
                // Longer than the lease: the others take its units meanwhile.
                std::thread::sleep(Duration::from_millis(rng.random_range(2500..4000)));
                Command::new("kill").args(["-CONT", &pid]).status().unwrap();
            }
            _ => {
                runs[k].terminate(Duration::from_secs(30));
                logs.push_str(&runs[k].stderr());
                runs[k] = start(&folders[k]);
            }
        }
        round += 1;
        // Chaos at random instants: time itself must pass between actions.
        std::thread::sleep(Duration::from_millis(rng.random_range(500..2500)));
    }
    let expected: Vec<Vec<(String, i64)>> = (0..units)
        .map(|i| {
            let mut rows: Vec<(String, i64)> = api
                .records(&format!("/c{i:02}"))
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap().to_string(),
                        r["seq"].as_i64().unwrap(),
                    )
                })
                .collect();
            rows.sort();
            rows
        })
        .collect();
    let table = |i: usize| -> Vec<(String, i64)> {
        sql(&db, &format!("SELECT id, seq FROM t_c{i:02} ORDER BY id"))
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let settled = wait_until(
        || (0..units).all(|i| table(i) == expected[i]),
        Duration::from_secs(90),
    );
    for r in &runs {
        logs.push_str(&r.stderr());
    }
    for (i, want) in expected.iter().enumerate() {
        let got = table(i);
        assert!(
            settled,
            "table t_c{i:02}: {} rows, {} expected",
            got.len(),
            want.len()
        );
        assert_eq!(&got, want, "table t_c{i:02}");
    }
    let per_key = sql(
        &db,
        "SELECT count(*) FROM (SELECT id FROM t_c00 GROUP BY id HAVING count(*) > 1) d",
    );
    assert_eq!(per_key[0].get::<_, i64>(0), 0, "a key twice");
    assert!(
        logs.contains("fenced") || logs.contains("lost the lease"),
        "no lost lease was noticed in 60 s of chaos"
    );
}

/// Units `e0`… reading a Zendesk-like export (`/eN`, pages of 3, resumed from the last
/// page's token) into table `t_eN` on the cluster database (see [`history_tables`]), into
/// `out/eN.jsonl`, and into `to` (sinks declared in `extra`).
fn export_pipeline(api: &TestApi, db: &str, n: usize, extra: &str, to: &str) -> String {
    let mut text = format!(
        "service api {{\n  base_url = \"{}\"\n  retry {{ attempts = 3  backoff = 50ms }}\n}}\n{extra}\n",
        api.url()
    );
    for i in 0..n {
        let unit = format!("e{i}");
        text.push_str(&format!(
            r#"
source {unit} from api {{
  get = "/{unit}"
  query {{ start_time = unix(watermark) }}
  paginate = cursor(param = "cursor", from = $.after_cursor, done = $.end_of_stream)
  records = $.tickets[*]
  schedule = every(1s)
  key = id
  incremental {{ resume = $.after_cursor  param = "cursor"  start = 0 }}
  fields {{
    id      : int    = $.id
    subject : string = $.subject
  }}
}}
sink t{unit} = postgres("{db}", table = "t_{unit}")
sink j{unit} = jsonl("out/{unit}.jsonl")
flow {unit} -> t{unit}, j{unit}{to}
"#
        ));
    }
    text
}

/// An export of tickets `1..=n` at `/eN`, `per_page` a page.
fn export(api: &TestApi, unit: &str, n: u64, per_page: usize) -> support::apis::search::Shared {
    let tickets = support::apis::feeds::serve_zendesk_export(api, &format!("/{unit}"), per_page);
    for t in 1..=n {
        tickets.push(support::apis::feeds::zendesk_ticket(
            t,
            "2024-02-01T12:00:00Z",
        ));
    }
    tickets
}

/// Table `t_UNIT` keyed by `id` as the sink would make it, and an append-only history
/// `w_UNIT` that a trigger fills with every row written to it, insert or update: the
/// unkeyed table that shows each write. (`incremental` needs a `key`, spec §5.2, so an
/// unkeyed source cannot resume; a history table is how a keyed one meets the same
/// need: a page written twice is twice in it.)
fn history_tables(db: &str, units: usize) {
    for i in 0..units {
        sql(
            db,
            &format!(
                "CREATE TABLE t_e{i} (id bigint PRIMARY KEY, subject text);
                 CREATE TABLE w_e{i} (id bigint NOT NULL, subject text);
                 CREATE FUNCTION w_e{i}() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN INSERT INTO w_e{i} VALUES (NEW.id, NEW.subject); RETURN NEW; END $$;
                 CREATE TRIGGER w_e{i} AFTER INSERT OR UPDATE ON t_e{i}
                   FOR EACH ROW EXECUTE FUNCTION w_e{i}();"
            ),
        );
    }
}

/// The ids written to table `t_UNIT` (its history), with how many times each was.
fn rows_per_id(db: &str, unit: &str) -> BTreeMap<i64, i64> {
    sql(
        db,
        &format!("SELECT id, count(*) FROM w_{unit} GROUP BY id"),
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Ids seen more than once in `rows`, with their counts.
fn doubled(rows: &BTreeMap<i64, i64>) -> Vec<(i64, i64)> {
    rows.iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect()
}

/// Two instances SIGKILLed and restarted over and over while they collect an export in
/// many small pages into tables on the cluster database: a page's rows are committed in
/// the transaction of its state, so every ticket was written exactly once, as the
/// append-only history of each table shows (a kill between two transactions would
/// leave a page written and not committed, and the new owner would write it again).
/// The jsonl sinks beside them get every ticket at least once.
#[test]
fn kills_during_collection_write_every_record_exactly_once() {
    use rand::Rng;
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "unkeyed");
    let units = 2;
    let api = TestApi::start_blocking();
    let mut next = vec![0u64; units];
    let exports: Vec<_> = (0..units)
        .map(|i| {
            next[i] = 1500;
            export(&api, &format!("e{i}"), 1500, 3)
        })
        .collect();
    history_tables(&db, units);
    let text = export_pipeline(&api, &db, units, "", "");
    let lease = "2s";
    let folders: Vec<Pipeline> = (0..2).map(|_| Pipeline::new(&text)).collect();
    let start = |p: &Pipeline| run_in_cluster(p, &db, lease, false);
    let mut runs: Vec<RunningHamstr> = folders.iter().map(start).collect();
    let mut logs = String::new();
    let mut rng = rand::rng();
    let mut kills = 0;
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_secs(40) {
        // The export grows meanwhile.
        for (i, tickets) in exports.iter().enumerate() {
            for _ in 0..30 {
                next[i] += 1;
                tickets.push(support::apis::feeds::zendesk_ticket(
                    next[i],
                    "2024-02-02T12:00:00Z",
                ));
            }
        }
        // Kills at random instants: time itself must pass between them, so that they
        // land anywhere in the pages being collected.
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        let k = rng.random_range(0..runs.len());
        logs.push_str(&runs[k].stderr());
        runs[k].kill();
        kills += 1;
        runs[k] = start(&folders[k]);
    }
    let settled = wait_until(
        || (0..units).all(|i| rows_per_id(&db, &format!("e{i}")).len() as u64 == next[i]),
        Duration::from_secs(120),
    );
    // A few more periods of the schedule: a page written twice would show now too.
    std::thread::sleep(Duration::from_secs(2));
    for r in &runs {
        logs.push_str(&r.stderr());
    }
    for (i, want) in next.iter().enumerate() {
        let unit = format!("e{i}");
        let rows = rows_per_id(&db, &unit);
        let ids: BTreeSet<i64> = rows.keys().copied().collect();
        let expected: BTreeSet<i64> = (1..=*want as i64).collect();
        assert!(
            settled,
            "table t_{unit}: {} of {want} tickets; missing {:?}",
            ids.len(),
            expected.difference(&ids).take(10).collect::<Vec<_>>()
        );
        assert_eq!(ids, expected, "table t_{unit}");
        assert_eq!(
            doubled(&rows),
            vec![],
            "tickets written twice to t_{unit} after {kills} kills"
        );
        // The other sink of the flow: every ticket at least once, over the instances.
        let lines: BTreeSet<i64> = folders
            .iter()
            .flat_map(|p| read_jsonl(&p.path(&format!("out/{unit}.jsonl"))))
            .map(|v| v["id"].as_i64().expect("an id"))
            .collect();
        assert_eq!(lines, expected, "out/{unit}.jsonl over the instances");
        eprintln!("t_{unit}: {want} tickets exactly once after {kills} kills of two instances");
    }
    assert!(!logs.contains("panicked"), "{logs}");
}

/// An owner stopped (SIGSTOP) while a page waits for a slow webhook, its rows already
/// handed to the `postgres` sink: another instance takes the unit over and collects
/// everything; the stopped one, resumed, has its commit refused and never writes that
/// page's rows (they would be in the table's history twice).
#[test]
fn a_stalled_owners_staged_page_is_never_written() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "staged");
    let api = TestApi::start_blocking();
    let tickets = 12u64;
    export(&api, "e0", tickets, 3);
    // Every page waits a second and a half at the webhook, after the postgres sink has it.
    api.set_handler("/hook", |_| {
        support::Reply::json(&serde_json::json!({"ok": true}))
    });
    api.fail_always("/hook", support::Fault::Delay(Duration::from_millis(1500)));
    let hook = format!("sink hook = webhook(\"{}\")", api.url_for("/hook"));
    history_tables(&db, 1);
    let text = export_pipeline(&api, &db, 1, &hook, ", hook");
    let lease = "2s";
    let mut a = Instance::start(&text, &db, lease);
    assert!(
        wait_until(
            || owners(&db).get("e0") == Some(&a.id),
            Duration::from_secs(60)
        ),
        "the first instance did not claim the unit: {}",
        a.run.stderr()
    );
    let b = Instance::start(&text, &db, lease);
    // The second page at the webhook: its rows are staged, its commit waits.
    assert!(
        api.wait_for_hits_blocking("/hook", 2, Duration::from_secs(60)),
        "the webhook got no second page: {}",
        a.run.stderr()
    );
    a.signal("-STOP");
    assert!(
        wait_until(
            || owners(&db).get("e0") == Some(&b.id),
            Duration::from_secs(60)
        ),
        "the unit was not taken over: {:?}\n{}",
        owners(&db),
        b.run.stderr()
    );
    assert!(
        wait_until(
            || rows_per_id(&db, "e0").len() as u64 == tickets,
            Duration::from_secs(90)
        ),
        "the new owner did not collect everything: {:?}\n{}",
        rows_per_id(&db, "e0"),
        b.run.stderr()
    );
    a.signal("-CONT");
    a.run.wait_for_stderr_line(
        "the lost lease noticed",
        |l| l.contains("fenced"),
        Duration::from_secs(30),
    );
    // Time for the resumed instance to deliver what it held, were it to.
    std::thread::sleep(Duration::from_secs(3));
    let rows = rows_per_id(&db, "e0");
    assert_eq!(rows.len() as u64, tickets);
    assert_eq!(
        doubled(&rows),
        vec![],
        "rows written twice (by the stalled owner, then by the new one): {}",
        a.run.stderr()
    );
}

/// `url` with query parameters added, and a password the server (trust auth) ignores:
/// it must never be shown.
fn with_tls(url: &str, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(url).expect("a database URL");
    u.set_password(Some("s3cret-pw")).unwrap();
    u.query_pairs_mut().extend_pairs(params);
    u.to_string()
}

/// The folder of the test server's certificates (`ca.crt`, `wrong-ca.crt`), asked of
/// the server; `tests/pg_setup.sh` turns TLS on.
fn tls_dir(db: &str) -> std::path::PathBuf {
    let rows = sql(
        db,
        "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
    );
    assert_eq!(
        rows[0].get::<_, String>(0),
        "on",
        "the test server has no TLS: run tests/pg_setup.sh again"
    );
    let cert: String = rows[0].get(1);
    std::path::Path::new(&cert).parent().unwrap().to_path_buf()
}

/// The cluster database over TLS: `sslmode=require` joins, collects and shows its state
/// over encrypted connections only; `verify-full` with a CA that did not sign the
/// server's certificate is refused, saying why, with the exit code of an unreachable
/// database, the password never shown.
#[test]
fn the_cluster_database_speaks_tls() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "tls");
    let name = url::Url::parse(&db).unwrap().path()[1..].to_string();
    let dir = tls_dir(&db);
    let api = api_with_units(2);
    let text = pipeline(&api, 2, &BTreeMap::new());
    let lease = "3s";
    let require = with_tls(&db, &[("sslmode", "require")]);
    let a = Instance::start(&text, &require, lease);
    assert!(
        wait_until(
            || a.lines("u00") >= 3 && a.lines("u01") >= 3,
            Duration::from_secs(60)
        ),
        "nothing collected over TLS: {}",
        a.run.stderr()
    );
    let sessions: Vec<bool> = sql(
        &db,
        &format!(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{name}' AND a.application_name = 'hamstr'"
        ),
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(!sessions.is_empty(), "no session of the instance found");
    assert!(
        sessions.iter().all(|s| *s),
        "a session without TLS: {sessions:?}"
    );
    let shown = state(&a.p.file, &require, lease);
    assert_eq!(shown.matches(": owner ").count(), 2, "{shown}");
    assert!(!a.run.stderr().contains("s3cret-pw"), "{}", a.run.stderr());

    let wrong = with_tls(
        &db,
        &[
            ("sslmode", "verify-full"),
            (
                "sslrootcert",
                &dir.join("wrong-ca.crt").display().to_string(),
            ),
        ],
    );
    let p = Pipeline::new(&text);
    let refused = p
        .cmd(&["run", "--no-watch", "--cluster", &wrong, "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        err.contains("cannot connect to the cluster database")
            && err.contains(
                "the server's TLS certificate is not signed by a CA that sslrootcert trusts: refused"
            ),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    let state_refused = hamstr()
        .arg("state")
        .arg(&p.file)
        .args(["--cluster", &wrong])
        .output()
        .unwrap();
    let state_err = String::from_utf8_lossy(&state_refused.stderr).into_owned();
    assert!(state_err.contains("not signed by a CA"), "{state_err}");
    assert!(!state_err.contains("s3cret-pw"), "{state_err}");
    // The exit code of any other connection failure: nothing listens on the port.
    let mut closed = url::Url::parse(&db).unwrap();
    closed
        .set_port(Some(
            support::closed_origin()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap(),
        ))
        .unwrap();
    let unreachable = p
        .cmd(&[
            "run",
            "--no-watch",
            "--cluster",
            closed.as_str(),
            "--data-dir",
        ])
        .arg(&p.data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&unreachable.stderr)
            .contains("cannot connect to the cluster database"),
        "{}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
    assert_eq!(refused.status.code(), unreachable.status.code());
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(state_refused.status.code(), Some(2));
    // A mode libpq does not know: said before any connection, password masked.
    let unknown = with_tls(&db, &[("sslmode", "sometimes")]);
    let out = p
        .cmd(&["run", "--no-watch", "--cluster", &unknown, "--data-dir"])
        .arg(&p.data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the cluster database URL postgres://postgres:***@")
            && err.contains("has `sslmode=sometimes`"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
}

/// Seven shops of one tenants file, each on its own local server, polled every second
/// into one keyed table on the cluster database.
fn tenants_pipeline(db: &str) -> String {
    format!(
        r#"
tenants shops = csv("shops.csv")

service till for shops {{
  base_url = tenant.url
}}

source orders from till {{
  get      = "/orders"
  schedule = every(1s)
  key      = [shop, id]
  fields {{
    shop : string = tenant.name
    id   : string = $.id
    seq  : int    = $.seq
  }}
}}

sink db = postgres("{db}", table = "t_orders")
flow orders -> db
"#
    )
}

/// Each (source, tenant) pair is a unit (spec §14): three instances share the seven
/// units `orders[shopN]` of one source, each owned once, none above the fair share (3)
/// plus one; the table ends with every shop's records once, growth included; `state`
/// shows every unit's owner.
#[test]
fn the_tenants_of_one_source_spread_over_three_instances() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "tenants");
    let shops: Vec<String> = (0..7).map(|i| format!("shop{i}")).collect();
    let apis: Vec<TestApi> = (0..7)
        .map(|i| {
            let api = TestApi::start_blocking();
            api.set_records("/orders", records::make(2 + i));
            api
        })
        .collect();
    let mut csv = String::from("name,url\n");
    for (shop, api) in shops.iter().zip(&apis) {
        csv.push_str(&format!("{shop},{}\n", api.url()));
    }
    let text = tenants_pipeline(&db);
    let lease = "3s";
    let start = || {
        let p = Pipeline::new(&text);
        std::fs::write(p.path("shops.csv"), &csv).unwrap();
        let mut run = run_in_cluster(&p, &db, lease, true);
        let id = joined(&mut run);
        (p, run, id)
    };
    let instances: Vec<(Pipeline, RunningHamstr, i64)> = (0..3).map(|_| start()).collect();
    let units: BTreeSet<String> = shops.iter().map(|s| format!("orders[{s}]")).collect();
    let spread = wait_until(
        || {
            let o = owners(&db);
            o.keys().cloned().collect::<BTreeSet<_>>() == units
                && instances
                    .iter()
                    .all(|(_, _, id)| (1..=4).contains(&held_by(&db, *id)))
        },
        Duration::from_secs(90),
    );
    assert!(
        spread,
        "not spread: {:?}\n{}",
        owners(&db),
        instances[0].1.stderr()
    );
    // The shops grow while the instances run.
    apis[0].push_records("/orders", records::range(100, 3));
    apis[5].push_records("/orders", records::range(100, 4));
    let expected: Vec<(String, String, i64)> = {
        let mut rows: Vec<(String, String, i64)> = shops
            .iter()
            .zip(&apis)
            .flat_map(|(shop, api)| {
                api.records("/orders")
                    .into_iter()
                    .map(|r| {
                        (
                            shop.clone(),
                            r["id"].as_str().unwrap().to_string(),
                            r["seq"].as_i64().unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    };
    let table = || -> Vec<(String, String, i64)> {
        let exists = sql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 't_orders'",
        );
        if exists[0].get::<_, i64>(0) == 0 {
            return Vec::new();
        }
        sql(&db, "SELECT shop, id, seq FROM t_orders ORDER BY shop, id")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    assert!(
        wait_until(|| table() == expected, Duration::from_secs(60)),
        "the table: {} rows, {} expected",
        table().len(),
        expected.len()
    );
    for (shop, api) in shops.iter().zip(&apis) {
        assert!(api.hits("/orders") > 0, "{shop} was never polled");
    }
    let o = owners(&db);
    for (_, _, id) in &instances {
        assert!(
            held_by(&db, *id) <= 4,
            "instance {id} above its fair share plus one: {o:?}"
        );
    }
    let shown = state(&instances[0].0.file, &db, lease);
    for unit in &units {
        assert!(
            shown.contains(&format!("  {unit}: owner ")),
            "{unit}: {shown}"
        );
    }
    assert_eq!(shown.matches(": owner ").count(), 7, "{shown}");
}

/// Live reload of the tenants file in a cluster (spec §13, §14): a row added to every
/// instance's file is a new unit, claimed by one instance and collected; a row removed
/// is handed back (held by none), its records kept.
#[test]
fn a_tenant_added_to_the_file_becomes_a_unit_and_a_removed_one_is_handed_back() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "tenantsreload");
    let apis: Vec<TestApi> = (0..4)
        .map(|i| {
            let api = TestApi::start_blocking();
            api.set_records("/orders", records::make(3 + i));
            api
        })
        .collect();
    let csv = |n: usize| {
        let mut out = String::from("name,url\n");
        for (i, api) in apis.iter().enumerate().take(n) {
            out.push_str(&format!("shop{i},{}\n", api.url()));
        }
        out
    };
    let text = tenants_pipeline(&db);
    let lease = "3s";
    let instances: Vec<(Pipeline, RunningHamstr, i64)> = (0..2)
        .map(|_| {
            let p = Pipeline::new(&text);
            std::fs::write(p.path("shops.csv"), csv(3)).unwrap();
            let mut run = run_in_cluster(&p, &db, lease, true);
            let id = joined(&mut run);
            (p, run, id)
        })
        .collect();
    let units =
        |n: usize| -> BTreeSet<String> { (0..n).map(|i| format!("orders[shop{i}]")).collect() };
    let rows = |shop: &str| -> i64 {
        let exists = sql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 't_orders'",
        );
        if exists[0].get::<_, i64>(0) == 0 {
            return 0;
        }
        sql(
            &db,
            &format!("SELECT count(*) FROM t_orders WHERE shop = '{shop}'"),
        )[0]
        .get(0)
    };
    assert!(
        wait_until(
            || owners(&db).keys().cloned().collect::<BTreeSet<_>>() == units(3)
                && (0..3).all(|i| rows(&format!("shop{i}")) == 3 + i as i64),
            Duration::from_secs(60)
        ),
        "three units collected: {:?}\n{}",
        owners(&db),
        instances[0].1.stderr()
    );
    for (p, _, _) in &instances {
        std::fs::write(p.path("shops.csv"), csv(4)).unwrap();
    }
    assert!(
        wait_until(
            || owners(&db).keys().cloned().collect::<BTreeSet<_>>() == units(4)
                && rows("shop3") == 6,
            Duration::from_secs(60)
        ),
        "the new row is a unit, collected: {:?}, {} rows\n{}",
        owners(&db),
        rows("shop3"),
        instances[0].1.stderr()
    );
    let per: Vec<usize> = instances
        .iter()
        .map(|(_, _, id)| held_by(&db, *id))
        .collect();
    assert!(
        per.iter().all(|n| *n <= 3),
        "fair share (2) plus one: {per:?}"
    );
    // shop0 removed from both files: its unit is handed back, its records stay.
    let without_first = csv(4)
        .lines()
        .filter(|l| !l.starts_with("shop0,"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    for (p, _, _) in &instances {
        std::fs::write(p.path("shops.csv"), &without_first).unwrap();
    }
    let remaining: BTreeSet<String> = (1..4).map(|i| format!("orders[shop{i}]")).collect();
    assert!(
        wait_until(
            || owners(&db).keys().cloned().collect::<BTreeSet<_>>() == remaining,
            Duration::from_secs(60)
        ),
        "the removed row's unit is still held: {:?}",
        owners(&db)
    );
    assert_eq!(rows("shop0"), 3, "the removed shop's records stay");
    let shown = state(&instances[0].0.file, &db, lease);
    assert!(!shown.contains("orders[shop0]"), "{shown}");
    assert_eq!(shown.matches(": owner ").count(), 3, "{shown}");
}
