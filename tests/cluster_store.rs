//! The state store's semantics against both implementations: the sled store of a data
//! directory and the PostgreSQL store of a cluster (`DATABASE_URL`, a fresh database
//! per test); and the PostgreSQL store's fencing: a commit under a lease another
//! instance took (a newer epoch) is refused and writes nothing.

mod support;

use hamstr::cluster::store::Fence;
use hamstr::state::{KeyEntry, PageCommit, Prune, SledStore, SourceMeta, StateError, StateStore};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::pg::{database_url, fresh_database, sql};

fn entry(fp: u64, cursor: i64) -> KeyEntry {
    KeyEntry {
        fingerprint: fp,
        cursor: Some(Json::from(cursor)),
    }
}

/// Commits, key lookups, prunes by index and in full, rejections, child requests,
/// sled sink rows, the generic spaces, ids and reset: the same answers from any store.
fn semantics(store: &dyn StateStore) {
    // Each key with its cursor index entry (order bytes, then the key), as the extract
    // node commits the keys of an incremental source.
    let index = |k: &[u8], c: i64| {
        let mut at = c.to_be_bytes().to_vec();
        at.extend_from_slice(k);
        (at, k.to_vec())
    };
    let page = PageCommit {
        keys: vec![(b"a".to_vec(), entry(1, 5)), (b"b".to_vec(), entry(2, 9))],
        index: vec![index(b"a", 5), index(b"b", 9)],
        rejected: vec![(b"bad".to_vec(), json!({"reason": "no id"}))],
        child_requests: vec![("kids".into(), b"a".to_vec(), json!({"id": "a"}))],
        ..PageCommit::default()
    };
    let meta = SourceMeta {
        watermark: Some(Json::from(9)),
        records_seen: 2,
        ..SourceMeta::default()
    };
    store.commit("s", &page, &meta).unwrap();
    assert_eq!(store.key("s", b"a").unwrap().unwrap().fingerprint, 1);
    assert_eq!(store.key("s", b"zz").unwrap(), None);
    assert_eq!(store.meta("s").unwrap().watermark, Some(Json::from(9)));
    assert_eq!(store.meta("s").unwrap().records_seen, 2);
    assert_eq!(store.meta("never").unwrap().watermark, None);
    assert_eq!(
        store.rejected("s").unwrap(),
        vec![json!({"reason": "no id"})]
    );
    assert!(store
        .rejected_keys("s")
        .unwrap()
        .contains(b"bad".as_slice()));
    assert_eq!(
        store.child_queue("kids").unwrap(),
        vec![(b"a".to_vec(), json!({"id": "a"}))]
    );
    store.child_done("kids", b"a").unwrap();
    assert!(store.child_queue("kids").unwrap().is_empty());
    // A later page takes the rejection back.
    let again = PageCommit {
        unrejected: vec![b"bad".to_vec()],
        ..PageCommit::default()
    };
    store.commit("s", &again, &meta).unwrap();
    assert!(store.rejected("s").unwrap().is_empty());

    let order = |c: &Json| Some(c.as_i64()?.to_be_bytes().to_vec());
    let bound = 9i64.to_be_bytes();
    let prune = Prune {
        bound: &bound,
        below: &|c| c.as_i64().unwrap() < 9,
        order: &order,
    };
    // A full prune (state from before the cursor index) or one by the index: a goes.
    assert_eq!(store.prune_keys("s", &prune, true).unwrap(), 1);
    assert_eq!(store.key_count("s").unwrap(), 1);
    let bound = 10i64.to_be_bytes();
    let prune = Prune {
        bound: &bound,
        below: &|c| c.as_i64().unwrap() < 10,
        order: &order,
    };
    assert_eq!(store.prune_keys("s", &prune, false).unwrap(), 1);
    assert_eq!(store.key_count("s").unwrap(), 0);
    // Committed again above the bound, both are held again.
    let later = PageCommit {
        keys: vec![(b"a".to_vec(), entry(1, 15)), (b"b".to_vec(), entry(2, 19))],
        index: vec![index(b"a", 15), index(b"b", 19)],
        ..PageCommit::default()
    };
    store.commit("s", &later, &meta).unwrap();
    let keys: Vec<Vec<u8>> = store
        .keys("s")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    store.reset("s").unwrap();
    assert_eq!(store.key_count("s").unwrap(), 0);
    assert_eq!(store.meta("s").unwrap().watermark, None);

    // Sled sink rows, in key order, a part at a time.
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0u8..5).map(|i| (vec![i], vec![b'v', i])).collect();
    let refs: Vec<(&[u8], &[u8])> = rows.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    store.sink_upsert("t", &refs).unwrap();
    assert_eq!(store.sink_len("t").unwrap(), 5);
    assert_eq!(store.sink_records("t").unwrap()[0], vec![b'v', 0]);
    let after = store.sink_records_after("t", Some(&[1]), 2).unwrap();
    assert_eq!(after, rows[2..4].to_vec());
    assert_eq!(
        store.sink_records_after("t", None, 1).unwrap(),
        rows[..1].to_vec()
    );

    // The generic spaces (sink queues, stored tokens).
    store
        .kv_apply(
            "q",
            &[
                (b"1".to_vec(), Some(b"one".to_vec())),
                (b"2".to_vec(), Some(b"two".to_vec())),
            ],
        )
        .unwrap();
    assert_eq!(store.kv_get("q", b"2").unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.kv_len("q").unwrap(), 2);
    assert_eq!(
        store.kv_scan("q", 1).unwrap(),
        vec![(b"1".to_vec(), b"one".to_vec())]
    );
    assert_eq!(
        store.kv_scan_from("q", b"2", 5).unwrap(),
        vec![(b"2".to_vec(), b"two".to_vec())]
    );
    store.kv_apply("q", &[(b"1".to_vec(), None)]).unwrap();
    assert_eq!(store.kv_len("q").unwrap(), 1);
    let (a, b) = (store.next_id().unwrap(), store.next_id().unwrap());
    assert_ne!(a, b);
    store.flush().unwrap();
}

#[test]
fn the_sled_store_keeps_the_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    semantics(&store);
}

#[test]
fn the_postgres_store_keeps_the_same_semantics() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "semantics");
    let store = hamstr::cluster::open_store(&db).unwrap();
    semantics(store.as_ref());
}

#[test]
fn a_commit_under_a_lease_taken_by_another_instance_is_refused() {
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "fenced");
    // The tables, then a lease on unit `s` held by instance 7 at epoch 2.
    drop(hamstr::cluster::open_store(&db).unwrap());
    sql(
        &db,
        "INSERT INTO hamstr_units (unit, owner, epoch, lease_until, version) VALUES ('s', 7, 2, now() + interval '1 hour', 'v')",
    );
    let meta = SourceMeta {
        watermark: Some(Json::from(5)),
        ..SourceMeta::default()
    };
    let page = PageCommit {
        keys: vec![(b"k".to_vec(), entry(1, 5))],
        ..PageCommit::default()
    };
    let far = Instant::now() + Duration::from_secs(3600);

    // Instance 7 still believes it holds epoch 1 (it was stopped while another claim
    // raised the epoch): refused, nothing written.
    let stale = Arc::new(Fence::new(7));
    stale.hold("s", 1, far);
    let store = hamstr::cluster::open_fenced_store(&db, stale).unwrap();
    match store.commit("s", &page, &meta) {
        Err(StateError::Fenced { name }) => assert_eq!(name, "s"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert!(matches!(
        store.put_meta("s", &meta),
        Err(StateError::Fenced { .. })
    ));
    let plain = hamstr::cluster::open_store(&db).unwrap();
    assert_eq!(plain.key("s", b"k").unwrap(), None);
    assert_eq!(plain.meta("s").unwrap().watermark, None);

    // Another instance at the right epoch is refused too; the owner at epoch 2 commits.
    let other = Arc::new(Fence::new(8));
    other.hold("s", 2, far);
    let store = hamstr::cluster::open_fenced_store(&db, other).unwrap();
    assert!(matches!(
        store.commit("s", &page, &meta),
        Err(StateError::Fenced { .. })
    ));
    let owner = Arc::new(Fence::new(7));
    owner.hold("s", 2, far);
    let store = hamstr::cluster::open_fenced_store(&db, owner.clone()).unwrap();
    store.commit("s", &page, &meta).unwrap();
    assert_eq!(plain.meta("s").unwrap().watermark, Some(Json::from(5)));

    // A lease run out by this process's own clock: refused before any round trip.
    owner.hold("s", 2, Instant::now());
    assert!(matches!(store.fence("s"), Err(StateError::Fenced { .. })));
    assert!(matches!(
        store.commit("s", &page, &meta),
        Err(StateError::Fenced { .. })
    ));
    // A lease run out in the database (the owner's clock still gives it time).
    owner.hold("s", 2, far);
    sql(
        &db,
        "UPDATE hamstr_units SET lease_until = now() - interval '1 second'",
    );
    assert!(matches!(
        store.commit("s", &page, &meta),
        Err(StateError::Fenced { .. })
    ));
}

/// A `postgres` sink on the cluster's database stages a page's rows for the page's
/// commit: under a stale epoch neither the rows nor the state are written; the holder's
/// commit writes both in one transaction, every part of a page in the last part's; rows
/// the database refuses leave the state where it was; an abandoned page is never
/// written; a page the sink cannot take is refused, not queued. A queued page's entry
/// goes in the transaction of its rows, once.
#[test]
fn a_postgres_sink_on_the_cluster_database_commits_its_rows_with_the_state() {
    use hamstr::check::{Schema, Text, Type};
    use hamstr::nodes::extract::Emitted;
    use hamstr::nodes::sink::postgres::PgWriter;
    use hamstr::nodes::sink::{Origin, SinkWriter, WriteError};
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "sinkfence");
    drop(hamstr::cluster::open_store(&db).unwrap());
    sql(
        &db,
        "INSERT INTO hamstr_units (unit, owner, epoch, lease_until, version) VALUES ('s', 7, 2, now() + interval '1 hour', 'v')",
    );
    // Unkeyed: a row written twice would be two rows.
    let schema = Schema {
        fields: vec![("id".into(), Type::String, false)],
        key: vec![],
    };
    let names = vec!["id".to_string()];
    let records = |ids: &[&str]| {
        Arc::new(
            ids.iter()
                .map(|id| Emitted {
                    key: None,
                    json: format!(r#"{{"id":"{id}"}}"#).into_bytes().into(),
                })
                .collect::<Vec<_>>(),
        )
    };
    let far = Instant::now() + Duration::from_secs(3600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = |epoch: i64| {
        let fence = Arc::new(Fence::new(7));
        fence.hold("s", epoch, far);
        let store = hamstr::cluster::open_fenced_store(&db, fence).unwrap();
        let w = PgWriter::new("t", &Text::plain(db.clone()), "items", 10, &schema)
            .unwrap()
            .fenced_by(store.clone());
        (store, w)
    };
    let count = || sql(&db, "SELECT count(*) FROM items")[0].get::<_, i64>(0);
    let meta = |w: i64| SourceMeta {
        watermark: Some(Json::from(w)),
        ..SourceMeta::default()
    };
    let watermark = || {
        hamstr::cluster::open_store(&db)
            .unwrap()
            .meta("s")
            .unwrap()
            .watermark
    };

    // A stale epoch: staged, then the commit is refused; no row, no state.
    let (store, mut w) = open(1);
    rt.block_on(w.write_for("s", Origin::Page(1), &names, &records(&["a"])))
        .unwrap();
    assert_eq!(count(), 0, "staged rows are not written before the commit");
    assert!(matches!(
        store.commit_part("s", 1, true, &PageCommit::default(), &meta(1)),
        Err(StateError::Fenced { .. })
    ));
    assert_eq!(count(), 0, "a stale epoch wrote a row");
    assert_eq!(watermark(), None);

    // The holder: two parts, written together with the last one's transaction.
    let (store, mut w) = open(2);
    rt.block_on(w.write_for("s", Origin::Page(2), &names, &records(&["a", "b"])))
        .unwrap();
    let part = PageCommit {
        keys: vec![(b"a".to_vec(), entry(1, 1))],
        ..PageCommit::default()
    };
    store
        .commit_part("s", 2, false, &part, &SourceMeta::default())
        .unwrap();
    assert_eq!(count(), 0, "a part before the last writes nothing yet");
    assert_eq!(store.key("s", b"a").unwrap(), None);
    store
        .commit_part("s", 2, true, &PageCommit::default(), &meta(2))
        .unwrap();
    assert_eq!(count(), 2);
    assert_eq!(watermark(), Some(Json::from(2)));
    assert_eq!(store.key("s", b"a").unwrap().unwrap().fingerprint, 1);

    // An abandoned page (its run broke) is dropped, and with a later page's commit the
    // pages before it are too.
    rt.block_on(w.write_for("s", Origin::Page(3), &names, &records(&["c"])))
        .unwrap();
    store.discard("s", 3);
    rt.block_on(w.write_for("s", Origin::Page(4), &names, &records(&["d"])))
        .unwrap();
    rt.block_on(w.write_for("s", Origin::Page(5), &names, &records(&["e"])))
        .unwrap();
    store
        .commit_part("s", 3, true, &PageCommit::default(), &meta(3))
        .unwrap();
    store
        .commit_part("s", 5, true, &PageCommit::default(), &meta(5))
        .unwrap();
    let ids: Vec<String> = sql(&db, "SELECT id FROM items ORDER BY id")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["a", "b", "e"]);

    // Rows the database refuses: the commit fails, the state stays.
    sql(
        &db,
        "ALTER TABLE items ADD CONSTRAINT short CHECK (length(id) < 3)",
    );
    rt.block_on(w.write_for("s", Origin::Page(6), &names, &records(&["long"])))
        .unwrap();
    let refused = store.commit_part("s", 6, true, &PageCommit::default(), &meta(6));
    assert!(
        matches!(&refused, Err(StateError::Io(e)) if e.contains("sink `t`") && e.contains("short")),
        "{refused:?}"
    );
    assert_eq!(watermark(), Some(Json::from(5)));
    assert_eq!(count(), 3);

    // A page the sink cannot take is refused, not queued: it is fetched again.
    let refused = rt.block_on(w.write_for("s", Origin::Page(7), &[], &records(&["g"])));
    assert!(
        matches!(&refused, Err(WriteError::Refused(e)) if e.contains("without field `id`")),
        "{refused:?}"
    );

    // A lease run out by the instance's own clock: the page is not even staged.
    let fence = Arc::new(Fence::new(7));
    fence.hold("s", 2, Instant::now());
    let stale = hamstr::cluster::open_fenced_store(&db, fence).unwrap();
    let mut w = PgWriter::new("t", &Text::plain(db.clone()), "items", 10, &schema)
        .unwrap()
        .fenced_by(stale);
    assert!(matches!(
        rt.block_on(w.write_for("s", Origin::Page(7), &names, &records(&["f"]))),
        Err(WriteError::Fenced(_))
    ));

    // A queued page: its entry goes with its rows; a second delivery (another instance
    // draining the same queue) finds no entry and writes nothing.
    let (store, mut w) = open(2);
    let (space, id) = ("sinkq/t", 1u64.to_be_bytes().to_vec());
    store
        .kv_apply(space, &[(id.clone(), Some(b"{}".to_vec()))])
        .unwrap();
    for _ in 0..2 {
        let origin = Origin::Queued { space, id: &id };
        rt.block_on(w.write_for("s", origin, &names, &records(&["q"])))
            .unwrap();
    }
    assert_eq!(store.kv_len(space).unwrap(), 0);
    assert_eq!(count(), 4, "the queued page written once");

    // Every type of field goes through the commit's statement as it does through the
    // sink's own.
    let typed = Schema {
        fields: vec![
            ("id".into(), Type::String, false),
            ("n".into(), Type::Int, false),
            ("f".into(), Type::Float, false),
            ("d".into(), Type::Decimal, false),
            ("b".into(), Type::Bool, false),
            ("t".into(), Type::Datetime, false),
            ("j".into(), Type::Json, true),
        ],
        key: vec!["id".into()],
    };
    let mut w = PgWriter::new("t", &Text::plain(db.clone()), "typed", 10, &typed)
        .unwrap()
        .fenced_by(store.clone());
    let names: Vec<String> = typed.fields.iter().map(|f| f.0.clone()).collect();
    let record = Arc::new(vec![Emitted {
        key: Some(b"x".to_vec()),
        json: br#"{"id":"x","n":7,"f":1.5,"d":"12.50","b":true,"t":"2024-03-01T08:00:00Z","j":{"a":[1]}}"#.to_vec().into(),
    }]);
    rt.block_on(w.write_for("s", Origin::Page(8), &names, &record))
        .unwrap();
    store
        .commit_part("s", 8, true, &PageCommit::default(), &meta(8))
        .unwrap();
    let row = &sql(
        &db,
        "SELECT id, n, f, d::text, b, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), j::text FROM typed",
    )[0];
    assert_eq!(row.get::<_, String>(0), "x");
    assert_eq!(row.get::<_, i64>(1), 7);
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert_eq!(row.get::<_, String>(3), "12.50");
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, String>(5), "2024-03-01 08:00");
    assert_eq!(row.get::<_, String>(6), r#"{"a": [1]}"#);
}
