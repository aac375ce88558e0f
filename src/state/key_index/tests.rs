//! Tests of the key index: pages, folds, prunes, reloads.
use super::files::MAGIC as MAGIC_FOR_TESTS;
use super::format::{chunk_key, MetaRun, FORMAT_V1};
use super::*;

fn tree() -> (tempfile::TempDir, sled::Tree, RunFiles) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("keylog").unwrap();
    let files = RunFiles::new(dir.path().join("runs"));
    (dir, tree, files)
}

/// The run files among `paths` (not the key logs).
fn runs_of(paths: Vec<std::path::PathBuf>) -> Vec<std::path::PathBuf> {
    paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "run"))
        .collect()
}

/// How many chunks the runs of `index` in force hold in their files.
fn file_chunks(index: &KeyIndex) -> usize {
    index
        .runs
        .iter()
        .filter_map(|r| r.file.as_ref().map(|f| f.chunks()))
        .sum()
}

fn entry(n: u64, fp: u64, order: u8) -> Full {
    Full {
        entry: Entry {
            hash: hash_key(&n.to_be_bytes()),
            fingerprint: fp,
            order: order16(Some(&[order])),
        },
        key: n.to_be_bytes().to_vec(),
        cursor: format!("{order}").into_bytes(),
    }
}

/// Writes `entries` as pages of 1,000, as the store's commit does.
fn write(index: &mut KeyIndex, tree: &sled::Tree, entries: &[Full]) {
    for page in entries.chunks(1000) {
        let page: Vec<Keyed> = page.iter().map(Full::keyed).collect();
        let seq = index.page(&page).unwrap();
        tree.insert(committed_key("s"), &seq.to_be_bytes()).unwrap();
        index.written(tree, seq, &page).unwrap();
    }
}

#[test]
fn keys_are_found_in_recent_and_after_a_reload() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    write(&mut index, &tree, &[entry(1, 10, 1), entry(2, 20, 1)]);
    assert_eq!(
        index.get(&tree, entry(1, 0, 0).entry.hash).unwrap(),
        Some(10)
    );
    assert_eq!(index.get(&tree, entry(3, 0, 0).entry.hash).unwrap(), None);
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(
        again.get(&tree, entry(2, 0, 0).entry.hash).unwrap(),
        Some(20)
    );
    assert_eq!(again.count(&tree).unwrap(), 2);
    // A later page wins over an earlier one for the same key.
    write(&mut again, &tree, &[entry(2, 21, 1)]);
    let mut third = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(
        third.get(&tree, entry(2, 0, 0).entry.hash).unwrap(),
        Some(21)
    );
}

#[test]
fn a_full_recent_is_folded_into_chunks_and_memory_stays_bounded() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    // No table: every fold is spilled at once.
    index.table_max = 0;
    let n = (FOLD_AT + 5_000) as u64;
    let entries: Vec<Full> = (0..n).map(|i| entry(i, i, 1)).collect();
    write(&mut index, &tree, &entries);
    assert!(index.recent.len() < FOLD_AT, "recent was folded");
    assert_eq!(index.runs.len(), 1);
    // Keys changed after the fold shadow their folded entries.
    write(&mut index, &tree, &[entry(7, 70, 1)]);
    for i in [0, 7, n / 2, n - 1] {
        let want = if i == 7 { 70 } else { i };
        assert_eq!(
            index.get(&tree, entry(i, 0, 0).entry.hash).unwrap(),
            Some(want)
        );
    }
    assert_eq!(
        index.get(&tree, entry(n + 1, 0, 0).entry.hash).unwrap(),
        None
    );
    assert_eq!(index.count(&tree).unwrap(), n as usize);
    // The fold's pages went with their key log; a log holds the pages written after
    // it (5 of 1,000 entries, one of 1), and nothing goes to sled; a reload finds the
    // same.
    let after = 5 * 1000usize.div_ceil(PAGE_PART) + 1;
    assert_eq!(index.pages.len(), after, "page parts left after the fold");
    assert_eq!(files.take_retired().len(), 1, "the first log");
    let (_, log) = files.logs("s").unwrap().pop().unwrap();
    assert_eq!(log::read(&log).unwrap().len(), after);
    assert_eq!(tree.scan_prefix(prefixed("s", b"p")).count(), 0);
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(
        again.get(&tree, entry(7, 0, 0).entry.hash).unwrap(),
        Some(70)
    );
    assert_eq!(
        again.get(&tree, entry(n - 1, 0, 0).entry.hash).unwrap(),
        Some(n - 1)
    );
    assert_eq!(again.count(&tree).unwrap(), n as usize);
    // Keys and cursors came through the fold, for `dump`.
    let all = again.entries(&tree).unwrap();
    assert_eq!(all.len(), n as usize);
    assert_eq!(all[0].key, 0u64.to_be_bytes());
    assert_eq!(all[7].entry.fingerprint, 70);
    assert_eq!(all[7].cursor, b"1");
}

#[test]
fn a_page_written_without_its_commit_does_not_count() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    write(&mut index, &tree, &[entry(1, 10, 1)]);
    // Written, then the process died before the commit recorded its number.
    index.page(&[entry(2, 20, 1).keyed()]).unwrap();
    drop(index);
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(again.get(&tree, entry(2, 0, 0).entry.hash).unwrap(), None);
    assert_eq!(
        again.get(&tree, entry(1, 0, 0).entry.hash).unwrap(),
        Some(10)
    );
    // What the log held is a run now; the log goes after the next flush.
    assert_eq!(again.runs.len(), 1);
    let retired = files.take_retired();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert!(retired[0].to_string_lossy().ends_with(".log"));
    // The next page takes its number, in a log of its own, and counts; a crash before
    // the flush left the old log with the page that never counted under that number.
    write(&mut again, &tree, &[entry(3, 30, 1)]);
    drop(again);
    assert_eq!(files.logs("s").unwrap().len(), 2);
    let mut third = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(
        third.get(&tree, entry(3, 0, 0).entry.hash).unwrap(),
        Some(30)
    );
    assert_eq!(third.get(&tree, entry(2, 0, 0).entry.hash).unwrap(), None);
    assert_eq!(third.count(&tree).unwrap(), 2);
}

/// A log cut anywhere by a crash (a kill leaves a short write at most; a power cut may
/// leave zeros) loads what it holds before the cut, as far as the commits say.
#[test]
fn a_key_log_cut_by_a_crash_loads_up_to_the_cut() {
    let fresh = tree;
    let (_dir, tree, files) = fresh();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    write(&mut index, &tree, &[entry(1, 10, 1), entry(2, 20, 1)]);
    write(&mut index, &tree, &[entry(3, 30, 1)]);
    index.sync_log().unwrap();
    drop(index);
    let (_, path) = files.logs("s").unwrap().pop().unwrap();
    let whole = std::fs::read(&path).unwrap();
    let mut loaded = Vec::new();
    for cut in (0..whole.len()).step_by(7).chain([whole.len()]) {
        std::fs::write(&path, &whole[..cut]).unwrap();
        // Each load folds what it read; a fresh store each time.
        let (_d, t, f) = fresh();
        for kv in tree.iter() {
            let (k, v) = kv.unwrap();
            t.insert(k, v).unwrap();
        }
        let copy = f.log_path("s", 1);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&path, &copy).unwrap();
        let mut again = KeyIndex::load(&t, &f, "s").unwrap();
        loaded.push(again.count(&t).unwrap());
        if cut == whole.len() {
            assert_eq!(again.get(&t, entry(3, 0, 0).entry.hash).unwrap(), Some(30));
        }
    }
    assert_eq!(loaded.first(), Some(&0));
    assert_eq!(loaded.last(), Some(&3));
    assert!(loaded.windows(2).all(|w| w[0] <= w[1]), "{loaded:?}");
    assert!(loaded.contains(&2), "the first page alone: {loaded:?}");
}

#[test]
fn chunks_of_an_unfinished_fold_are_removed_when_the_index_loads() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    write(&mut index, &tree, &[entry(1, 10, 1)]);
    // A chunk of the next generation, written before a crash stopped the fold.
    tree.insert(chunk_key("s", 1, 5), encode_page(&[entry(9, 90, 1)]))
        .unwrap();
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(again.get(&tree, entry(9, 0, 0).entry.hash).unwrap(), None);
    assert_eq!(
        again.get(&tree, entry(1, 0, 0).entry.hash).unwrap(),
        Some(10)
    );
    assert_eq!(tree.scan_prefix(prefixed("s", b"c")).count(), 0);
}

#[test]
fn a_prune_forgets_keys_below_the_bound_without_reading_them() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    // One page wholly below the bound, one across it.
    write(&mut index, &tree, &[entry(1, 10, 3), entry(2, 20, 4)]);
    write(&mut index, &tree, &[entry(3, 30, 4), entry(4, 40, 9)]);
    assert_eq!(index.prune(&tree, &[5]).unwrap(), 3);
    assert_eq!(index.pages.len(), 1);
    for (n, want) in [(1, None), (2, None), (3, None), (4, Some(40))] {
        assert_eq!(
            index.get(&tree, entry(n, 0, 0).entry.hash).unwrap(),
            want,
            "key {n}"
        );
    }
    assert_eq!(index.count(&tree).unwrap(), 1);
    // The bound holds after a reload: entry 3 is still in its page, but hidden.
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(again.get(&tree, entry(3, 0, 0).entry.hash).unwrap(), None);
    assert_eq!(again.count(&tree).unwrap(), 1);
    // Keys without a cursor are never pruned.
    write(
        &mut again,
        &tree,
        &[{
            let mut e = entry(5, 50, 0);
            e.entry.order = NO_ORDER;
            e
        }],
    );
    again.prune(&tree, &[200]).unwrap();
    assert_eq!(
        again.get(&tree, entry(5, 0, 0).entry.hash).unwrap(),
        Some(50)
    );
}

#[test]
fn many_runs_are_merged_into_one_with_the_newest_entries() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    index.table_max = 0;
    // Each fold writes a run; key 0 changes in every one.
    for round in 0..=MAX_RUNS as u64 {
        let mut entries: Vec<Full> = (1..FOLD_AT as u64)
            .map(|i| entry(round * 1_000_000 + i, i, 1))
            .collect();
        entries.push(entry(0, round, 1));
        write(&mut index, &tree, &entries);
    }
    assert_eq!(index.runs.len(), 1, "merged");
    let total = (MAX_RUNS as u64 + 1) * FOLD_AT as u64 - MAX_RUNS as u64;
    assert_eq!(index.meta.runs[0].count, total);
    assert_eq!(
        index.get(&tree, entry(0, 0, 0).entry.hash).unwrap(),
        Some(MAX_RUNS as u64)
    );
    assert_eq!(
        index.get(&tree, entry(3_000_005, 0, 0).entry.hash).unwrap(),
        Some(5)
    );
    // Only the merged run is in force; the files it replaced are retired.
    assert_eq!(file_chunks(&index) as u64, total.div_ceil(CHUNK as u64));
    let present = files.present("s").unwrap();
    let retired = runs_of(files.retired.lock().unwrap().clone());
    assert_eq!(retired.len(), MAX_RUNS + 1);
    assert_eq!(present.len(), MAX_RUNS + 2);
    assert!(present
        .iter()
        .all(|(id, p)| *id == index.runs[0].id || retired.contains(p)));
    assert_eq!(tree.scan_prefix(prefixed("s", b"c")).count(), 0);
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(
        again.get(&tree, entry(0, 0, 0).entry.hash).unwrap(),
        Some(MAX_RUNS as u64)
    );
}

#[test]
fn a_merge_drops_what_a_prune_hid() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    index.table_max = 0;
    let old: Vec<Full> = (0..FOLD_AT as u64).map(|i| entry(i, i, 1)).collect();
    write(&mut index, &tree, &old);
    // Folded now; a prune above them hides them, the next fold leaves them out.
    index.prune(&tree, &[2]).unwrap();
    let newer: Vec<Full> = (0..FOLD_AT as u64)
        .map(|i| entry(i + 1_000_000, i, 3))
        .collect();
    write(&mut index, &tree, &newer);
    // Two runs now; the hidden entries leave only when the runs are merged.
    assert_eq!(index.runs.len(), 2);
    index.merge(&tree).unwrap();
    assert_eq!(index.meta.runs.len(), 1);
    assert_eq!(index.meta.runs[0].count, FOLD_AT as u64);
    assert_eq!(index.get(&tree, entry(5, 0, 0).entry.hash).unwrap(), None);
    assert_eq!(
        index.get(&tree, entry(1_000_005, 0, 0).entry.hash).unwrap(),
        Some(5)
    );
}

#[test]
fn a_fold_writes_a_file_and_keeps_its_table_while_the_tables_fit() {
    let (dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    let first: Vec<Full> = (0..FOLD_AT as u64).map(|i| entry(i, i, 1)).collect();
    write(&mut index, &tree, &first);
    // Folded: a file named by the meta, its pages gone from sled, its table in memory.
    assert_eq!(index.runs.len(), 1);
    assert!(index.runs[0].table.is_some());
    assert_eq!(file_chunks(&index), FOLD_AT.div_ceil(CHUNK));
    assert_eq!(files.present("s").unwrap().len(), 1);
    assert_eq!(index.meta.runs.len(), 1);
    assert!(index.meta.runs[0].in_file);
    assert_eq!(tree.scan_prefix(prefixed("s", b"p")).count(), 0);
    assert_eq!(
        index.get(&tree, entry(9, 0, 0).entry.hash).unwrap(),
        Some(9)
    );
    // A reload reads the file back, table and all.
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(again.runs.len(), 1);
    assert!(again.runs[0].table.is_some());
    assert_eq!(
        again.get(&tree, entry(9, 0, 0).entry.hash).unwrap(),
        Some(9)
    );
    assert_eq!(again.count(&tree).unwrap(), FOLD_AT);
    // Tables full: the oldest run's table goes, its entries are read from its file;
    // key 9's newer entry shadows the older one.
    again.table_max = FOLD_AT;
    let mut second: Vec<Full> = (1..FOLD_AT as u64)
        .map(|i| entry(1_000_000 + i, i, 1))
        .collect();
    second.push(entry(9, 90, 1));
    write(&mut again, &tree, &second);
    assert_eq!(again.runs.len(), 2);
    assert!(again.runs[0].table.is_none());
    assert!(again.runs[1].table.is_some());
    assert_eq!(again.meta.runs.len(), 2);
    for (n, want) in [(5, 5), (9, 90), (1_000_005, 5)] {
        assert_eq!(
            again.get(&tree, entry(n, 0, 0).entry.hash).unwrap(),
            Some(want),
            "key {n}"
        );
    }
    let mut third = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(
        third.get(&tree, entry(9, 0, 0).entry.hash).unwrap(),
        Some(90)
    );
    assert_eq!(
        third.get(&tree, entry(5, 0, 0).entry.hash).unwrap(),
        Some(5)
    );
    assert_eq!(third.count(&tree).unwrap(), 2 * FOLD_AT - 1);
    let all = third.entries(&tree).unwrap();
    assert_eq!(all.len(), 2 * FOLD_AT - 1);
    // Lookups, loads and dumps read the files; none is left open (thousands of sources
    // would run out of descriptors).
    #[cfg(target_os = "linux")]
    {
        let runs = dir.path().join("runs");
        let open = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(&runs))
            .count();
        assert_eq!(open, 0, "run files left open");
    }
    let _ = &dir;
}

/// An entry as a value of [`FORMAT_V1`] held it, before [`FORMAT`].
fn encode_v1(entries: &[Full]) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    for f in entries {
        out.extend_from_slice(&f.entry.hash.to_be_bytes());
        out.extend_from_slice(&f.entry.fingerprint.to_be_bytes());
        out.extend_from_slice(&f.entry.order);
        for part in [&f.key, &f.cursor] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

#[test]
fn entries_keep_their_order_key_and_cursor_in_half_the_bytes() {
    let mut no_cursor = entry(3, 30, 0);
    no_cursor.entry.order = NO_ORDER;
    no_cursor.cursor.clear();
    let mut long_order = entry(4, 40, 0);
    long_order.entry.order = [7; 16];
    long_order.key = vec![b'k'; 300];
    long_order.entry.hash = hash_key(&long_order.key);
    let all = vec![entry(1, 10, 1), no_cursor, long_order];
    let value = encode_page(&all);
    assert!(
        value.len() * 2 < encode_v1(&all).len() + 300,
        "{}",
        value.len()
    );
    let scanned = scan(&value, "test").unwrap();
    let back: Vec<Full> = scanned
        .into_iter()
        .map(|(e, range)| item_at(&value, range, e.hash).unwrap().full())
        .collect();
    assert_eq!(back, all);
}

#[test]
fn pages_and_chunks_of_the_format_before_are_read_and_spilled_anew() {
    let (_dir, tree, files) = tree();
    // A store written before: one page and one run of the earlier format.
    let old: Vec<Full> = (0..40).map(|i| entry(i, i, 1)).collect();
    tree.insert(chunk_key("s", 1, old[0].entry.hash), encode_v1(&old[..1]))
        .unwrap();
    let meta = Meta {
        runs: vec![MetaRun {
            id: 1,
            count: 1,
            in_file: false,
        }],
        folded: 0,
        bound: None,
    };
    tree.insert(meta_key("s"), meta.encode()).unwrap();
    tree.insert(page_key("s", 1, 0), encode_v1(&old[1..]))
        .unwrap();
    tree.insert(committed_key("s"), &1u64.to_be_bytes())
        .unwrap();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    for i in [0, 1, 39] {
        assert_eq!(
            index.get(&tree, entry(i, 0, 0).entry.hash).unwrap(),
            Some(i)
        );
    }
    assert_eq!(index.count(&tree).unwrap(), 40);
    assert_eq!(index.entries(&tree).unwrap()[39].cursor, b"1");
    // A fold and a spill with no room for tables: the old page's entries are written
    // anew, as chunks of the current format, and merged with the old run.
    index.table_max = 0;
    index.fold(&tree).unwrap();
    index.merge(&tree).unwrap();
    assert_eq!(tree.scan_prefix(prefixed("s", b"c")).count(), 0);
    assert_eq!(index.runs.len(), 1);
    let run = index.runs[0].file.as_ref().unwrap();
    for at in 0..run.chunks() {
        assert_eq!(run.read(None, at).unwrap()[0], FORMAT);
    }
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(again.count(&tree).unwrap(), 40);
    assert_eq!(
        again.get(&tree, entry(39, 0, 0).entry.hash).unwrap(),
        Some(39)
    );
    assert_eq!(again.entries(&tree).unwrap()[0].key, 0u64.to_be_bytes());
}

#[test]
fn damaged_values_are_errors_not_panics() {
    let (_dir, tree, files) = tree();
    tree.insert(committed_key("s"), &1u64.to_be_bytes())
        .unwrap();
    tree.insert(page_key("s", 1, 0), vec![FORMAT, 1, 2, 3])
        .unwrap();
    assert!(KeyIndex::load(&tree, &files, "s").is_err());
    let mut cut = encode_page(&[entry(1, 1, 1)]);
    cut.pop();
    tree.insert(page_key("s", 1, 0), cut).unwrap();
    assert!(KeyIndex::load(&tree, &files, "s").is_err());
    // The key's length (after the format, the fingerprint and the order's two bytes)
    // says more bytes than there are.
    let mut long = encode_page(&[entry(1, 1, 1)]);
    long[1 + 8 + 2] = 0x7f;
    tree.insert(page_key("s", 1, 0), long).unwrap();
    assert!(KeyIndex::load(&tree, &files, "s").is_err());
    tree.insert(page_key("s", 1, 0), vec![]).unwrap();
    assert!(KeyIndex::load(&tree, &files, "s").is_err());
    tree.remove(page_key("s", 1, 0)).unwrap();
    tree.insert(meta_key("s"), vec![9]).unwrap();
    assert!(KeyIndex::load(&tree, &files, "s").is_err());
}

#[test]
fn a_table_keeps_orders_only_once_an_entry_has_one() {
    let e = |n: u64, order: Option<u8>| Entry {
        hash: hash_key(&n.to_be_bytes()),
        fingerprint: n * 10,
        order: order16(order.map(|o| [o]).as_ref().map(|o| &o[..])),
    };
    let mut entries: Vec<Entry> = (0..100u64)
        .map(|n| e(n, (n >= 60).then_some(n as u8)))
        .collect();
    entries.sort_unstable_by_key(|e| e.hash);
    let table = runs::Table::of_sorted(&entries);
    assert_eq!(table.len(), 100);
    for want in &entries {
        assert_eq!(table.find(want.hash), Some(*want));
    }
    assert_eq!(table.find(hash_key(b"absent")), None);
    // Without a cursor no order is kept: 24 bytes a key.
    let plain: Vec<Entry> = entries
        .iter()
        .map(|x| Entry {
            order: NO_ORDER,
            ..*x
        })
        .collect();
    let table = runs::Table::of_sorted(&plain);
    assert_eq!(table.bytes(), 100 * 24);
    for want in &plain {
        assert_eq!(table.find(want.hash), Some(*want));
    }
    // Every entry with an order, the first too (its order was once dropped, so the
    // first key of a run's table was never pruned).
    let ordered: Vec<Entry> = entries
        .iter()
        .map(|x| Entry {
            order: order16(Some(&x.fingerprint.to_be_bytes())),
            ..*x
        })
        .collect();
    let table = runs::Table::of_sorted(&ordered);
    for want in &ordered {
        assert_eq!(table.find(want.hash), Some(*want));
    }
}

/// An index whose tables hold nothing: every fold is spilled to a file at once.
fn spilling(tree: &sled::Tree, files: &RunFiles) -> KeyIndex {
    let mut index = KeyIndex::load(tree, files, "s").unwrap();
    index.table_max = 0;
    index
}

#[test]
fn a_run_file_no_meta_names_is_retired_and_its_id_not_taken_again() {
    let (_dir, tree, files) = tree();
    let mut index = spilling(&tree, &files);
    let first: Vec<Full> = (0..FOLD_AT as u64).map(|i| entry(i, i, 1)).collect();
    write(&mut index, &tree, &first);
    let named = index.runs[0].id;
    // A file written whole before a crash stopped the spill's switch, and one cut short.
    let orphan = files.path("s", named + 1);
    std::fs::copy(files.path("s", named), &orphan).unwrap();
    std::fs::write(files.path("s", named + 2), b"hmrrun").unwrap();
    // Another source's file is not this source's to retire.
    std::fs::create_dir_all(files.path("t", 9).parent().unwrap()).unwrap();
    std::fs::write(files.path("t", 9), b"x").unwrap();
    let mut again = spilling(&tree, &files);
    let mut retired = runs_of(files.retired.lock().unwrap().clone());
    retired.sort();
    assert_eq!(retired, vec![orphan.clone(), files.path("s", named + 2)]);
    assert_eq!(again.count(&tree).unwrap(), FOLD_AT);
    // The next run takes an id past both, so removing them never removes it.
    let second: Vec<Full> = (0..FOLD_AT as u64)
        .map(|i| entry(1_000_000 + i, i, 1))
        .collect();
    write(&mut again, &tree, &second);
    assert_eq!(again.runs.len(), 2);
    assert!(again.runs[1].id > named + 2);
    remove_retired(retired);
    assert!(!orphan.exists());
    assert!(files.path("t", 9).exists());
    let mut third = spilling(&tree, &files);
    assert_eq!(third.count(&tree).unwrap(), 2 * FOLD_AT);
    assert_eq!(
        third.get(&tree, entry(1_000_005, 0, 0).entry.hash).unwrap(),
        Some(5)
    );
}

#[test]
fn a_merge_whose_switch_a_crash_lost_leaves_the_old_runs_readable() {
    let (_dir, tree, files) = tree();
    let mut index = spilling(&tree, &files);
    for round in 0..3u64 {
        let entries: Vec<Full> = (0..FOLD_AT as u64)
            .map(|i| entry(round * 1_000_000 + i, round, 1))
            .collect();
        write(&mut index, &tree, &entries);
    }
    assert_eq!(index.runs.len(), 3);
    let before = tree.get(meta_key("s")).unwrap().unwrap();
    index.merge(&tree).unwrap();
    assert_eq!(index.runs.len(), 1);
    // The merge's meta never reached the disk: the store holds the one before.
    tree.insert(meta_key("s"), before).unwrap();
    let mut again = spilling(&tree, &files);
    assert_eq!(again.runs.len(), 3, "the old runs are in force again");
    assert_eq!(again.count(&tree).unwrap(), 3 * FOLD_AT);
    assert_eq!(
        again.get(&tree, entry(2_000_007, 0, 0).entry.hash).unwrap(),
        Some(2)
    );
    // Only the merged run's file is retired now: no meta names it.
    let retired = files.retired.lock().unwrap().clone();
    assert!(retired.contains(&files.path("s", index.runs[0].id)));
}

#[test]
fn damaged_run_files_are_errors_not_panics() {
    let (_dir, tree, files) = tree();
    let mut index = spilling(&tree, &files);
    let entries: Vec<Full> = (0..FOLD_AT as u64).map(|i| entry(i, i, 1)).collect();
    write(&mut index, &tree, &entries);
    let path = files.path("s", index.runs[0].id);
    let whole = std::fs::read(&path).unwrap();
    let error = |bytes: Option<Vec<u8>>| {
        match &bytes {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let e = KeyIndex::load(&tree, &files, "s").err().expect("an error");
        e.to_string()
    };
    let mut cut = whole.clone();
    cut.truncate(whole.len() / 2);
    assert!(error(Some(cut)).contains("cut short"));
    let mut magic = whole.clone();
    magic[0] = b'x';
    assert!(error(Some(magic)).contains("does not begin"));
    let mut count = whole.clone();
    let n = count.len();
    count[n - 1] ^= 1;
    assert!(error(Some(count)).contains("chunk count"));
    let mut more = whole.clone();
    more.push(0);
    assert!(error(Some(more)).contains("past its end"));
    // A chunk of no entries: its length 1, the format byte alone.
    let mut empty = MAGIC_FOR_TESTS.to_vec();
    empty.extend_from_slice(&1u32.to_be_bytes());
    empty.push(FORMAT);
    empty.extend_from_slice(&0u32.to_be_bytes());
    empty.extend_from_slice(&1u64.to_be_bytes());
    assert!(error(Some(empty)).contains("no entry"));
    let mut garbled = whole.clone();
    garbled[8 + 4 + 1 + 8] = 0x7f;
    assert!(error(Some(garbled)).contains("damaged"));
    assert!(error(None).contains("missing"));
}

#[test]
fn a_fold_writes_what_was_written_without_reading_it_back() {
    let (_dir, tree, files) = tree();
    let mut index = KeyIndex::load(&tree, &files, "s").unwrap();
    let n = (FOLD_AT - 1_000) as u64;
    let entries: Vec<Full> = (0..n).map(|i| entry(i, i, 1)).collect();
    write(&mut index, &tree, &entries);
    // A page made elsewhere than by `page` (as the move from state version 4 makes
    // them) is made again from its entries when it is written.
    let seq = index.next_seq;
    index.next_seq += 1;
    let other = [entry(n, n, 1), entry(3, 33, 1)];
    for (at, value) in page_writes("s", seq, &other) {
        tree.insert(at, value).unwrap();
    }
    tree.insert(committed_key("s"), &seq.to_be_bytes()).unwrap();
    let keyed: Vec<Keyed> = other.iter().map(Full::keyed).collect();
    index.written(&tree, seq, &keyed).unwrap();
    assert!(index.runs.is_empty(), "not folded yet");
    // The pages' values gone from sled: the fold writes the run from what it kept.
    let pages: Vec<sled::IVec> = tree
        .scan_prefix(prefixed("s", b"p"))
        .keys()
        .map(|k| k.unwrap())
        .collect();
    for k in pages {
        tree.remove(k).unwrap();
    }
    index.fold(&tree).unwrap();
    assert_eq!(index.runs.len(), 1);
    assert_eq!(index.meta.runs[0].count, n + 1);
    let mut again = KeyIndex::load(&tree, &files, "s").unwrap();
    assert_eq!(again.count(&tree).unwrap(), n as usize + 1);
    for (key, want) in [(0, 0), (3, 33), (n - 1, n - 1), (n, n)] {
        assert_eq!(
            again.get(&tree, entry(key, 0, 0).entry.hash).unwrap(),
            Some(want),
            "key {key}"
        );
    }
    assert_eq!(again.entries(&tree).unwrap()[3].cursor, b"1");
}

/// Every hash put in a filter is held, and of 200,000 never put in about one in 1,100
/// is a false "maybe" (a filter whose probes spread badly, or a block chosen from too
/// few bits, answers "maybe" far more often).
#[test]
fn a_run_filter_holds_what_it_was_given_and_little_else() {
    let keys = 100_000u64;
    let mut bloom = Bloom::sized(keys as usize);
    for n in 0..keys {
        bloom.insert(hash_key(&n.to_le_bytes()));
    }
    assert!((0..keys).all(|n| bloom.may_hold(hash_key(&n.to_le_bytes()))));
    let asked = 200_000u64;
    let maybe = (keys..keys + asked)
        .filter(|n| bloom.may_hold(hash_key(&n.to_le_bytes())))
        .count();
    assert!(maybe < 400, "{maybe} false maybes in {asked}");
    // An empty filter holds nothing.
    let empty = Bloom::sized(0);
    assert!((0..1000u64).all(|n| !empty.may_hold(hash_key(&n.to_le_bytes()))));
}
