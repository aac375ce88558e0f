//! What each command does, apart from argument parsing: loading and checking a
//! pipeline, opening the data directory, running, and reading what was collected.

use crate::check::{self, Pipeline, Sink};
use crate::runtime::{self, Options, Report, Stop};
use crate::state::{SledStore, StateStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A checked pipeline and where it lives.
pub struct Loaded {
    pub pipeline: Pipeline,
    pub base_dir: PathBuf,
}

/// Reads and checks a pipeline; on errors, the rendered diagnostics.
pub fn load(path: &Path, color: bool) -> Result<Loaded, String> {
    let text = crate::read_pipeline(path)?;
    load_text(path, &text, color)
}

pub fn load_text(path: &Path, text: &str, color: bool) -> Result<Loaded, String> {
    let checked = check::check(&path.display().to_string(), text, &|k| {
        std::env::var(k).ok()
    });
    match checked.pipeline {
        Some(pipeline) => {
            if checked.report.warnings() > 0 {
                eprint!("{}", checked.report.render(color, 100));
            }
            let base_dir = path
                .parent()
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
            Ok(Loaded { pipeline, base_dir })
        }
        None => Err(checked.report.render(color, 100)),
    }
}

/// The data directory: `--data-dir`, else `.hamstr/` beside the pipeline file.
pub fn data_dir(loaded: &Loaded, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| loaded.base_dir.join(".hamstr"))
}

pub fn open_store(dir: &Path) -> Result<Arc<dyn StateStore>, String> {
    SledStore::open(dir)
        .map(|s| Arc::new(s) as Arc<dyn StateStore>)
        .map_err(|e| e.to_string())
}

/// Runs a pipeline on a fresh tokio runtime until it ends or is interrupted.
pub fn run(loaded: &Loaded, store: Arc<dyn StateStore>, once: bool) -> Result<Report, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (handle, stop) = Stop::new();
        runtime::stop_on_signals(handle);
        runtime::run(
            &loaded.pipeline,
            store,
            Options {
                once,
                base_dir: loaded.base_dir.clone(),
            },
            stop,
        )
        .await
    })
}

/// One line per source: what the run did.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    for (name, t) in &report.sources {
        out.push_str(&format!(
            "{name}: {} run{}, {} page{}, {} record{}, {} new, {} rejected{}\n",
            t.runs,
            plural(t.runs),
            t.pages,
            plural(t.pages),
            t.records,
            plural(t.records),
            t.emitted,
            t.rejected,
            t.last_error
                .as_ref()
                .map(|e| format!(", FAILED: {e}"))
                .unwrap_or_default()
        ));
        for w in &t.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
    }
    for (sink, pages) in &report.queued {
        out.push_str(&format!(
            "sink {sink}: {pages} page{} still wait in its queue; they go out on the next run\n",
            plural(*pages as u64)
        ));
    }
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What `dump` prints: the records of a sled sink, or the rejected list of a source.
pub fn dump(
    loaded: &Loaded,
    store: &dyn StateStore,
    name: &str,
    rejected: bool,
    csv: bool,
) -> Result<String, String> {
    let p = &loaded.pipeline;
    let rows: Vec<serde_json::Value> = if rejected {
        if !p.sources.contains_key(name) {
            return Err(format!(
                "`--rejected` needs a source; `{name}` is not one (sources: {})",
                names(p.sources.keys())
            ));
        }
        store.rejected(name).map_err(|e| e.to_string())?
    } else {
        let tree = match p.sinks.get(name) {
            Some(Sink::Sled { tree, .. }) => tree.clone(),
            Some(_) => return Err(format!("sink `{name}` is not a sled sink; only sled sinks keep records in the data directory")),
            None if p.sources.contains_key(name) => return Err(format!("`{name}` is a source: use `--rejected` for its rejected records, or name a sled sink")),
            None => return Err(format!("no sled sink named `{name}` (sled sinks: {})", names(p.sinks.iter().filter(|(_, s)| matches!(s, Sink::Sled { .. })).map(|(n, _)| n)))),
        };
        store
            .sink_records(&tree)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("a damaged record in `{name}`: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
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
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&columns).map_err(|e| e.to_string())?;
    for r in &rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match r.get(c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        w.write_record(&cells).map_err(|e| e.to_string())?;
    }
    String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What `state` prints: per source, its watermark, counts, last run and error.
pub fn state(loaded: &Loaded, store: &dyn StateStore) -> Result<String, String> {
    let mut out = String::new();
    for name in loaded.pipeline.sources.keys() {
        let m = store.meta(name).map_err(|e| e.to_string())?;
        let keys = store.key_count(name).map_err(|e| e.to_string())?;
        let queued = store.child_queue(name).map(|q| q.len()).unwrap_or(0);
        out.push_str(&format!("{name}\n"));
        out.push_str(&format!(
            "  watermark:    {}\n",
            m.watermark.map_or("none".to_string(), |w| w.to_string())
        ));
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
        if loaded.pipeline.sources[name].for_each.is_some() {
            out.push_str(&format!("  pending parent records: {queued}\n"));
        }
    }
    for (name, sink) in &loaded.pipeline.sinks {
        if let Sink::Sled { tree, .. } = sink {
            out.push_str(&format!(
                "sink {name}: {} records\n",
                store.sink_len(tree).map_err(|e| e.to_string())?
            ));
        }
        let waiting = store
            .kv_len(&crate::nodes::sinks::queue_space(name))
            .map_err(|e| e.to_string())?;
        if waiting > 0 || !matches!(sink, Sink::Sled { .. }) {
            out.push_str(&format!(
                "sink {name}: {waiting} page{} waiting in its queue\n",
                plural(waiting as u64)
            ));
        }
    }
    Ok(out)
}
