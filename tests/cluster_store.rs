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
    let page = PageCommit {
        keys: vec![(b"a".to_vec(), entry(1, 5)), (b"b".to_vec(), entry(2, 9))],
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
    // Keys stored without index entries: a full prune removes a, indexes b.
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
    store.commit("s", &page, &meta).unwrap();
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
    store.sink_upsert("t", &rows).unwrap();
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

/// A `postgres` sink on the cluster's database checks the page's lease in its own
/// transaction: a stale epoch writes no row (and is not queued), the holder's does.
#[test]
fn a_postgres_sink_on_the_cluster_database_writes_only_under_the_lease() {
    use hamstr::check::{Schema, Text, Type};
    use hamstr::nodes::extract::Emitted;
    use hamstr::nodes::sink::postgres::PgWriter;
    use hamstr::nodes::sink::{SinkWriter, WriteError};
    let Some(url) = database_url() else { return };
    let db = fresh_database(&url, "sinkfence");
    drop(hamstr::cluster::open_store(&db).unwrap());
    sql(
        &db,
        "INSERT INTO hamstr_units (unit, owner, epoch, lease_until, version) VALUES ('s', 7, 2, now() + interval '1 hour', 'v')",
    );
    let schema = Schema {
        fields: vec![("id".into(), Type::String, false)],
        key: vec!["id".into()],
    };
    let names = vec!["id".to_string()];
    let records = Arc::new(vec![Emitted {
        key: Some(b"a".to_vec()),
        json: br#"{"id":"a"}"#.to_vec(),
    }]);
    let far = Instant::now() + Duration::from_secs(3600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let write = |epoch: i64| {
        let fence = Arc::new(Fence::new(7));
        fence.hold("s", epoch, far);
        let store = hamstr::cluster::open_fenced_store(&db, fence).unwrap();
        let mut w = PgWriter::new("t", &Text::plain(db.clone()), "items", 10, &schema)
            .unwrap()
            .fenced_by(store);
        rt.block_on(w.write_for("s", &names, &records))
    };
    match write(1) {
        Err(WriteError::Fenced(e)) => assert!(e.contains("fenced"), "{e}"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    let rows = sql(&db, "SELECT count(*) FROM items");
    assert_eq!(rows[0].get::<_, i64>(0), 0, "a stale epoch wrote a row");
    write(2).unwrap();
    let rows = sql(&db, "SELECT count(*) FROM items");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}
