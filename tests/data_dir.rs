//! The data directory: damaged ones give a clear error (never a panic), state written
//! before versioning is read, a newer version is refused.

use assert_cmd::Command;
use hamstr::state::{SledStore, StateError, StateStore};

fn hamstr() -> Command {
    let mut c = Command::cargo_bin("hamstr").unwrap();
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn a_damaged_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/state")).unwrap();
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("data/state/db"), &noise).unwrap();
    std::fs::write(dir.path().join("data/state/conf"), &noise[..300]).unwrap();
    let out = hamstr()
        .args(["state", "examples/restaurant.hmr", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot open the data directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_data_dir_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), "not a directory").unwrap();
    let out = hamstr()
        .args([
            "run",
            "--once",
            "--no-watch",
            "examples/restaurant.hmr",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("cannot open the data directory"), "{err}");
    assert!(err.contains("it is a file, not a folder"), "{err}");
}

#[test]
fn state_from_before_versioning_is_read_and_a_newer_version_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What a store without a version looked like: source meta without the fields
        // added since, and no version entry.
        let db = sled::open(dir.path().join("state")).unwrap();
        let sources = db.open_tree("meta/sources").unwrap();
        sources
            .insert(
                "shop_orders",
                br#"{"watermark":"2026-01-01T00:00:00Z","last_run":null,"last_error":null}"#
                    .to_vec(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let meta = store.meta("shop_orders").unwrap();
    assert_eq!(
        meta.watermark,
        Some(serde_json::json!("2026-01-01T00:00:00Z"))
    );
    assert_eq!(meta.records_seen, 0);
    drop(store);
    {
        let db = sled::open(dir.path().join("state")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    match SledStore::open(dir.path()) {
        Err(StateError::TooNew { found: 99 }) => {}
        Err(other) => panic!("expected TooNew, got {other}"),
        Ok(_) => panic!("a newer store was opened"),
    }
}

/// A run killed while sled wrote a snapshot leaves `snap.<lsn>.generating`, empty or cut
/// short; sled 0.34 would read it as the newest snapshot and refuse the store ("Read
/// corrupted data", seen in the crash test). The store opens with everything committed,
/// and the unfinished file is gone.
#[test]
fn a_snapshot_cut_short_by_a_kill_does_not_lose_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let meta = hamstr::state::SourceMeta {
        watermark: Some(serde_json::json!("2026-03-01T00:00:00Z")),
        version: hamstr::state::STATE_VERSION,
        records_seen: 42,
        ..Default::default()
    };
    for round in 0..2 {
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .commit("orders", &hamstr::state::PageCommit::default(), &meta)
                .unwrap();
            store.flush().unwrap();
        }
        let state = dir.path().join("state");
        let complete: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("snap.")
            })
            .collect();
        // Round 0: an empty file (killed before the first write); round 1: the first
        // half of a real snapshot (killed mid-write). Both sort after every real one.
        let unfinished = state.join("snap.FFFFFFFFFFFFFFF0.generating");
        let bytes = if round == 0 {
            Vec::new()
        } else {
            let real = complete
                .first()
                .expect("sled wrote a snapshot on reopening");
            let full = std::fs::read(real).unwrap();
            full[..full.len() / 2].to_vec()
        };
        std::fs::write(&unfinished, bytes).unwrap();

        let store = SledStore::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(store.meta("orders").unwrap(), meta, "round {round}");
        assert!(
            !unfinished.exists(),
            "round {round}: the unfinished snapshot is still there"
        );
    }
}

/// While a run holds the store, another command neither opens it nor touches its files:
/// a snapshot the run is writing must not be removed under it.
#[test]
fn an_unfinished_snapshot_of_a_running_store_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let _running = SledStore::open(dir.path()).unwrap();
    let generating = dir.path().join("state/snap.FFFFFFFFFFFFFFF0.generating");
    std::fs::write(&generating, b"being written").unwrap();
    match SledStore::open(dir.path()) {
        Err(StateError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second store was opened"),
    }
    assert!(generating.exists());
}

/// `dump` and `state` only read: on a folder no run has used they say so, and leave it
/// as it was (a user who may only read a folder can still ask).
#[test]
fn reading_an_unused_data_dir_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for args in [vec!["state"], vec!["dump", "orders"]] {
        let out = hamstr()
            .args(&args[..1])
            .arg("examples/restaurant.hmr")
            .args(&args[1..])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("nothing has run there yet"), "{err}");
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "{args:?} wrote"
        );
    }
}
