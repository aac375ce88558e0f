//! Rows staged for a page's commit (spec §14). A `postgres` sink on the cluster's own
//! database does not commit a page of a leased unit by itself: it hands the page's rows
//! to the store, keyed by source and page, and acknowledges. The store's commit of that
//! page then checks the lease, writes the rows and advances the state in one
//! transaction, so an instance that dies or loses its lease in between leaves neither
//! the rows nor the state behind: exactly once, keyed table or not.
//!
//! A staged page holds data only (typed columns and their SQL): no task, no connection,
//! no open transaction waits for its commit. A page that is never committed (its run
//! broke, its lease was lost, the process stops) is dropped with the next commit or
//! discard of its source, or with the process.

use super::store::Write;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use tokio_postgres::Transaction;

/// What writing staged rows returns: `Err` with a message naming the sink and table.
pub type StagedFuture<'t> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 't>>;

/// The rows one sink staged for a page: written inside the page's commit transaction.
pub trait StagedRows: Send + Sync {
    fn write<'t>(&'t self, tx: &'t Transaction<'t>) -> StagedFuture<'t>;
}

/// One staged page: the sinks' rows, and the parts of its commit seen so far (a page
/// commits in parts; with rows staged, they all go in the transaction of its last).
#[derive(Default)]
pub struct StagedPage {
    pub rows: Vec<Box<dyn StagedRows>>,
    pub parts: Vec<Write>,
}

/// The staged pages of this instance, by source and page id (ids are unique in the
/// process, see `nodes::extract`).
#[derive(Default)]
pub struct Staging {
    pages: Mutex<HashMap<String, BTreeMap<u64, StagedPage>>>,
}

impl Staging {
    fn pages(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<u64, StagedPage>>> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stage(&self, source: &str, page: u64, rows: Box<dyn StagedRows>) {
        self.pages()
            .entry(source.to_string())
            .or_default()
            .entry(page)
            .or_default()
            .rows
            .push(rows);
    }

    /// Whether page `page` of `source` has rows staged.
    pub fn has(&self, source: &str, page: u64) -> bool {
        self.pages()
            .get(source)
            .is_some_and(|p| p.contains_key(&page))
    }

    /// Keeps a part of the page's commit for the transaction of its last part.
    pub fn buffer(&self, source: &str, page: u64, writes: Vec<Write>) {
        if let Some(p) = self
            .pages()
            .get_mut(source)
            .and_then(|pages| pages.get_mut(&page))
        {
            p.parts.extend(writes);
        }
    }

    /// Takes a page out to commit it; pages of the source staged before it are dropped:
    /// pages commit in order, so those were abandoned.
    pub fn take(&self, source: &str, page: u64) -> Option<StagedPage> {
        let mut all = self.pages();
        let pages = all.get_mut(source)?;
        let later = pages.split_off(&(page + 1));
        let taken = pages.remove(&page);
        *pages = later;
        if pages.is_empty() {
            all.remove(source);
        }
        taken
    }

    /// Drops page `page` of `source` and every page of it staged before.
    pub fn discard(&self, source: &str, page: u64) {
        drop(self.take(source, page));
    }

    /// How many pages wait (for the tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pages().values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl StagedRows for Nothing {
        fn write<'t>(&'t self, _tx: &'t Transaction<'t>) -> StagedFuture<'t> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn a_commit_takes_its_page_and_drops_the_abandoned_ones_before_it() {
        let s = Staging::default();
        for page in [3, 5, 8] {
            s.stage("a", page, Box::new(Nothing));
        }
        s.stage("b", 4, Box::new(Nothing));
        s.stage("a", 5, Box::new(Nothing));
        assert!(s.has("a", 5) && !s.has("a", 4));
        let taken = s.take("a", 5).expect("staged");
        assert_eq!(taken.rows.len(), 2, "both sinks' rows");
        assert!(!s.has("a", 3), "an earlier page was abandoned");
        assert!(s.has("a", 8) && s.has("b", 4));
        s.discard("a", 8);
        s.discard("b", 9);
        assert_eq!(s.waiting(), 0);
    }
}
