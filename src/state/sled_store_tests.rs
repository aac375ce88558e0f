//! Tests of the sled store: commits, prunes, the lock.
use super::*;

#[test]
fn commit_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let page = PageCommit {
        keys: vec![
            (
                b"a".to_vec(),
                KeyEntry {
                    fingerprint: 1,
                    cursor: Some(Json::from(5)),
                },
            ),
            (
                b"b".to_vec(),
                KeyEntry {
                    fingerprint: 2,
                    cursor: Some(Json::from(9)),
                },
            ),
        ],
        ..PageCommit::default()
    };
    let meta = SourceMeta {
        watermark: Some(Json::from(9)),
        ..SourceMeta::default()
    };
    store.commit("s", &page, &meta).unwrap();
    assert_eq!(store.key("s", b"a").unwrap().unwrap().fingerprint, 1);
    assert_eq!(store.meta("s").unwrap().watermark, Some(Json::from(9)));
    let order = |c: &Json| Some(c.as_i64()?.to_be_bytes().to_vec());
    let bound = 9i64.to_be_bytes();
    let prune = Prune {
        bound: &bound,
        below: &|c| c.as_i64().unwrap() < 9,
        order: &order,
    };
    // Keys stored without index entries (as by version 1): a full prune indexes them.
    assert_eq!(store.prune_keys("s", &prune, true).unwrap(), 1);
    assert_eq!(store.key_count("s").unwrap(), 1);
    // b (cursor 9) is indexed now; once the watermark passes it, the index finds it.
    let bound = 10i64.to_be_bytes();
    let prune = Prune {
        bound: &bound,
        below: &|c| c.as_i64().unwrap() < 10,
        order: &order,
    };
    assert_eq!(store.prune_keys("s", &prune, false).unwrap(), 1);
    assert_eq!(store.key_count("s").unwrap(), 0);
    store.commit("s", &page, &meta).unwrap();
    assert_eq!(store.key_count("s").unwrap(), 2);
    store.reset("s").unwrap();
    assert_eq!(store.key_count("s").unwrap(), 0);
    assert_eq!(store.meta("s").unwrap().watermark, None);
}

#[test]
fn a_folder_removed_or_replaced_under_the_store_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SledStore::open(&data).unwrap();
    store.health().unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let removed = store.health();
    assert!(matches!(
        removed,
        Err(StateError::Gone {
            what: "removed",
            ..
        })
    ));
    // sled still holds the removed `db` open: a new file cannot reuse its inode.
    std::fs::create_dir_all(data.join("state")).unwrap();
    std::fs::write(data.join("state/db"), b"").unwrap();
    let replaced = store.health();
    assert!(matches!(
        replaced,
        Err(StateError::Gone {
            what: "replaced",
            ..
        })
    ));
}

#[test]
fn a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    match SledStore::open(dir.path()) {
        Err(StateError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, got a second store"),
    }
}
