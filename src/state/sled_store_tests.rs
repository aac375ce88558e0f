//! Tests of the sled store: commits, prunes, the lock.
use super::*;

#[test]
fn commit_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let key = |k: &[u8], fp, c: i64| {
        (
            k.to_vec(),
            KeyEntry {
                fingerprint: fp,
                cursor: Some(Json::from(c)),
            },
        )
    };
    // Keys with their cursor index entries (order bytes, then the key), as a page
    // of an incremental source commits them.
    let index = |k: &[u8], c: i64| {
        let mut at = c.to_be_bytes().to_vec();
        at.extend_from_slice(k);
        (at, k.to_vec())
    };
    let page = PageCommit {
        keys: vec![key(b"a", 1, 5), key(b"b", 2, 9)],
        index: vec![index(b"a", 5), index(b"b", 9)],
        ..PageCommit::default()
    };
    let meta = SourceMeta {
        watermark: Some(Json::from(9)),
        ..SourceMeta::default()
    };
    store.commit("s", &page, &meta).unwrap();
    assert_eq!(store.key("s", b"a").unwrap().unwrap().fingerprint, 1);
    assert_eq!(
        store.fingerprints("s", &[b"b", b"a", b"c"], &[]).unwrap(),
        [Some(2), Some(1), None]
    );
    assert_eq!(store.meta("s").unwrap().watermark, Some(Json::from(9)));
    let order = |c: &Json| Some(c.as_i64()?.to_be_bytes().to_vec());
    let bound = 9i64.to_be_bytes();
    let prune = Prune {
        bound: &bound,
        below: &|c| c.as_i64().unwrap() < 9,
        order: &order,
    };
    assert_eq!(store.prune_keys("s", &prune, false).unwrap(), 1);
    assert_eq!(store.key_count("s").unwrap(), 1);
    assert_eq!(store.key("s", b"a").unwrap(), None);
    let bound = 10i64.to_be_bytes();
    let prune = Prune {
        bound: &bound,
        below: &|c| c.as_i64().unwrap() < 10,
        order: &order,
    };
    store.prune_keys("s", &prune, false).unwrap();
    assert_eq!(store.key_count("s").unwrap(), 0);
    // Committed again above the bound, they are held again.
    let later = PageCommit {
        keys: vec![key(b"a", 1, 15), key(b"b", 2, 19)],
        index: vec![index(b"a", 15), index(b"b", 19)],
        ..PageCommit::default()
    };
    store.commit("s", &later, &meta).unwrap();
    assert_eq!(store.key_count("s").unwrap(), 2);
    // What was committed is read back by a store opened anew.
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.key_count("s").unwrap(), 2);
    assert_eq!(store.key("s", b"b").unwrap().unwrap().fingerprint, 2);
    store.reset("s").unwrap();
    assert_eq!(store.key_count("s").unwrap(), 0);
    assert_eq!(store.key("s", b"b").unwrap(), None);
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

#[test]
fn sources_sharing_trees_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let entry = |fp| KeyEntry {
        fingerprint: fp,
        cursor: None,
    };
    // `s` is a prefix of `s1`'s name, and `s`'s keys start with `1`.
    let page = |fp| PageCommit {
        keys: vec![(b"1a".to_vec(), entry(fp)), (b"b".to_vec(), entry(fp))],
        rejected: vec![(b"r".to_vec(), Json::from(fp))],
        child_requests: vec![("c".into(), b"p".to_vec(), Json::from(fp))],
        ..PageCommit::default()
    };
    store.commit("s", &page(1), &SourceMeta::default()).unwrap();
    store
        .commit("s1", &page(2), &SourceMeta::default())
        .unwrap();
    assert_eq!(store.key_count("s").unwrap(), 2);
    assert_eq!(store.key_count("s1").unwrap(), 2);
    assert_eq!(store.key("s", b"1a").unwrap().unwrap().fingerprint, 1);
    assert_eq!(store.key("s1", b"1a").unwrap().unwrap().fingerprint, 2);
    assert_eq!(store.key("s", b"1").unwrap(), None);
    let keys: Vec<Vec<u8>> = store
        .keys("s")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, [b"1a".to_vec(), b"b".to_vec()]);
    assert_eq!(store.rejected("s1").unwrap(), [Json::from(2)]);
    assert_eq!(
        store.child_queue("c").unwrap(),
        [(b"p".to_vec(), Json::from(2))]
    );
    store.child_done("c", b"p").unwrap();
    assert!(store.child_queue("c").unwrap().is_empty());
    store.reset("s").unwrap();
    assert_eq!(store.key_count("s").unwrap(), 0);
    assert_eq!(store.key_count("s1").unwrap(), 2);
    assert_eq!(store.rejected_keys("s1").unwrap().len(), 1);
}

/// A data directory of state version 3 (a tree per kind and source, and a commit a
/// killed run recorded in that layout) opens as the current version with everything in
/// place: the keys in their key index, with the cursor order their index gave them.
#[test]
fn a_version_3_store_is_moved_into_the_shared_trees() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("state")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("version", &3u32.to_be_bytes())
            .unwrap();
        let old = |name: &str| db.open_tree(name).unwrap();
        old("keys/orders")
            .insert(
                "k1",
                KeyEntry {
                    fingerprint: 7,
                    cursor: Some(Json::from(3)),
                }
                .encode(),
            )
            .unwrap();
        old("keyidx/orders").insert(b"\x03k1", "k1").unwrap();
        old("rejected/orders").insert("bad", "{\"why\":1}").unwrap();
        old("queue/items").insert("k1", "{\"id\":\"k1\"}").unwrap();
        old("keys/other")
            .insert(
                "k1",
                KeyEntry {
                    fingerprint: 9,
                    cursor: None,
                }
                .encode(),
            )
            .unwrap();
        // A commit recorded but not applied, naming the old trees.
        let entry = KeyEntry {
            fingerprint: 8,
            cursor: None,
        }
        .encode();
        let trees = ["keys/orders".to_string()];
        let ops = [Op {
            tree: 0,
            key: b"k2",
            value: Some(&entry),
        }];
        db.open_tree("commits")
            .unwrap()
            .insert("orders", commit_log::encode(&trees, &ops))
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.key("orders", b"k1").unwrap().unwrap().fingerprint, 7);
    assert_eq!(store.key("orders", b"k2").unwrap().unwrap().fingerprint, 8);
    assert_eq!(store.key("other", b"k1").unwrap().unwrap().fingerprint, 9);
    assert_eq!(store.key_count("orders").unwrap(), 2);
    assert_eq!(
        store.rejected("orders").unwrap(),
        [serde_json::json!({"why": 1})]
    );
    assert_eq!(store.child_queue("items").unwrap().len(), 1);
    // The cursor index came along: a prune through it finds k1 (cursor 3 < 4).
    let order = |c: &Json| Some(vec![c.as_i64()? as u8]);
    let prune = Prune {
        bound: &[4],
        below: &|c| c.as_i64().unwrap() < 4,
        order: &order,
    };
    store.prune_keys("orders", &prune, false).unwrap();
    assert_eq!(store.key("orders", b"k1").unwrap(), None);
    assert_eq!(store.key_count("orders").unwrap(), 1);
    let names: Vec<String> = store
        .db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains('/') && !n.starts_with("meta/")),
        "{names:?}"
    );
    assert_eq!(
        store
            .db
            .open_tree("meta")
            .unwrap()
            .get("version")
            .unwrap()
            .unwrap()
            .as_ref(),
        STATE_VERSION.to_be_bytes()
    );
}

#[test]
fn keys_committed_with_their_hashes_are_found_by_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let entry = |fp| KeyEntry {
        fingerprint: fp,
        cursor: None,
    };
    let page = PageCommit {
        keys: vec![(b"a".to_vec(), entry(1)), (b"b".to_vec(), entry(2))],
        hashes: vec![hash_key(b"a"), hash_key(b"b")],
        ..PageCommit::default()
    };
    store.commit("s", &page, &SourceMeta::default()).unwrap();
    // Hashes not given, or not one per key, are computed.
    let partial = PageCommit {
        keys: vec![(b"c".to_vec(), entry(3)), (b"d".to_vec(), entry(4))],
        hashes: vec![hash_key(b"x")],
        ..PageCommit::default()
    };
    store.commit("s", &partial, &SourceMeta::default()).unwrap();
    let hashes: Vec<u128> = [b"a", b"b", b"c", b"d"]
        .iter()
        .map(|k| hash_key(*k))
        .collect();
    let keys: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
    assert_eq!(
        store.fingerprints("s", &keys, &hashes).unwrap(),
        [Some(1), Some(2), Some(3), Some(4)]
    );
    assert_eq!(
        store.fingerprints("s", &keys, &[]).unwrap(),
        [Some(1), Some(2), Some(3), Some(4)]
    );
}

#[test]
fn a_retired_run_file_is_removed_only_by_a_flush_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let runs = dir.path().join("state").join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let old = runs.join("old.run");
    std::fs::write(&old, b"a run a merge replaced").unwrap();
    store.run_files.retire(old.clone());
    // The health check flushes too, but removes nothing: only `flush` does.
    store.health().unwrap();
    assert!(old.exists());
    store.flush().unwrap();
    assert!(!old.exists());
    assert!(store.run_files.take_retired().is_empty());
    // A flush with none retired (and one whose file is gone already) is no error.
    store.run_files.retire(old.clone());
    store.flush().unwrap();
}

#[test]
fn a_reset_source_leaves_no_run_file_after_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let runs = dir.path().join("state").join("runs");
    // Files ending in `ext` in the sources' folders.
    let files_of = |ext: &str| {
        std::fs::read_dir(&runs)
            .map(|d| {
                d.filter_map(|f| std::fs::read_dir(f.ok()?.path()).ok())
                    .flatten()
                    .filter(|f| {
                        f.as_ref()
                            .is_ok_and(|f| f.path().extension().is_some_and(|e| e == ext))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let files = || files_of("run");
    let page = |source: &str, n: usize| {
        let keys = (0..1000)
            .map(|i| {
                let entry = KeyEntry {
                    fingerprint: 1,
                    cursor: None,
                };
                (format!("{n}-{i}").into_bytes(), entry)
            })
            .collect();
        let page = PageCommit {
            keys,
            ..PageCommit::default()
        };
        store.commit(source, &page, &SourceMeta::default()).unwrap();
    };
    // Enough keys for one fold of each source: a run's file each.
    for n in 0..key_index::FOLD_AT / 1000 {
        page("s", n);
        page("t", n);
    }
    assert_eq!(files(), 2);
    store.reset("s").unwrap();
    assert_eq!(files(), 2, "kept until the reset is durable");
    store.flush().unwrap();
    assert_eq!(files(), 1, "only the other source's run is left");
    assert_eq!(files_of("log"), 0, "the folded key logs are gone too");
    assert_eq!(store.key_count("s").unwrap(), 0);
    assert_eq!(store.key_count("t").unwrap(), key_index::FOLD_AT);
}

/// A step is quick only once the source's key index is in memory, and not when it
/// would fold; a step without keys always is. A fold makes room again.
#[test]
fn a_step_is_quick_only_with_its_index_read_and_no_fold_due() {
    use crate::state::key_index::FOLD_AT;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert!(store.quick("s", 0));
    assert!(!store.quick("s", 1), "the index is read from disk first");
    let page = |from: usize, n: usize| PageCommit {
        keys: (from..from + n)
            .map(|i| {
                let entry = KeyEntry {
                    fingerprint: i as u64,
                    cursor: None,
                };
                (format!("k{i}").into_bytes(), entry)
            })
            .collect(),
        ..PageCommit::default()
    };
    store
        .commit("s", &page(0, 10), &SourceMeta::default())
        .unwrap();
    assert!(store.quick("s", 500));
    assert!(!store.quick("s", FOLD_AT - 10), "that many would fold");
    assert!(store.quick("s", FOLD_AT - 11));
    assert!(
        !store.quick("t", 1),
        "another source's index is not read yet"
    );
    // Past the fold, room again.
    store
        .commit("s", &page(10, FOLD_AT), &SourceMeta::default())
        .unwrap();
    assert!(store.quick("s", 500));
    // A busy index is not waited for.
    let index = store.key_index("s").unwrap();
    let held = index.lock().unwrap();
    assert!(!store.quick("s", 1));
    drop(held);
    assert!(store.quick("s", 1));
}
