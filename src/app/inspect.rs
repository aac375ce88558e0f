//! `dump`, `state` and `graph`: what a data directory holds, rendered from its store or
//! asked of the run that holds it, and the compiled graph of a pipeline.

use super::control::{self, Request};
use super::load::{self, Loaded};
use super::{plural, print_stdout, Console, Error, Outcome};
use crate::check::{Pipeline, Sink};
use crate::state::{SledStore, StateError, StateStore};
use std::path::Path;

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
    console: Console,
) -> Result<Outcome, Error> {
    with_store(file, data_dir, console, Request::State, reset)
}

/// `hamstr graph FILE`: the compiled dataflow graph, in DOT or Mermaid.
pub fn graph(file: &Path, format: GraphFormat, console: Console) -> Result<Outcome, Error> {
    let loaded = load::load(file, console)?;
    let plan = crate::plan::Plan::new(&loaded.pipeline);
    print_stdout(&match format {
        GraphFormat::Dot => plan.to_dot(),
        GraphFormat::Mermaid => plan.to_mermaid(),
    })?;
    Ok(Outcome::Success)
}

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
    let out = match SledStore::open(&dir) {
        Ok(store) => {
            if let Some(source) = reset {
                reset_source(&loaded, &store, &source)?;
            }
            answer(&loaded, &store, req)?
        }
        Err(StateError::Locked { path }) if reset.is_some() => {
            return Err(Error::Locked {
                path,
                then: ": stop it before resetting a source",
            })
        }
        Err(StateError::Locked { .. }) => control::ask(&dir, &req)?,
        Err(e) => return Err(e.into()),
    };
    print_stdout(&out)?;
    Ok(Outcome::Success)
}

fn reset_source(loaded: &Loaded, store: &SledStore, source: &str) -> Result<(), Error> {
    if !loaded.pipeline.sources.contains_key(source) {
        return Err(Error::Usage(format!("no source named `{source}`")));
    }
    store.reset(source)?;
    eprintln!("source `{source}` was reset: it collects from scratch on its next run");
    Ok(())
}

/// Answers `dump` and `state` from a store.
pub(super) fn answer(
    loaded: &Loaded,
    store: &dyn StateStore,
    req: Request,
) -> Result<String, Error> {
    match req {
        Request::Dump {
            name,
            rejected,
            csv,
        } => dump_rows(&loaded.pipeline, store, &name, rejected).and_then(|rows| render(rows, csv)),
        Request::State => render_state(&loaded.pipeline, store),
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
    if fields.is_empty() {
        return Err(Error::Usage(format!("source `{name}` has no `key`, so it remembers no records; `--rejected` lists its rejected ones")));
    }
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
fn dump_rows(
    p: &Pipeline,
    store: &dyn StateStore,
    name: &str,
    rejected: bool,
) -> Result<Vec<serde_json::Value>, Error> {
    if rejected {
        if !p.sources.contains_key(name) {
            return Err(Error::Usage(format!(
                "`--rejected` needs a source; `{name}` is not one (sources: {})",
                names(p.sources.keys())
            )));
        }
        return Ok(store.rejected(name)?);
    }
    if p.aggregates.contains_key(name) {
        return crate::nodes::aggregate::dump(p, name, store).map_err(Error::Stored);
    }
    if p.sources.contains_key(name) && !p.sinks.contains_key(name) {
        return source_keys(p, store, name);
    }
    let tree = match p.sinks.get(name) {
        Some(Sink::Sled { tree, .. }) => tree,
        Some(_) => return Err(Error::Usage(format!("sink `{name}` is not a sled sink; only sled sinks keep records in the data directory"))),
        None => return Err(Error::Usage(format!("no sled sink, aggregate or source named `{name}` (sled sinks: {}; aggregates: {}; sources: {})", names(p.sinks.iter().filter(|(_, s)| matches!(s, Sink::Sled { .. })).map(|(n, _)| n)), names(p.aggregates.keys()), names(p.sources.keys())))),
    };
    store
        .sink_records(tree)?
        .into_iter()
        .map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| Error::Stored(format!("a damaged record in `{name}`: {e}")))
        })
        .collect()
}

/// Rows as JSON lines, or as CSV with a column for every field any row has.
fn render(rows: Vec<serde_json::Value>, csv: bool) -> Result<String, Error> {
    if !csv {
        let mut out = String::new();
        for r in rows {
            out.push_str(&r.to_string());
            out.push('\n');
        }
        return Ok(out);
    }
    let mut columns: Vec<String> = Vec::new();
    for r in &rows {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        // Nothing held: no header to give, and not a row holding one empty field.
        return Ok(String::new());
    }
    let csv_error = |e: csv::Error| Error::Io(format!("cannot write CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&columns).map_err(csv_error)?;
    for r in &rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match r.get(c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        w.write_record(&cells).map_err(csv_error)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Io(format!("cannot write CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Io(format!("cannot write CSV: {e}")))
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
