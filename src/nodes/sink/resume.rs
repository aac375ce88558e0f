//! A page a sink delivers in batches (`webhook`, `exec`) that failed part-way: which
//! page it was and how many of its batches arrived, so that the page's next try, while
//! hamstr keeps running, does not deliver those again.

use super::super::extract::Emitted;

#[derive(Default)]
pub(super) struct Resume(Option<(u64, usize)>);

impl Resume {
    /// The page's hash and how many of its batches already arrived (0 unless the page
    /// is the one that failed part-way).
    pub fn start(&self, records: &[Emitted]) -> (u64, usize) {
        let hash = page_hash(records);
        match self.0 {
            Some((h, n)) if h == hash => (hash, n),
            _ => (hash, 0),
        }
    }

    /// Batch `at` of page `hash` failed: the batches before it arrived.
    pub fn failed(&mut self, hash: u64, at: usize) {
        self.0 = Some((hash, at));
    }

    /// The page arrived whole.
    pub fn done(&mut self) {
        self.0 = None;
    }
}

fn page_hash(records: &[Emitted]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for r in records {
        h.update(&r.json);
        h.update(b"\n");
    }
    h.digest()
}
