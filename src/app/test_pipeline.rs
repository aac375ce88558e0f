//! `hamstr test FILE [--update]` (spec §16): each recording beside the pipeline is run
//! `--once`, offline, into a fresh data directory, and what each sink received is
//! compared with the test's expected records.
//!
//! A test is a folder `tests/NAME/` beside the pipeline holding `recording/` (made by
//! `run --record`) and `expected/SINK.jsonl`. When several pipelines share a folder,
//! each keeps its tests under `tests/STEM/NAME/`, STEM being its file name without
//! `.hmr`. Every sink is replaced by a file in the test's temporary folder, so a test
//! writes to no database, webhook, terminal or file of the pipeline's.

use super::load::{self, Loaded};
use super::run::{run_loaded, Exchanges, How};
use super::{Console, Error, Outcome};
use crate::check::{Pipeline, Sink};
use crate::plan::{Node, NodeId, Plan};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One test: its name (as shown) and folder.
struct TestCase {
    name: String,
    dir: PathBuf,
}

/// What a sink received in a test, and how to compare it.
struct Received {
    records: Vec<Json>,
    /// Compared as a set of records: a keyed sink holds one record per key whatever
    /// the order they came in; a sink fed by several nodes, a child source or an
    /// aggregate receives them in an order that depends on timing.
    unordered: bool,
    /// The key fields of a keyed sink: records are shown in key order, so that a
    /// changed record stays in its place in a diff.
    key: Vec<String>,
}

/// `hamstr test FILE`.
pub fn test(file: &Path, update: bool, console: Console) -> Result<Outcome, Error> {
    super::private_files();
    let loaded = load::load(file, console)?;
    let cases = find_tests(file, &loaded.base_dir)?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        let ok = run_case(file, &loaded, case, update, console)?;
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    eprintln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// The tests of the pipeline at `file`: `tests/STEM/NAME/` and `tests/NAME/` holding a
/// `recording/`, in name order.
fn find_tests(file: &Path, base: &Path) -> Result<Vec<TestCase>, Error> {
    let tests = base.join("tests");
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cases = Vec::new();
    for (shown, dir) in [
        (String::new(), tests.clone()),
        (format!("{stem}/"), tests.join(&stem)),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<TestCase> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("recording").is_dir())
            .map(|p| TestCase {
                name: format!(
                    "{shown}{}",
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ),
                dir: p,
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        cases.extend(found);
    }
    if cases.is_empty() {
        return Err(Error::Usage(format!(
            "no tests for `{}`: a test is a folder `{}` holding `recording/` (record one with `hamstr run {} --once --record {}`)",
            file.display(),
            tests.join("NAME").display(),
            file.display(),
            tests.join("NAME").join("recording").display()
        )));
    }
    Ok(cases)
}

/// Runs one test; true when every sink received what was expected (or, with `update`,
/// once the expected files are written).
fn run_case(
    file: &Path,
    loaded: &Loaded,
    case: &TestCase,
    update: bool,
    console: Console,
) -> Result<bool, Error> {
    let scratch = tempfile::Builder::new()
        .prefix("hamstr-test-")
        .tempdir()
        .map_err(|e| Error::Io(format!("cannot make a temporary folder: {e}")))?;
    let captured = scratch.path().join("sinks");
    let data = scratch.path().join("data");
    let pipeline = captured_sinks(&loaded.pipeline, &captured);
    let test_loaded = Loaded {
        pipeline,
        base_dir: loaded.base_dir.clone(),
    };
    let tape = Exchanges::Replay(case.dir.join("recording")).tape()?;
    let store = load::open_store(&data)?;
    let how = How {
        once: true,
        watch: false,
        tape,
        cluster: None,
        listen: None,
    };
    let report = run_loaded(file, &test_loaded, store, &data, how, console)?;
    if report.failed() {
        eprintln!(
            "test {}: FAILED: the run did not complete\n{}",
            case.name,
            super::run::summary(&report)
        );
        return Ok(false);
    }
    let plan = Plan::new(&loaded.pipeline);
    let expected_dir = case.dir.join("expected");
    let mut differences = Vec::new();
    for (name, sink) in &loaded.pipeline.sinks {
        let got = received(&plan, name, sink, &captured.join(format!("{name}.jsonl")))?;
        let path = expected_dir.join(format!("{name}.jsonl"));
        if update {
            let records = if got.unordered {
                sorted(&got.records, &got.key)
            } else {
                got.records
            };
            write_expected(&path, &records)?;
            continue;
        }
        if let Some(diff) = compare(&path, &got)? {
            differences.push(format!("sink `{name}` ({}):\n{diff}", path.display()));
        }
    }
    if !update {
        differences.extend(stale_expected(&expected_dir, &loaded.pipeline));
    }
    if update {
        eprintln!("test {}: expected records written", case.name);
        return Ok(true);
    }
    if differences.is_empty() {
        eprintln!("test {}: ok", case.name);
        return Ok(true);
    }
    eprintln!("test {}: FAILED", case.name);
    for d in differences {
        eprintln!("{d}");
    }
    Ok(false)
}

/// The pipeline with every sink replaced by a jsonl file in `dir`, named after it.
fn captured_sinks(p: &Pipeline, dir: &Path) -> Pipeline {
    let mut p = p.clone();
    for (name, sink) in p.sinks.iter_mut() {
        *sink = Sink::Jsonl {
            name: name.clone(),
            path: dir.join(format!("{name}.jsonl")).display().to_string(),
        };
    }
    p
}

/// What sink `name` received (captured in `file`): for a keyed sink, the last record of
/// each key, as the sink keeps them.
fn received(plan: &Plan, name: &str, sink: &Sink, file: &Path) -> Result<Received, Error> {
    let records = read_records(file)?.unwrap_or_default();
    let id = NodeId::Sink(name.to_string());
    let key = match plan.nodes.get(&id) {
        Some(Node::Sink {
            schema: Some(schema),
            ..
        }) => schema.key.clone(),
        _ => Vec::new(),
    };
    let feeders: Vec<&NodeId> = plan
        .edges
        .iter()
        .filter(|(_, to)| *to == id)
        .map(|(from, _)| from)
        .collect();
    let one_scheduled_source = feeders.len() == 1
        && feeders.iter().all(|f| {
            matches!(plan.nodes.get(&NodeId::Source(f.name().to_string())),
                Some(Node::Source { source, .. }) if source.for_each.is_none())
                && !matches!(f, NodeId::Aggregate(_))
        });
    if sink.is_keyed() && !key.is_empty() {
        let mut by_key: BTreeMap<String, Json> = BTreeMap::new();
        for r in records {
            let k = key
                .iter()
                .map(|f| r.get(f).cloned().unwrap_or(Json::Null))
                .collect::<Vec<_>>();
            by_key.insert(Json::Array(k).to_string(), r);
        }
        return Ok(Received {
            records: by_key.into_values().collect(),
            unordered: true,
            key,
        });
    }
    Ok(Received {
        records,
        unordered: sink.is_keyed() || !one_scheduled_source,
        key: Vec::new(),
    })
}

/// The records of a jsonl file; `None` when there is no such file.
fn read_records(path: &Path) -> Result<Option<Vec<Json>>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io(format!("cannot read `{}`: {e}", path.display()))),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| {
            Error::Io(format!(
                "`{}` line {}: not a JSON record: {e}",
                path.display(),
                i + 1
            ))
        })?;
        out.push(record);
    }
    Ok(Some(out))
}

/// Records as the lines of an expected file.
fn lines(records: &[Json]) -> Vec<String> {
    records.iter().map(Json::to_string).collect()
}

/// In a stable order: by their key fields (when they have a key), then their text.
fn sorted(records: &[Json], key: &[String]) -> Vec<Json> {
    let mut out = records.to_vec();
    out.sort_by_cached_key(|r| {
        let k: Vec<String> = key
            .iter()
            .map(|f| match r.get(f) {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            })
            .collect();
        (k, r.to_string())
    });
    out
}

fn write_expected(path: &Path, records: &[Json]) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    let mut text = lines(records).join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text)
        .map_err(|e| Error::Io(format!("cannot write `{}`: {e}", path.display())))
}

/// A readable diff between the expected file at `path` and what was received; `None`
/// when they agree. Records are compared as JSON values (the order of an object's
/// fields and the spacing do not matter).
fn compare(path: &Path, got: &Received) -> Result<Option<String>, Error> {
    let Some(expected) = read_records(path)? else {
        return Ok(Some(format!(
            "  no expected file; the sink received {} record(s) (`hamstr test FILE --update` writes it)",
            got.records.len()
        )));
    };
    let (want, have) = if got.unordered {
        (sorted(&expected, &got.key), sorted(&got.records, &got.key))
    } else {
        (expected, got.records.clone())
    };
    if want == have {
        return Ok(None);
    }
    let (want, have) = (
        lines(&want).join("\n") + "\n",
        lines(&have).join("\n") + "\n",
    );
    let diff = similar::TextDiff::from_lines(&want, &have);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header("expected", "received")
        .to_string();
    Ok(Some(
        text.lines()
            .map(|l| format!("  {}", crate::nodes::net::api_text(l, 1000)))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// Expected files that name no sink of the pipeline.
fn stale_expected(dir: &Path, p: &Pipeline) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stale: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
        .filter(|f| {
            f.file_stem()
                .is_some_and(|s| !p.sinks.contains_key(s.to_string_lossy().as_ref()))
        })
        .map(|f| {
            format!(
                "`{}` names no sink of the pipeline (remove it)",
                f.display()
            )
        })
        .collect();
    stale.sort();
    stale
}
