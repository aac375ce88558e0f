//! The sink node's pages written together: a real `jsonl` writer and a real store, the
//! pages waiting in the node's channel before it starts.

use super::*;
use crate::state::SledStore;
use std::path::PathBuf;
use std::sync::Mutex;

/// A `jsonl` writer that notes how many pages each of its writes took, and fails the
/// first `fail` of them (before writing anything).
struct Noting {
    inner: jsonl::JsonlWriter,
    writes: Arc<Mutex<Vec<usize>>>,
    fail: usize,
}

impl Noting {
    fn failing(&mut self) -> bool {
        if self.fail > 0 {
            self.fail -= 1;
            return true;
        }
        false
    }
}

impl SinkWriter for Noting {
    fn write<'a>(
        &'a mut self,
        source: &'a str,
        names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        self.writes.lock().unwrap().push(1);
        if self.failing() {
            return Box::pin(async { Err(WriteError::Failed("the disk is away".into())) });
        }
        self.inner.write(source, names, records)
    }

    fn pages_at_once(&self) -> usize {
        self.inner.pages_at_once()
    }

    fn write_pages<'a>(&'a mut self, pages: &'a [&'a Batch]) -> WriteFuture<'a> {
        self.writes.lock().unwrap().push(pages.len());
        if self.failing() {
            return Box::pin(async { Err(WriteError::Failed("the disk is away".into())) });
        }
        self.inner.write_pages(pages)
    }
}

fn record(n: u64) -> Emitted {
    Emitted {
        key: Some(format!("k{n}").into_bytes()),
        json: format!("{{\"n\":{n}}}").into_bytes().into(),
    }
}

/// A sink node writing to `out.jsonl` in `dir` through a [`Noting`] writer that fails
/// its first `fail` writes; with the file's path and the pages each write took.
fn node(dir: &Path, fail: usize) -> (SinkNode, PathBuf, Arc<Mutex<Vec<usize>>>) {
    let store: Arc<dyn StateStore> = Arc::new(SledStore::open(&dir.join("data")).unwrap());
    let path = dir.join("out.jsonl");
    let writes = Arc::new(Mutex::new(Vec::new()));
    let writer = Noting {
        inner: jsonl::JsonlWriter {
            path: path.clone(),
            store: store.clone(),
            file: None,
        },
        writes: writes.clone(),
        fail,
    };
    let node = SinkNode {
        name: "lines".into(),
        writer: Box::new(writer),
        store,
        stop: Stop::new(),
        retired: Arc::new(AtomicBool::new(false)),
        end_run: Stop::new(),
    };
    (node, path, writes)
}

/// Page `page` of three records (none when `empty`).
fn page(page: u64, empty: bool, ack: &mpsc::UnboundedSender<Ack>) -> Batch {
    let records = if empty {
        Vec::new()
    } else {
        (0..3).map(|i| record(page * 10 + i)).collect()
    };
    Batch {
        source: Arc::from("src"),
        names: Arc::new(vec!["n".to_string()]),
        records: Arc::new(records),
        page,
        ack: ack.clone(),
    }
}

/// The numbers of the records in a jsonl file, in order.
fn lines(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Runs a sink node over `pages` pages of three records each (the last `empty` of
/// them with none), all waiting before it starts; returns the file's numbers, the
/// pages each write took and the acknowledgements in the order they came.
fn run(pages: u64, empty: u64, fail: usize) -> (Vec<u64>, Vec<usize>, Vec<(u64, bool)>) {
    let dir = tempfile::tempdir().unwrap();
    let (node, path, writes) = node(dir.path(), fail);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acks = rt.block_on(async {
        let (tx, rx) = mpsc::channel(PAGES_AT_ONCE * 2);
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        for n in 1..=pages {
            tx.send(page(n, n > pages - empty, &ack_tx)).await.unwrap();
        }
        drop((tx, ack_tx));
        node.run(rx).await;
        let mut acks = Vec::new();
        while let Some(a) = ack_rx.recv().await {
            acks.push((a.page, a.ok));
        }
        acks
    });
    let writes = writes.lock().unwrap().clone();
    (lines(&path), writes, acks)
}

fn numbers(pages: u64) -> Vec<u64> {
    (1..=pages)
        .flat_map(|p| (0..3).map(move |i| p * 10 + i))
        .collect()
}

#[test]
fn pages_waiting_for_a_jsonl_sink_are_written_together_in_order() {
    let (lines, writes, acks) = run(20, 0, 0);
    assert_eq!(lines, numbers(20));
    // Every page was waiting: sixteen in the first write, the other four in the next.
    assert_eq!(writes, vec![PAGES_AT_ONCE, 4]);
    assert_eq!(acks, (1..=20).map(|p| (p, true)).collect::<Vec<_>>());
}

#[test]
fn empty_pages_among_them_are_acknowledged_without_a_write() {
    let (lines, writes, acks) = run(3, 2, 0);
    assert_eq!(lines, numbers(1));
    assert_eq!(writes, vec![1], "one page with records, written alone");
    assert_eq!(acks, vec![(1, true), (2, true), (3, true)]);
}

#[test]
fn a_failed_write_of_pages_together_queues_each_of_them_in_order() {
    let (lines, writes, acks) = run(5, 0, 1);
    // The first write (all five) failed: each page went to the durable queue, each
    // acknowledged as held, and the queue's drain at the end wrote them in order.
    assert_eq!(writes.first(), Some(&5));
    assert_eq!(lines, numbers(5));
    assert_eq!(acks, (1..=5).map(|p| (p, true)).collect::<Vec<_>>());
}

/// Pages that come one after another, each within the gathering time of the one
/// before it, go in one write (one sync); a page that comes later goes in the next.
/// (Time is paused: it moves only when every task waits for it.)
#[tokio::test(start_paused = true)]
async fn pages_arriving_close_together_are_written_together() {
    let dir = tempfile::tempdir().unwrap();
    let (node, path, writes) = node(dir.path(), 0);
    // Room for one page: each of the first three is sent once the sink took the one
    // before (so it is not waiting yet when the sink looks), the fourth well past the
    // gathering time.
    let (tx, rx) = mpsc::channel(1);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(async move {
        for (n, after) in [(1, 0), (2, 0), (3, 0), (4, 5)] {
            tokio::time::sleep(Duration::from_millis(after)).await;
            tx.send(page(n, false, &ack_tx)).await.unwrap();
        }
    });
    node.run(rx).await;
    sender.await.unwrap();
    assert_eq!(*writes.lock().unwrap(), vec![3, 1]);
    assert_eq!(lines(&path), numbers(4));
    let mut acks = Vec::new();
    while let Some(a) = ack_rx.recv().await {
        acks.push((a.page, a.ok));
    }
    assert_eq!(acks, (1..=4).map(|p| (p, true)).collect::<Vec<_>>());
}
