//! The extract node: turns a page's JSON items into typed records (spec §4), rejects
//! what does not convert, emits only new or changed keys (§5.2), applies `where`, hands
//! each page to the sinks, and commits keys and watermark once every sink has it.

mod commit;
mod parts;

pub use super::record::{Extractor, Items, Rejection, Room};

use super::value::{write_record_raw, Val};
use super::{blocking, cursor_order, here_or_blocking};
use crate::state::{KeyEntry, SourceMeta, StateStore};
use bytes::Bytes;
use parts::{Part, Parts};
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The entry of a rejected item without a usable key: a fingerprint of the item, so an
/// item rejected at every poll has one entry, not one per poll. The first byte, 0xff,
/// is in no key (keys are UTF-8 text).
fn unkeyed_rejection(item: &Json) -> Vec<u8> {
    let bytes = serde_json::to_vec(item).unwrap_or_default();
    let mut id = vec![0xff];
    id.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&bytes).to_be_bytes());
    id
}

/// The id of a new page: unique in the process, not only in one extract node, so a page
/// staged by a sink under its id (spec §14: a `postgres` sink on the cluster's database
/// writes its rows in the page's commit) is never taken for a page of a node that a
/// reload replaced.
fn page_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A record of a page, made and waiting for its key's fingerprint in the store.
/// Everything the extract node needs of the record is worked out where it was made (and
/// the record freed there, on the thread that allocated it).
struct Made {
    /// Whether the record passes `where`.
    passes: bool,
    cursor: Option<Val>,
    key: Option<Vec<u8>>,
    /// The key's hash ([`crate::state::hash_key`]).
    hash: Option<u128>,
    /// Its JSON: a part of the text of the records made with it ([`prepare_items`]).
    json: Bytes,
    /// The record's fingerprint: a hash of its JSON.
    fp: u64,
    /// The fingerprint the store holds for the key.
    stored: Option<u64>,
}

/// An item of a page made into a record, or rejected, before the key state is asked.
/// The source node prepares its pages as it hands them on ([`prepare`]), so that this
/// part of the extraction overlaps the extract node's work on the page before.
pub struct Prepared(Outcome);

enum Outcome {
    Record(Made),
    Rejected(Rejection, Json),
}

impl Prepared {
    /// The record's cursor, or the rejected item's when it could be read (not null).
    pub fn cursor(&self) -> Option<&Val> {
        match &self.0 {
            Outcome::Record(m) => m.cursor.as_ref().filter(|c| !c.is_null()),
            Outcome::Rejected(r, _) => r.cursor.as_ref(),
        }
    }
}

/// Makes a page's items into records (or rejections), in order.
pub fn prepare(
    ex: &Extractor,
    items: &Items,
    parent: Option<&serde_json::Map<String, Json>>,
) -> Vec<Prepared> {
    prepare_items(ex, items.refs(), parent)
}

/// The most room [`prepare_items`] makes at once for the records' JSON; past it the
/// buffer grows as it is written.
const RESERVE_MAX: usize = 1 << 20;

/// As [`prepare`], for items given one by one. The records' JSON is written one after
/// another into one buffer, which each record holds a part of: one allocation for the
/// items, not one per record (nor one freed per record by the sink's thread).
pub fn prepare_items<'a>(
    ex: &Extractor,
    items: impl IntoIterator<Item = super::record::Item<'a>>,
    parent: Option<&serde_json::Map<String, Json>>,
) -> Vec<Prepared> {
    let keyed = ex.is_keyed();
    let items = items.into_iter();
    let count = items.size_hint().0;
    // The lists each record is made in, used again by the next.
    let mut room = Room::default();
    let mut text: Vec<u8> = Vec::new();
    // Where each record's JSON is in `text`, the records in order.
    let mut spans = Vec::with_capacity(count);
    let mut made: Vec<Prepared> = items
        .map(|item| match ex.record_in(item, parent, &mut room) {
            Ok(record) => {
                let cursor = ex.cursor_of(&record).cloned();
                let key = keyed.then(|| ex.key_of(&record));
                let from = text.len();
                write_record_raw(&ex.heads, &record, &room.raw, &mut text);
                let fp = xxhash_rust::xxh3::xxh3_64(text.get(from..).unwrap_or_default());
                if spans.is_empty() {
                    // Room for the others, a quarter longer than the first (records
                    // differ a little: one as long only grew the buffer, a copy, for
                    // most pages), up to a bound (an API's first record may be far
                    // larger than the rest).
                    let len = text.len().saturating_add(text.len() / 4);
                    text.reserve(len.saturating_mul(count).min(RESERVE_MAX));
                }
                spans.push(from..text.len());
                let hash = key.as_deref().map(crate::state::hash_key);
                let passes = ex.passes(&record);
                room.keep(record);
                Prepared(Outcome::Record(Made {
                    passes,
                    cursor,
                    key,
                    hash,
                    fp,
                    json: Bytes::new(),
                    stored: None,
                }))
            }
            Err(rejected) => Prepared(Outcome::Rejected(rejected, item.json().into_owned())),
        })
        .collect();
    let text = Bytes::from(text);
    let records = made.iter_mut().filter_map(|Prepared(p)| match p {
        Outcome::Record(m) => Some(m),
        Outcome::Rejected(..) => None,
    });
    for (m, span) in records.zip(spans) {
        m.json = text.slice(span);
    }
    made
}

/// A record on its way to the sinks.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub key: Option<Vec<u8>>,
    /// The record's JSON text: often a part of a buffer shared with the other records
    /// of its page.
    pub json: Bytes,
}

/// A page's emitted records, handed to every sink of the source.
pub struct Batch {
    pub source: Arc<str>,
    pub names: Arc<Vec<String>>,
    pub records: Arc<Vec<Emitted>>,
    pub page: u64,
    pub ack: mpsc::UnboundedSender<Ack>,
}

#[derive(Debug)]
pub struct Ack {
    pub page: u64,
    pub ok: bool,
}

/// One page of a source node, its items made into records ([`prepare`]).
pub struct Page {
    pub records: Vec<Prepared>,
    /// The token the next run resumes from, as this page gave it (`incremental { resume
    /// = ... }`): committed with the page.
    pub resume: Option<String>,
}

/// What a run's end reports back to the source node.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub pages: u64,
    pub records: u64,
    pub emitted: u64,
    pub rejected: u64,
    pub committed: bool,
}

/// A message to the extract node. Pages are boxed: a unit's page channel allocates room
/// for its messages when it is made, and thousands of idle tenants each hold one.
pub enum SourceMsg {
    RunStart,
    Page(Box<Page>),
    /// A record that named no request (a child's parent record whose placeholder value
    /// would change the path): rejected with the reason, without a page.
    Rejected {
        reason: String,
        item: Json,
    },
    RunEnd {
        complete: bool,
        error: Option<String>,
        child_of: Option<Vec<u8>>,
        done: oneshot::Sender<RunSummary>,
    },
    /// An event received by the listener (spec §11): its records, committed like a
    /// polled page but on their own, between the pages of a run or outside any run;
    /// `done` says whether they were committed (and flushed to disk) or not.
    Event {
        /// Its items, made into records by the extract node.
        items: Vec<Json>,
        /// Items that named no record (a `fetch` placeholder without a value), with why.
        rejected: Vec<(String, Json)>,
        done: oneshot::Sender<bool>,
    },
}

/// Where a source's records go; replaced whole when a reload rewires the graph.
#[derive(Default)]
pub struct Outputs {
    /// Sinks (and aggregates) that take every page.
    pub sinks: Vec<mpsc::Sender<Batch>>,
    /// Child sources that get a request per emitted record.
    pub children: Vec<String>,
}

/// Wakes child sources by name, after their parent committed new requests.
pub type Wakes = Arc<
    std::sync::Mutex<std::collections::BTreeMap<String, mpsc::Sender<Option<oneshot::Sender<()>>>>>,
>;

/// Fingerprints and pages of keys in pages not yet committed, by the key's hash.
pub(crate) type KeysInFlight =
    HashMap<u128, (u64, u64), std::hash::BuildHasherDefault<crate::state::Prehashed>>;

/// The running extract node of one source.
pub struct ExtractNode {
    pub source: Arc<str>,
    pub ex: Arc<Extractor>,
    pub store: Arc<dyn StateStore>,
    pub outputs: tokio::sync::watch::Receiver<Arc<Outputs>>,
    pub wakes: Wakes,
    pub incremental: bool,
    pub newest_first: bool,
}

struct Pending {
    page: u64,
    /// Whether a page was fetched (not so for a rejected request).
    fetched: bool,
    remaining: usize,
    /// The page's commit, in parts of bounded size (see `parts`).
    parts: Vec<Part>,
    /// When the page's records were rejected, for their entries.
    at: String,
    max_cursor: Option<Val>,
    resume: Option<String>,
    seen: u64,
    emitted: u64,
    rejected: u64,
    /// An event's page: not counted in the run's summary, answered once committed.
    event: bool,
    answer: Option<oneshot::Sender<bool>>,
}

#[derive(Default)]
struct RunState {
    start_watermark: Option<Val>,
    max_cursor: Option<Val>,
    broken: bool,
    /// The fingerprints of keys seen by pages not yet committed, with the page that set
    /// each: a committed page's keys are read from the store again, so this holds only
    /// the pages in flight, not every key of the run.
    /// By the key's hash ([`crate::state::hash_key`]).
    keys: KeysInFlight,
    /// Keys with an entry in the rejected list: one that converts now loses it.
    rejected: std::collections::HashSet<Vec<u8>>,
    summary: RunSummary,
    end: Option<RunEnd>,
    /// Between a run's start and its end: a broken run stays broken until its end.
    active: bool,
}

/// The end of a run, waiting for the run's last pages to be committed.
struct RunEnd {
    complete: bool,
    error: Option<String>,
    child_of: Option<Vec<u8>>,
    done: oneshot::Sender<RunSummary>,
}

/// Counts a sink's acknowledgement of a page in flight; a page a sink did not take
/// breaks the run.
fn acknowledged(pending: &mut VecDeque<Pending>, run: &mut RunState, ack: &Ack) {
    if let Some(p) = pending.iter_mut().find(|p| p.page == ack.page) {
        p.remaining = p.remaining.saturating_sub(1);
        if !ack.ok {
            run.broken = true;
        }
    }
}

impl ExtractNode {
    pub async fn run(self, mut rx: mpsc::Receiver<SourceMsg>) {
        let node = Arc::new(self);
        node.run_shared(&mut rx).await
    }

    async fn run_shared(self: &Arc<Self>, rx: &mut mpsc::Receiver<SourceMsg>) {
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
        let node = self.clone();
        let (mut meta, mut run) = blocking(move || {
            let meta = node.store.meta(&node.source).unwrap_or_else(|e| {
                tracing::error!(source = %node.source, error = %e, "cannot read the source's state");
                SourceMeta::default()
            });
            let run = node.new_run(&meta);
            (meta, run)
        })
        .await;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut open = true;
        while open || !pending.is_empty() || run.end.is_some() {
            tokio::select! {
                msg = rx.recv(), if open => match msg {
                    None => open = false,
                    Some(SourceMsg::RunStart) => {
                        let (node, known) = (self.clone(), std::mem::take(&mut meta));
                        // Events in flight keep their keys (and a failure) into the run.
                        let carried = (!pending.is_empty())
                            .then(|| (std::mem::take(&mut run.keys), run.broken));
                        (meta, run) = blocking(move || {
                            let meta = node.store.meta(&node.source).unwrap_or(known);
                            let run = node.new_run(&meta);
                            (meta, run)
                        })
                        .await;
                        if let Some((keys, broken)) = carried {
                            run.keys = keys;
                            run.broken = broken;
                        }
                        run.active = true;
                    }
                    Some(SourceMsg::Event { items, rejected, done }) => {
                        // A failure outside a run is forgotten once nothing is in flight:
                        // the next event starts afresh from what the store holds.
                        if run.broken && !run.active && pending.is_empty() {
                            let (node, known) = (self.clone(), std::mem::take(&mut meta));
                            (meta, run) = blocking(move || {
                                let meta = node.store.meta(&node.source).unwrap_or(known);
                                let run = node.new_run(&meta);
                                (meta, run)
                            })
                            .await;
                        }
                        // Boxed: the page's future is as large as the extraction's, and
                        // the idle node need not hold room for it.
                        let page = Page {
                            records: prepare(&self.ex, &items.into(), None),
                            resume: None,
                        };
                        let mut p = Box::pin(self.page(page, page_id(), &mut run, &mut meta, &mut pending, &ack_tx)).await;
                        if !rejected.is_empty() {
                            let mut parts = Parts::new(0);
                            for (reason, item) in rejected {
                                p.seen += 1;
                                p.rejected += 1;
                                parts.open().reject(Some(unkeyed_rejection(&item)), reason, &item);
                            }
                            p.parts.extend(parts.into_vec());
                        }
                        p.event = true;
                        p.answer = Some(done);
                        pending.push_back(p);
                    }
                    Some(SourceMsg::Page(page)) => {
                        // Pages acknowledged meanwhile are committed on the way.
                        while let Ok(ack) = ack_rx.try_recv() {
                            acknowledged(&mut pending, &mut run, &ack);
                        }
                        let p = Box::pin(self.page(*page, page_id(), &mut run, &mut meta, &mut pending, &ack_tx)).await;
                        pending.push_back(p);
                    }
                    Some(SourceMsg::Rejected { reason, item }) => {
                        let mut parts = Parts::new(0);
                        parts.open().reject(Some(unkeyed_rejection(&item)), reason, &item);
                        pending.push_back(Pending {
                            page: page_id(),
                            fetched: false,
                            remaining: 0,
                            parts: parts.into_vec(),
                            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            max_cursor: None,
                            resume: None,
                            seen: 1,
                            emitted: 0,
                            rejected: 1,
                            event: false,
                            answer: None,
                        });
                    }
                    Some(SourceMsg::RunEnd { complete, error, child_of, done }) => run.end = Some(RunEnd { complete, error, child_of, done }),
                },
                ack = ack_rx.recv(), if !pending.is_empty() => {
                    if let Some(ack) = ack {
                        acknowledged(&mut pending, &mut run, &ack);
                    }
                }
            }
            let mut ready = Vec::new();
            while pending.front().is_some_and(|p| p.remaining == 0) {
                ready.extend(pending.pop_front());
            }
            // A run ends once its own pages are committed; events may still be in flight.
            let finishing = run.end.is_some() && pending.iter().all(|p| p.event);
            if !ready.is_empty() || finishing {
                // Commits write to the store, in order, in one go: off the async workers
                // unless the store calls them quick.
                let quick = !finishing && self.quick(&ready, 0);
                let node = self.clone();
                let (mut r, mut m) = (std::mem::take(&mut run), std::mem::take(&mut meta));
                let step = move || {
                    node.commit_ready(ready, &mut r, &mut m);
                    if finishing {
                        node.finish(&mut r, &mut m);
                    }
                    (r, m)
                };
                (run, meta) = here_or_blocking(quick, step).await;
            }
            if !open && pending.is_empty() {
                break;
            }
        }
    }

    fn new_run(&self, meta: &SourceMeta) -> RunState {
        RunState {
            // Records below the watermark minus `lookback` are older than what was
            // collected; those above it are settled by key.
            start_watermark: self
                .ex
                .watermark(meta.watermark.as_ref())
                .map(|w| self.ex.floor(w)),
            max_cursor: None,
            broken: false,
            keys: KeysInFlight::default(),
            // Read once a run, and only for a source that ever rejected something,
            // rather than a removal per record on the hot path.
            rejected: if meta.rejected > 0 {
                self.store.rejected_keys(&self.source).unwrap_or_default()
            } else {
                Default::default()
            },
            summary: RunSummary::default(),
            end: None,
            active: false,
        }
    }

    /// Whether committing `ready` and looking up `looked_up` keys may be done on this
    /// async worker ([`StateStore::quick`]): never while an event waits for its answer
    /// (the store is flushed for it).
    fn quick(&self, ready: &[Pending], looked_up: usize) -> bool {
        if ready.iter().any(|p| p.answer.is_some()) {
            return false;
        }
        let committed: usize = ready
            .iter()
            .flat_map(|p| &p.parts)
            .map(|part| part.commit.keys.len())
            .sum();
        self.store
            .quick(&self.source, committed.saturating_add(looked_up))
    }

    /// Commits pages every sink has, in order ([`ExtractNode::commit`]), and answers
    /// the events among them once what they committed is on disk: the sender forgets
    /// an event then (one flush for all the events at hand).
    fn commit_ready(&self, ready: Vec<Pending>, run: &mut RunState, meta: &mut SourceMeta) {
        let mut answers = Vec::new();
        for mut p in ready {
            let answer = p.answer.take();
            let committed = self.commit(p, run, meta);
            answers.extend(answer.map(|a| (a, committed)));
        }
        if !answers.is_empty() {
            let flushed = self.store.flush().is_ok();
            for (answer, committed) in answers {
                let _ = answer.send(committed && flushed);
            }
        }
    }

    /// Hands a page's records to every sink of the source. The key lookups run in one
    /// step with the commits of the pages before whose acknowledgements have arrived:
    /// on this worker when the store calls the step quick ([`StateStore::quick`]; a
    /// keyed jsonl run of 400 pages then makes about 1,000 fewer thread switches), else
    /// in one trip to the blocking pool and back (one a page instead of two).
    async fn page(
        self: &Arc<Self>,
        page: Page,
        id: u64,
        run: &mut RunState,
        meta: &mut SourceMeta,
        pending: &mut VecDeque<Pending>,
        ack: &mpsc::UnboundedSender<Ack>,
    ) -> Pending {
        // In a cluster, a page of a unit whose lease this instance lost (it was stopped
        // past the lease, say) goes to no sink: the new owner fetches it again.
        if self.store.fence(&self.source).is_err() {
            run.broken = true;
            return Pending {
                page: id,
                fetched: false,
                remaining: 0,
                parts: Vec::new(),
                at: String::new(),
                max_cursor: None,
                resume: None,
                seen: 0,
                emitted: 0,
                rejected: 0,
                // An event's answer is dropped with its page: the sender is told 503.
                event: false,
                answer: None,
            };
        }
        let outputs = self.outputs.borrow().clone();
        let node = self.clone();
        let children = outputs.children.clone();
        let mut ready = Vec::new();
        while pending.front().is_some_and(|p| p.remaining == 0) {
            ready.extend(pending.pop_front());
        }
        let mut state = std::mem::take(run);
        let mut known = std::mem::take(meta);
        let looked_up = if self.ex.is_keyed() {
            page.records.len()
        } else {
            0
        };
        let quick = self.quick(&ready, looked_up);
        let step = move || {
            node.commit_ready(ready, &mut state, &mut known);
            let mut page = page;
            let processed = node.process(&mut page, id, &mut state, &children);
            (state, known, processed, page)
        };
        let (state, known, (pending, emitted), page) = here_or_blocking(quick, step).await;
        *meta = known;
        // The page's JSON was allocated on an async worker: freed there too, its memory
        // goes straight back to that worker's heap instead of waiting as a cross-thread
        // free (measured: the peak resident size stays where it was before extraction
        // moved to the blocking pool).
        drop(page);
        *run = state;
        let mut pending = pending;
        let records = Arc::new(emitted);
        for sink in &outputs.sinks {
            let batch = Batch {
                source: self.source.clone(),
                names: self.ex.names.clone(),
                records: records.clone(),
                page: id,
                ack: ack.clone(),
            };
            if sink.send(batch).await.is_ok() {
                pending.remaining += 1;
            } else {
                run.broken = true;
            }
        }
        pending
    }

    /// Extracts a page's records: rejections, keys new or changed, `where`, child
    /// requests. The pending commit it returns waits for no sink yet.
    fn process(
        &self,
        page: &mut Page,
        id: u64,
        run: &mut RunState,
        children: &[String],
    ) -> (Pending, Vec<Emitted>) {
        let mut parts = Parts::new(page.records.len());
        let mut emitted = Vec::with_capacity(page.records.len());
        let mut max_cursor: Option<Val> = None;
        let (mut seen, mut rejected) = (0u64, 0u64);
        let raise = |c: &Val, max: &mut Option<Val>| {
            if max
                .as_ref()
                .is_none_or(|m| c.compare(m) == Some(Ordering::Greater))
            {
                *max = Some(c.clone());
            }
        };
        // First each item's record (or rejection), as it was prepared; the keys'
        // fingerprints are then read from the store in one call for the page, not one
        // lookup per record.
        let prepared = std::mem::take(&mut page.records);
        let mut made = Vec::with_capacity(prepared.len());
        for Prepared(p) in prepared {
            seen += 1;
            let m = match p {
                Outcome::Record(m) => m,
                Outcome::Rejected(
                    Rejection {
                        reason,
                        key,
                        cursor,
                    },
                    item,
                ) => {
                    rejected += 1;
                    if let Some(c) = &cursor {
                        raise(c, &mut max_cursor);
                    }
                    if let Some(k) = &key {
                        run.rejected.insert(k.clone());
                    }
                    // An item without a usable key is remembered by a fingerprint of
                    // itself: seen again, it replaces its entry instead of adding one.
                    let id = key.unwrap_or_else(|| unkeyed_rejection(&item));
                    parts.open().reject(Some(id), reason, &item);
                    continue;
                }
            };
            if let Some(c) = &m.cursor {
                raise(c, &mut max_cursor);
                // Older than what was already collected: not new (equal ones are ties,
                // settled by key below) — unless it was rejected before and converts now
                // (spec §5.2: the watermark moved past it, the record is collected still).
                if run
                    .start_watermark
                    .as_ref()
                    .is_some_and(|w| c.compare(w) == Some(Ordering::Less))
                    && !m.key.as_ref().is_some_and(|k| run.rejected.contains(k))
                {
                    continue;
                }
            }
            made.push(m);
        }
        // The keys to ask the store about (those no page in flight holds), by their
        // place in `made`.
        let mut at = Vec::with_capacity(made.len());
        let mut asked: Vec<&[u8]> = Vec::with_capacity(made.len());
        let mut hashes = Vec::with_capacity(made.len());
        for (i, m) in made.iter().enumerate() {
            if let (Some(k), Some(h)) = (m.key.as_deref(), m.hash) {
                if !run.keys.contains_key(&h) {
                    at.push(i);
                    asked.push(k);
                    hashes.push(h);
                }
            }
        }
        if !asked.is_empty() {
            let stored = self
                .store
                .fingerprints(&self.source, &asked, &hashes)
                .unwrap_or_else(|e| {
                    tracing::warn!(source = %self.source, error = %e, "cannot read the keys' fingerprints");
                    vec![None; asked.len()]
                });
            for (i, fp) in at.into_iter().zip(stored) {
                made[i].stored = fp;
            }
        }
        for Made {
            passes,
            cursor,
            key,
            hash,
            json,
            fp,
            stored,
        } in made
        {
            let part = parts.open();
            if let (Some(k), Some(h)) = (&key, hash) {
                // A page in flight (this one included) knows better than the store.
                let known = match run.keys.get(&h) {
                    Some((f, _)) => Some(*f),
                    None => stored,
                };
                if known == Some(fp) {
                    continue;
                }
                run.keys.insert(h, (fp, id));
                if self.incremental {
                    if let Some(order) = cursor.as_ref().and_then(cursor_order::encode) {
                        part.commit
                            .index
                            .push((cursor_order::index_key(&order, k), k.clone()));
                    }
                }
                part.commit.keys.push((
                    k.clone(),
                    KeyEntry {
                        fingerprint: fp,
                        cursor: cursor.as_ref().map(Val::to_json),
                    },
                ));
                part.commit.hashes.push(h);
                // Most runs reject nothing: no key is hashed for an empty set.
                if !run.rejected.is_empty() && run.rejected.remove(k) {
                    part.commit.unrejected.push(k.clone());
                }
            }
            if !passes {
                continue;
            }
            if !children.is_empty() {
                let obj: Json = serde_json::from_slice(&json).unwrap_or(Json::Null);
                let ckey = key
                    .clone()
                    .unwrap_or_else(|| self.store.next_id().unwrap_or(0).to_be_bytes().to_vec());
                for child in children {
                    part.commit
                        .child_requests
                        .push((child.clone(), ckey.clone(), obj.clone()));
                }
            }
            emitted.push(Emitted { key, json });
        }
        let n_emitted = emitted.len() as u64;
        let pending = Pending {
            page: id,
            fetched: true,
            remaining: 0,
            parts: parts.into_vec(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            max_cursor,
            resume: page.resume.clone(),
            seen,
            emitted: n_emitted,
            rejected,
            event: false,
            answer: None,
        };
        (pending, emitted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{prepare_items, Outcome, Prepared};
    use crate::check::check;
    use crate::nodes::record::{Extractor, Item};

    /// The extractor of a source with this `key` line (or none) and these fields.
    fn extractor(key: &str, fields: &str) -> Extractor {
        let text = format!(
            "service s {{ base_url = \"http://127.0.0.1:9\" }}\n\
             source a from s {{ get = \"/\" schedule = once {key} fields {{ {fields} }} }}\n\
             sink k = stdout()\nflow a -> k\n"
        );
        let checked = check("t.hmr", &text, &|_| None);
        Extractor::new(&checked.pipeline.unwrap().sources["a"])
    }

    /// A source of few or many fields reads the same records from an item's text, from
    /// its members as the split noted them, and from its tree, its members in any order.
    #[test]
    fn many_fields_are_read_alike_from_text_members_and_tree() {
        for n in [3usize, 16, 17, 40] {
            let fields: Vec<String> = (0..n).map(|i| format!("f{i} : int? = $.f{i}")).collect();
            let ex = extractor("", &fields.join("  "));
            // Members in reverse, one missing, one unknown.
            let members: Vec<String> = (0..n)
                .rev()
                .filter(|i| *i != 1)
                .map(|i| format!("\"f{i}\":{i}"))
                .chain(["\"x\":[1]".to_string()])
                .collect();
            let text = format!("{{{}}}", members.join(","));
            let page = format!("{{\"data\":[{text}]}}");
            let (_, raw) =
                crate::nodes::record::raw::split(page.into_bytes(), &["data".to_string()]).unwrap();
            let raw = raw.unwrap();
            let scanned = raw.items().next().unwrap();
            assert!(matches!(scanned, Item::Scanned(_)));
            let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
            let by_tree = ex.record(Item::Json(&tree), None).unwrap();
            assert_eq!(ex.record(Item::Text(&text), None).unwrap(), by_tree, "{n}");
            assert_eq!(ex.record(scanned, None).unwrap(), by_tree, "{n}");
            assert!(by_tree.values.get(1).unwrap().is_null());
            assert!(!by_tree.values.last().unwrap().is_null());
        }
    }

    /// Records made together share one buffer of JSON, each holding its own record's,
    /// with rejected items between them.
    #[test]
    fn records_made_together_each_hold_their_own_json() {
        let ex = extractor(
            "key = id",
            "id : string = $.id  n : int = $.n  at : datetime? = $.at",
        );
        let items = [
            r#"{"id":"a","n":1,"at":"2024-03-01T12:00:00.250Z"}"#,
            r#"{"id":"b","n":"not a number"}"#,
            r#"{"n":3,"id":"c","extra":[1,2]}"#,
            r#"{"id":"d","n":4,"at":null}"#,
        ];
        let made = prepare_items(&ex, items.iter().map(|t| Item::Text(t)), None);
        let json: Vec<Option<String>> = made
            .iter()
            .map(|Prepared(p)| match p {
                Outcome::Record(m) => Some(String::from_utf8(m.json.to_vec()).unwrap()),
                Outcome::Rejected(..) => None,
            })
            .collect();
        assert_eq!(
            json,
            [
                Some(r#"{"id":"a","n":1,"at":"2024-03-01T12:00:00.250Z"}"#.to_string()),
                None,
                Some(r#"{"id":"c","n":3,"at":null}"#.to_string()),
                Some(r#"{"id":"d","n":4,"at":null}"#.to_string()),
            ]
        );
        // Each record's fingerprint is of its own JSON.
        for Prepared(p) in &made {
            if let Outcome::Record(m) = p {
                assert_eq!(m.fp, xxhash_rust::xxh3::xxh3_64(&m.json));
            }
        }
    }

    /// The room made ahead for a page's records is bounded: a first record of 8 MiB
    /// before 100,000 small ones does not ask for 800 GB at once.
    #[test]
    fn a_large_first_record_does_not_size_the_page() {
        let ex = extractor("", "v : json = $.v");
        let large = format!("{{\"v\":\"{}\"}}", "x".repeat(8 << 20));
        let items: Vec<&str> = std::iter::once(large.as_str())
            .chain(std::iter::repeat_n(r#"{"v":1}"#, 100_000))
            .collect();
        let made = prepare_items(&ex, items.iter().map(|t| Item::Text(t)), None);
        assert_eq!(made.len(), 100_001);
        let Some(Prepared(Outcome::Record(last))) = made.last() else {
            panic!("the last item made no record");
        };
        assert_eq!(&last.json[..], br#"{"v":1}"#);
    }
}
