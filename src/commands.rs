//! What each command does, apart from argument parsing: loading and checking a
//! pipeline, opening the data directory, running, and reading what was collected.

use crate::check::{self, Pipeline, Sink};
use crate::runtime::{self, Options, Report, Reload};
use crate::stop::Stop;
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

/// Runs a pipeline on a fresh tokio runtime until it ends or is interrupted. With
/// `watch`, saving the file reloads it: a file with errors is reported and the running
/// graph goes on untouched.
pub fn run(
    path: &Path,
    loaded: &Loaded,
    store: Arc<dyn StateStore>,
    data_dir: &Path,
    once: bool,
    watch: bool,
    color: bool,
) -> Result<Report, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = rt.block_on(async {
        let stop = Stop::new();
        runtime::stop_on_signals(stop.clone());
        // What `dump` and `state` over the socket answer for: the pipeline running now.
        let running = Arc::new(std::sync::Mutex::new(loaded.pipeline.clone()));
        let mut _watch = None;
        let reloads = if watch && !once {
            let (event_tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
            _watch = Some(crate::watch::watch_file(path, event_tx)?);
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let path = path.to_path_buf();
            let running = running.clone();
            tokio::spawn(async move {
                let mut last: Option<String> = None;
                while events.recv().await.is_some() {
                    // Reading and checking the file is blocking work: off the workers.
                    let (p, previous) = (path.clone(), last.clone());
                    let loaded = tokio::task::spawn_blocking(move || {
                        let text = crate::read_pipeline(&p)?;
                        // Editors may write the same text twice; reload once.
                        if previous.as_deref() == Some(text.as_str()) {
                            return Ok(None);
                        }
                        let loaded = load_text(&p, &text, color);
                        Ok(Some((text, loaded)))
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    let (text, loaded) = match loaded {
                        Ok(Some(l)) => l,
                        Ok(None) => continue,
                        Err(e) => {
                            eprintln!("reload: {e}; the previous pipeline keeps running");
                            continue;
                        }
                    };
                    last = Some(text);
                    match loaded {
                        Ok(l) => {
                            let plan = crate::plan::Plan::new(&l.pipeline);
                            let running = running.clone();
                            let applied = Box::new(move || {
                                if let Ok(mut current) = running.lock() {
                                    *current = l.pipeline;
                                }
                            });
                            if tx.send(Reload { plan, applied }).await.is_err() {
                                break;
                            }
                        }
                        Err(report) => eprintln!("{report}reload: the file has errors; the previous pipeline keeps running"),
                    }
                }
            });
            Some(rx)
        } else {
            None
        };
        #[cfg(unix)]
        let _control = {
            let pipeline = running.clone();
            let base_dir = loaded.base_dir.clone();
            let store = store.clone();
            let answer = move |req: crate::control::Request| {
                let loaded = Loaded { pipeline: pipeline.lock().map_err(|_| "lock poisoned".to_string())?.clone(), base_dir: base_dir.clone() };
                answer(&loaded, store.as_ref(), req)
            };
            crate::control::serve(data_dir, Arc::new(answer))?
        };
        let opts = Options { once, base_dir: loaded.base_dir.clone() };
        runtime::run(crate::plan::Plan::new(&loaded.pipeline), store, opts, stop, reloads).await
    });
    // A sink write abandoned at the end of the grace may still hold a blocking thread
    // (a reader that never reads): the process does not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// Answers `dump` and `state` from a store.
pub fn answer(
    loaded: &Loaded,
    store: &dyn StateStore,
    req: crate::control::Request,
) -> Result<String, String> {
    match req {
        crate::control::Request::Dump {
            name,
            rejected,
            csv,
        } => dump(loaded, store, &name, rejected, csv),
        crate::control::Request::State => state(loaded, store),
    }
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
        let (page, wait, they) = if *pages == 1 {
            ("page", "waits", "it goes")
        } else {
            ("pages", "wait", "they go")
        };
        out.push_str(&format!(
            "sink {sink}: {pages} {page} still {wait} in its queue; {they} out on the next run\n"
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

/// What a source holds: one object per key it remembers, `{"key": {FIELD: VALUE, ...},
/// "cursor": VALUE}` (the cursor only with `incremental`), in key order.
fn source_keys(
    p: &crate::check::Pipeline,
    store: &dyn StateStore,
    name: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let fields = &p.sources[name].key;
    if fields.is_empty() {
        return Err(format!("source `{name}` has no `key`, so it remembers no records; `--rejected` lists its rejected ones"));
    }
    let rows = store.keys(name).map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|(key, entry)| {
            let text = String::from_utf8_lossy(&key);
            let key: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .cloned()
                .zip(text.split('\u{1f}').map(serde_json::Value::from))
                .collect();
            let mut row = serde_json::json!({ "key": key });
            if let Some(c) = entry.cursor {
                row["cursor"] = c;
            }
            row
        })
        .collect())
}

/// What `dump` prints: the records of a sled sink, the groups of an aggregate, or what a
/// source holds (the keys it remembers, or with `--rejected` its rejected list).
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
    } else if p.aggregates.contains_key(name) {
        crate::nodes::aggregate::dump(p, name, store)?
    } else if p.sources.contains_key(name) && !p.sinks.contains_key(name) {
        source_keys(p, store, name)?
    } else {
        let tree = match p.sinks.get(name) {
            Some(Sink::Sled { tree, .. }) => tree.clone(),
            Some(_) => return Err(format!("sink `{name}` is not a sled sink; only sled sinks keep records in the data directory")),
            None => return Err(format!("no sled sink, aggregate or source named `{name}` (sled sinks: {}; aggregates: {}; sources: {})", names(p.sinks.iter().filter(|(_, s)| matches!(s, Sink::Sled { .. })).map(|(n, _)| n)), names(p.aggregates.keys()), names(p.sources.keys()))),
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
    if columns.is_empty() {
        // Nothing held: no header to give, and not a row holding one empty field.
        return Ok(String::new());
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
        let start = loaded.pipeline.sources[name]
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
        if loaded.pipeline.sources[name].for_each.is_some() {
            out.push_str(&format!("  pending parent records: {queued}\n"));
        }
    }
    for (name, sink) in &loaded.pipeline.sinks {
        let queued = store
            .kv_len(&crate::nodes::sink::queue_space(name))
            .map_err(|e| e.to_string())?;
        let held = match sink {
            Sink::Sled { tree, .. } => format!(
                "{} records, ",
                store.sink_len(tree).map_err(|e| e.to_string())?
            ),
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
    for name in loaded.pipeline.aggregates.keys() {
        let (groups, waiting) = crate::nodes::aggregate::sizes(name, store)?;
        out.push_str(&format!(
            "aggregate {name}: {groups} group{}, {waiting} waiting for its sinks\n",
            plural(groups as u64)
        ));
    }
    Ok(out)
}

/// What `fmt` did, or would do.
#[derive(Debug, PartialEq, Eq)]
pub enum Fmt {
    /// The file is already canonical; nothing was written.
    Canonical,
    /// The file was rewritten.
    Rewritten,
    /// `--check`: the file would change, as this unified diff says.
    WouldChange(String),
}

/// Why `fmt` left a file alone.
#[derive(Debug)]
pub enum FmtFailure {
    /// The file could not be read or written: one line.
    Io(String),
    /// The file does not parse (the rendered diagnostics of `check`), or could not be
    /// formatted safely (one line).
    Pipeline(String),
}

/// Formats a pipeline file in place (unless `check_only`). A file with syntax errors is
/// not touched; its diagnostics are rendered as `hamstr check` renders them.
pub fn fmt(path: &Path, check_only: bool, color: bool) -> Result<Fmt, FmtFailure> {
    let text = crate::read_pipeline(path).map_err(FmtFailure::Io)?;
    let formatted = match crate::format::format(&text) {
        Ok(f) => f,
        Err(crate::format::FormatError::Syntax(_)) => {
            let checked = check::check(&path.display().to_string(), &text, &|k| {
                std::env::var(k).ok()
            });
            return Err(FmtFailure::Pipeline(checked.report.render(color, 100)));
        }
        Err(crate::format::FormatError::Unsafe(why)) => {
            return Err(FmtFailure::Pipeline(format!(
                "error: `{}` was left as it is: {why}\n",
                path.display()
            )))
        }
    };
    if formatted == text {
        return Ok(Fmt::Canonical);
    }
    if check_only {
        let name = path.display().to_string();
        let diff = similar::TextDiff::from_lines(&text, &formatted)
            .unified_diff()
            .context_radius(3)
            .header(&name, &format!("{name} (formatted)"))
            .to_string();
        return Ok(Fmt::WouldChange(diff));
    }
    write_replacing(path, &formatted).map_err(FmtFailure::Io)?;
    Ok(Fmt::Rewritten)
}

/// Writes a temporary file beside the target and renames it over the target, so a
/// crash leaves either the old text or the new, never half of one. A symbolic link is
/// followed: the file it points to is replaced, the link stays.
fn write_replacing(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    let tmp = target.with_file_name(format!(".{file_name}.fmt-{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(&target) {
            f.set_permissions(meta.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{}`: {e}", path.display())
    })
}
