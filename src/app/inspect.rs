//! `dump`, `state` and `graph`: what a data directory holds, rendered from its store or
//! asked of the run that holds it, and the compiled graph of a pipeline.

use super::control::{self, Reached, Request};
use super::load::{self, Loaded};
use super::{plural, print_stdout, Console, Error, Outcome};
use crate::check::{Pipeline, Sink};
use crate::state::{SledStore, StateError, StateStore};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How `dump` prints rows: one JSON object a line, or CSV with a column for every field.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    Jsonl,
    Csv,
}

/// How `graph` prints the dataflow graph.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// `hamstr dump FILE NAME`: what a sled sink, an aggregate or a source holds.
pub fn dump(
    file: &Path,
    name: String,
    format: DumpFormat,
    rejected: bool,
    data_dir: Option<&Path>,
    console: Console,
) -> Result<Outcome, Error> {
    let csv = format == DumpFormat::Csv;
    let req = Request::Dump {
        name,
        rejected,
        csv,
    };
    with_store(file, data_dir, console, req, None)
}

/// `hamstr state FILE`: per source its watermark, counts, last run and error; with
/// `reset`, that source forgotten first.
pub fn state(
    file: &Path,
    reset: Option<String>,
    data_dir: Option<&Path>,
    cluster: Option<&super::ClusterArgs>,
    console: Console,
) -> Result<Outcome, Error> {
    if let Some(args) = cluster {
        if reset.is_some() {
            return Err(Error::Usage(
                "`--reset` cannot be used with `--cluster`: the unit's owner may be running it"
                    .into(),
            ));
        }
        return super::cluster::state(file, args, console);
    }
    with_store(file, data_dir, console, Request::State, reset)
}

/// `hamstr graph FILE`: the compiled dataflow graph, in DOT or Mermaid.
pub fn graph(file: &Path, format: GraphFormat, console: Console) -> Result<Outcome, Error> {
    let loaded = load::load(file, console)?;
    let plan = crate::plan::Plan::new(&loaded.pipeline);
    let graph = match format {
        GraphFormat::Dot => plan.to_dot(),
        GraphFormat::Mermaid => plan.to_mermaid(),
    };
    // The labels show URLs; whatever in them is a secret goes.
    let masker = crate::masking::Masker::new(loaded.pipeline.secrets());
    print_stdout(&masker.mask(&graph))?;
    Ok(Outcome::Success)
}

/// How long `dump` and `state` keep trying when the store is held but no run answers:
/// another `dump` or `state` is reading it, or a run is starting.
const READER_WAIT: Duration = Duration::from_secs(10);

/// Answers `req` from the store of the data directory, or asks the run that holds it.
fn with_store(
    file: &Path,
    data_dir: Option<&Path>,
    console: Console,
    req: Request,
    reset: Option<String>,
) -> Result<Outcome, Error> {
    let loaded = load::load(file, console)?;
    let dir = load::data_dir(&loaded, data_dir);
    // Only a folder a run has used holds a store; reading must not create one.
    if !dir.join("state").exists() && !dir.is_file() {
        return Err(Error::Usage(format!(
            "no data directory at `{}`: nothing has run there yet",
            dir.display()
        )));
    }
    let deadline = Instant::now() + READER_WAIT;
    loop {
        let why = match SledStore::open(&dir) {
            Ok(store) => return answer_here(&loaded, store, &dir, req, reset),
            Err(StateError::Locked { path }) if reset.is_some() => {
                return Err(Error::Locked {
                    path,
                    then: ": stop it before resetting a source",
                })
            }
            Err(StateError::Locked { .. }) => {
                match control::ask(&dir, &req, &mut |text| print_stdout(text))? {
                    Reached::Answered => return Ok(Outcome::Success),
                    Reached::NoOne(why) => why,
                }
            }
            Err(e) => return Err(e.into()),
        };
        if Instant::now() >= deadline {
            return Err(Error::Io(format!(
                "the data directory `{}` is in use, and no run answers on its socket ({why})",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Answers from the store this process opened. The answer is rendered into an
/// anonymous file while the store is held and written out once it is let go: a reader
/// of stdout that takes its time (`| less`) never keeps a `run` from starting.
fn answer_here(
    loaded: &Loaded,
    store: SledStore,
    dir: &Path,
    req: Request,
    reset: Option<String>,
) -> Result<Outcome, Error> {
    if let Some(source) = reset {
        reset_source(loaded, &store, &source)?;
    }
    let spool_error =
        |e: std::io::Error| Error::Io(format!("cannot keep the answer in a temporary file: {e}"));
    let mut spool = tempfile::tempfile_in(dir)
        .or_else(|_| tempfile::tempfile())
        .map_err(spool_error)?;
    {
        let mut w = std::io::BufWriter::new(&mut spool);
        answer(loaded, &store, req, &mut w)?;
        w.flush().map_err(spool_error)?;
    }
    drop(store);
    spool.seek(SeekFrom::Start(0)).map_err(spool_error)?;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = spool.read(&mut buf).map_err(spool_error)?;
        if n == 0 {
            break;
        }
        stdout.write_all(&buf[..n]).map_err(write_error)?;
    }
    stdout.flush().map_err(write_error)?;
    Ok(Outcome::Success)
}

/// A failed write of an answer: a reader that left, or an I/O error.
fn write_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Error::ReaderLeft,
        _ => Error::Io(format!("cannot write the answer: {e}")),
    }
}

fn reset_source(loaded: &Loaded, store: &SledStore, source: &str) -> Result<(), Error> {
    if !loaded.pipeline.sources.contains_key(source) {
        return Err(Error::Usage(format!("no source named `{source}`")));
    }
    store.reset(source)?;
    eprintln!("source `{source}` was reset: it collects from scratch on its next run");
    Ok(())
}

/// Answers `dump` and `state` from a store, writing to `out` as rows are rendered.
pub(super) fn answer(
    loaded: &Loaded,
    store: &dyn StateStore,
    req: Request,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match req {
        Request::Dump {
            name,
            rejected,
            csv,
        } => {
            let rows = Rows {
                p: &loaded.pipeline,
                store,
                name: &name,
                rejected,
            };
            rows.check()?;
            if csv {
                rows.csv(out)
            } else {
                rows.for_each(&mut |row| {
                    serde_json::to_writer(&mut *out, &row)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(write_error)
                })
            }
        }
        Request::State => out
            .write_all(render_state(&loaded.pipeline, store)?.as_bytes())
            .map_err(write_error),
    }
}

/// What a source holds: one object per key it remembers, `{"key": {FIELD: VALUE, ...},
/// "cursor": VALUE}` (the cursor only with `incremental`), in key order.
fn source_keys(
    p: &Pipeline,
    store: &dyn StateStore,
    name: &str,
) -> Result<Vec<serde_json::Value>, Error> {
    let fields = &p.sources[name].key;
    let rows = store.keys(name)?;
    Ok(rows
        .into_iter()
        .map(|(key, entry)| {
            let parts = crate::state::keys::parts(&key);
            let key: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .cloned()
                .zip(
                    parts
                        .iter()
                        .map(|p| serde_json::Value::from(String::from_utf8_lossy(p))),
                )
                .collect();
            let mut row = serde_json::json!({ "key": key });
            if let Some(c) = entry.cursor {
                row["cursor"] = c;
            }
            row
        })
        .collect())
}

/// The rows `dump` prints: the records of a sled sink, the groups of an aggregate, or
/// what a source holds (the keys it remembers, or with `rejected` its rejected list).
struct Rows<'a> {
    p: &'a Pipeline,
    store: &'a dyn StateStore,
    name: &'a str,
    rejected: bool,
}

/// The records of a sled sink read at a time.
const SINK_PART: usize = 1000;

impl Rows<'_> {
    /// Whether `name` (with `rejected`) is something `dump` shows.
    fn check(&self) -> Result<(), Error> {
        let (p, name) = (self.p, self.name);
        if self.rejected {
            if !p.sources.contains_key(name) {
                return Err(Error::Usage(format!(
                    "`--rejected` needs a source; `{name}` is not one (sources: {})",
                    names(p.sources.keys())
                )));
            }
            return Ok(());
        }
        if p.aggregates.contains_key(name) {
            return Ok(());
        }
        if p.sources.contains_key(name) && !p.sinks.contains_key(name) {
            if p.sources[name].key.is_empty() {
                return Err(Error::Usage(format!("source `{name}` has no `key`, so it remembers no records; `--rejected` lists its rejected ones")));
            }
            return Ok(());
        }
        match p.sinks.get(name) {
            Some(Sink::Sled { .. }) => Ok(()),
            Some(_) => Err(Error::Usage(format!("sink `{name}` is not a sled sink; only sled sinks keep records in the data directory"))),
            None => Err(Error::Usage(format!("no sled sink, aggregate or source named `{name}` (sled sinks: {}; aggregates: {}; sources: {})", names(p.sinks.iter().filter(|(_, s)| matches!(s, Sink::Sled { .. })).map(|(n, _)| n)), names(p.aggregates.keys()), names(p.sources.keys())))),
        }
    }

    /// Hands each row to `row`, in order. The records of a sled sink are read a part
    /// at a time, so a run answering holds one part, not the sink.
    fn for_each(
        &self,
        row: &mut dyn FnMut(serde_json::Value) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let (p, store, name) = (self.p, self.store, self.name);
        let rows = if self.rejected {
            store.rejected(name)?
        } else if p.aggregates.contains_key(name) {
            crate::nodes::aggregate::dump(p, name, store).map_err(Error::Stored)?
        } else if let Some(Sink::Sled { tree, .. }) = p.sinks.get(name) {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let part = store.sink_records_after(tree, after.as_deref(), SINK_PART)?;
                let whole = part.len() == SINK_PART;
                after = part.last().map(|(k, _)| k.clone());
                for (_, bytes) in part {
                    row(serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Stored(format!("a damaged record in `{name}`: {e}"))
                    })?)?;
                }
                if !whole {
                    return Ok(());
                }
            }
        } else {
            source_keys(p, store, name)?
        };
        rows.into_iter().try_for_each(row)
    }

    /// The rows as CSV with a column for every field any row has: one pass finds the
    /// columns, the next writes the rows.
    fn csv(&self, out: &mut dyn Write) -> Result<(), Error> {
        let mut columns: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.for_each(&mut |r| {
            for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
                if seen.insert(k.clone()) {
                    columns.push(k.clone());
                }
            }
            Ok(())
        })?;
        if columns.is_empty() {
            // Nothing held: no header to give, and not a row holding one empty field.
            return Ok(());
        }
        let csv_error = |e: csv::Error| match e.into_kind() {
            csv::ErrorKind::Io(e) => write_error(e),
            other => Error::Io(format!("cannot write CSV: {other:?}")),
        };
        let mut w = csv::Writer::from_writer(out);
        w.write_record(&columns).map_err(csv_error)?;
        self.for_each(&mut |r| {
            let cells = columns.iter().map(|c| match r.get(c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
            w.write_record(cells).map_err(csv_error)
        })?;
        w.flush().map_err(write_error)
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What `state` prints: per source, its watermark, counts, last run and error; per
/// sink and aggregate, what it holds and what waits.
fn render_state(p: &Pipeline, store: &dyn StateStore) -> Result<String, Error> {
    let mut out = String::new();
    for (name, source) in &p.sources {
        let m = store.meta(name)?;
        let keys = store.key_count(name)?;
        let queued = store.child_queue(name).map(|q| q.len()).unwrap_or(0);
        out.push_str(&format!("{name}\n"));
        let start = source
            .incremental
            .as_ref()
            .and_then(|i| i.start.as_ref())
            .map(|l| crate::nodes::eval::lit_value(l).to_json());
        let watermark = match (m.watermark, start) {
            (Some(w), _) => w.to_string(),
            // Nothing above `start` collected yet: `start` is the watermark in effect.
            (None, Some(s)) => format!("{s} (its start)"),
            (None, None) => "none".to_string(),
        };
        out.push_str(&format!("  watermark:    {watermark}\n"));
        out.push_str(&format!(
            "  records seen: {}  emitted: {}  rejected: {}  keys held: {keys}\n",
            m.records_seen, m.emitted, m.rejected
        ));
        out.push_str(&format!(
            "  runs:         {}  last run: {}\n",
            m.runs,
            m.last_run.as_deref().unwrap_or("never")
        ));
        out.push_str(&format!(
            "  last error:   {}\n",
            m.last_error.as_deref().unwrap_or("none")
        ));
        if source.for_each.is_some() {
            out.push_str(&format!("  pending parent records: {queued}\n"));
        }
    }
    for (name, sink) in &p.sinks {
        let queued = store.kv_len(&crate::nodes::sink::queue_space(name))?;
        let held = match sink {
            Sink::Sled { tree, .. } => format!("{} records, ", store.sink_len(tree)?),
            _ => String::new(),
        };
        let waiting = match queued {
            0 => "its queue is empty".to_string(),
            n => {
                let why = crate::nodes::sink::last_error(store, name)
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                format!("{n} page{} waiting in its queue{why}", plural(n as u64))
            }
        };
        out.push_str(&format!("sink {name}: {held}{waiting}\n"));
    }
    for name in p.aggregates.keys() {
        let (groups, waiting) =
            crate::nodes::aggregate::sizes(name, store).map_err(Error::Stored)?;
        out.push_str(&format!(
            "aggregate {name}: {groups} group{}, {waiting} waiting for its sinks\n",
            plural(groups as u64)
        ));
    }
    Ok(out)
}
