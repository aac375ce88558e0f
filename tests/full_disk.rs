//! The data directory on a disk that fills up: sled's own writes (records, queue, state)
//! fail with ENOSPC. The run fails with a clear error and commits nothing it could not
//! write; once there is room again the next run collects everything, exactly once.
//!
//! A real filesystem is filled: a 1 MiB tmpfs mounted over the data directory. Mounting
//! needs root (CI and the development machines run as root); where `mount` is refused
//! the test says so and passes without running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::cli::{assert_contains, id_range, service, sorted_ids, text, Pipeline, FIELDS};
use support::{records, Paging, TestApi};

const RECORDS: usize = 6_000;

/// A tmpfs mounted at a folder; unmounted when dropped, even when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o"])
            .arg(format!("remount,size={size}"))
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_data_directory_fails_the_run_and_loses_nothing_once_there_is_room() {
    let api = TestApi::start_blocking();
    api.set_records("/items", records::make(RECORDS));
    api.serve("/items", Paging::page(500));
    let p = Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n  paginate = page(size_param = \"per_page\", size = 500)\n  records = $.data[*]\n{FIELDS}\n}}\nsink store = sled(\"items\")\nflow src -> store\n",
        service(&api.url(), "")
    ));
    let Some(disk) = Tmpfs::mount(&p.data, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };

    let full = p.run_once();
    let said = text(&full);
    assert_eq!(full.status.code(), Some(1), "{said}");
    assert_contains(&said, "No space left on device");
    assert!(!said.contains("panicked"), "{said}");

    disk.resize("64m");
    // The first run with room may still find records of the failed run in the sink's
    // queue; the second must have nothing left to do.
    p.run_ok();
    p.run_ok();
    let stored = p.dump("store");
    assert_eq!(stored.len(), RECORDS, "every record once");
    assert_eq!(sorted_ids(&stored), id_range(1, RECORDS as u64));
    assert!(!p.state().contains("waiting in its queue"));
}
