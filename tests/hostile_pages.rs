//! Property: hostile pages — nested to serde_json's limit, recursive shapes, numbers of
//! 400 digits, strings of 200,000 characters with escape sequences, arrays of 20,000
//! items, invalid UTF-8, cut-off JSON — go through extraction (the library's `Extractor`
//! on sources compiled by `check`) and through every paginator without a panic, within
//! a bound on the memory they hold (a counting allocator, per thread), and with short,
//! clean warnings. Also: loop detection holds a fixed-size digest per URL, however long
//! the API's cursors.

use hamstr::check::{check, Source};
use hamstr::nodes::eval::Path;
use hamstr::nodes::record::raw::split;
use hamstr::nodes::record::{Extractor, Room};
use hamstr::nodes::source::http::Response;
use hamstr::nodes::source::paginate::{Next, Pager};
use hamstr::nodes::value::{write_record, write_record_raw};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;
use url::Url;

// ---- memory, counted per thread -------------------------------------------------------

/// The system allocator, counting the bytes each thread holds (what it allocated less
/// what it freed) and the most it held. Extraction and pagination run on the calling
/// thread, so a test measures them while others run.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(change: isize) {
    let _ = HELD.try_with(|held| {
        let now = held.get() + change;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `f` returns, and the most memory it held beyond what the thread held before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get) - before;
    (out, peak.max(0) as usize)
}

/// What `f` leaves held when it returns (what it built and kept).
fn kept_by<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let before = HELD.with(Cell::get);
    let out = f();
    (out, HELD.with(Cell::get) - before)
}

// ---- sources --------------------------------------------------------------------------

/// The fields every source below extracts: a key, a cursor, conversions and a json field.
const FIELDS: &str = "key = id\n  incremental { cursor = at }\n  fields {\n    id  : string    = $.id\n    n   : int?      = $.n\n    d   : decimal?  = $.n\n    at  : datetime  = $.at\n    raw : json?     = $.raw\n    ids : json?     = $..id\n  }";

/// A source `a` of a service on 127.0.0.1:9 with these properties, as `check` compiles it.
fn source(props: &str) -> Source {
    source_with(props, FIELDS)
}

/// As [`source`], with these fields.
fn source_with(props: &str, fields: &str) -> Source {
    let text = format!(
        "service s {{ base_url = \"http://127.0.0.1:9\" }}\n\
         source a from s {{\n  get = \"/x\"\n  schedule = once\n  {props}\n  {fields}\n}}\n\
         sink k = stdout()\nflow a -> k\n"
    );
    let checked = check("pages.hmr", &text, &|_| None);
    assert_eq!(checked.report.errors(), 0, "{props}: does not check");
    checked.pipeline.expect("a pipeline").sources["a"].clone()
}

/// Extractors for every form a `records` path takes: the body itself, an array by
/// names, descendant paths, wildcards of wildcards, a filter.
fn extractors() -> &'static [(&'static str, Extractor)] {
    static ALL: OnceLock<Vec<(&'static str, Extractor)>> = OnceLock::new();
    ALL.get_or_init(|| {
        [
            "",
            "records = $.data[*]",
            "records = $.items[0].items[*]",
            "records = $..items[*]",
            "records = $..*",
            "records = $..id",
            "records = $.data[*][*]",
            "records = $.data[?@.id]",
        ]
        .into_iter()
        .map(|r| (r, Extractor::new(&source(r))))
        .collect()
    })
}

/// Extractors whose fields are all read from an item's text where it lies (singular
/// paths from a name, `$.raw.x` and `$.raw[0]` below one), for every `records` path a
/// page can be split at.
fn direct_extractors() -> &'static [(&'static str, Extractor)] {
    static ALL: OnceLock<Vec<(&'static str, Extractor)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let fields = "key = id\n  incremental { cursor = at }\n  fields {\n    id  : string    = $.id\n    n   : int?      = $.n\n    d   : decimal?  = $.n\n    at  : datetime  = $.at\n    raw : json?     = $.raw\n    x   : string?   = $.raw.x\n    r0  : json?     = $.raw[0]\n    k   : int?      = 7\n  }";
        ["", "records = $.data[*]", "records = $.a.b[*]"]
            .into_iter()
            .map(|r| (r, Extractor::new(&source_with(r, fields))))
            .collect()
    })
}

/// Sources with every paginator, reading what the hostile pages may hold.
fn paginated() -> &'static [(&'static str, Source)] {
    static ALL: OnceLock<Vec<(&'static str, Source)>> = OnceLock::new();
    ALL.get_or_init(|| {
        [
            "paginate = page(size_param = \"n\", size = 5, total_pages = $.total)",
            "paginate = offset(limit_param = \"n\", limit = 5, total = $.total)",
            "paginate = cursor(param = \"c\", from = $.next, has_more = $.more)",
            "paginate = cursor(param = \"c\", from = $.data[-1].id)",
            "paginate = next_url($.next)",
            "paginate = next_url($.links.next.href)",
        ]
        .into_iter()
        .map(|p| (p, source(&format!("records = $.data[*]\n  {p}"))))
        .collect()
    })
}

// ---- hostile pages ----------------------------------------------------------------------

fn numbers() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "-?[1-9][0-9]{0,400}(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,6})?"
            .prop_map(|t| serde_json::from_str(&t).expect("a number")),
    ]
}

fn strings() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        any::<String>(),
        Just("\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}".to_string()),
        Just("http://[oops".to_string()),
        Just("http://\u{1b}]0;owned\u{7}[\u{202e}/x".to_string()),
        (1usize..200_000).prop_map(|n| format!("http://[{}/x", "y".repeat(n))),
        Just("/x?c=1".to_string()),
        (any::<char>(), 1usize..200_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

fn small_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        numbers(),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// A leaf: a small one, or (one in ten) a string of up to 200,000 characters.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![9 => small_leaf(), 1 => strings().prop_map(Value::String)]
}

/// Objects with the names the paths and paginators look for, and arrays, of `leaf`s.
fn tree(leaf: BoxedStrategy<Value>, nodes: u32) -> impl Strategy<Value = Value> {
    let names = prop_oneof![
        Just("id"),
        Just("n"),
        Just("at"),
        Just("raw"),
        Just("data"),
        Just("items"),
        Just("next"),
        Just("more"),
        Just("total"),
        Just("links"),
        Just("href"),
        Just("x"),
    ];
    leaf.prop_recursive(6, nodes, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Nested 6 deep, up to 96 leaves.
fn nested() -> impl Strategy<Value = Value> {
    tree(leaf().boxed(), 96)
}

/// An item holding the next level under `items`, 20 to 60 deep (the most serde_json
/// reads is 128 nested arrays and objects), each level with text of its own.
fn recursive() -> impl Strategy<Value = Value> {
    (20usize..60, 1usize..8_000, 0usize..3).prop_map(|(depth, pad, siblings)| {
        (0..depth).rev().fold(json!([]), |below, level| {
            let mut items = vec![json!({ "id": format!("s{level}") }); siblings];
            items.insert(0, json!({ "id": format!("r{level}"), "n": level, "pad": "p".repeat(pad), "items": below }));
            Value::Array(items)
        })
    }).prop_map(|items| json!({ "items": items }))
}

/// A chain of arrays or objects nested up to 125 deep.
fn deep() -> impl Strategy<Value = Value> {
    (0usize..125, leaf(), any::<bool>()).prop_map(|(depth, v, arrays)| {
        (0..depth).fold(v, |inner, _| {
            if arrays {
                json!([inner])
            } else {
                json!({ "items": inner })
            }
        })
    })
}

/// Up to 20,000 copies of one small item.
fn wide() -> impl Strategy<Value = Value> {
    (0usize..20_000, tree(small_leaf().boxed(), 12))
        .prop_map(|(n, item)| json!({ "data": vec![item; n], "items": [] }))
}

/// A page's bytes: JSON of a hostile shape, or bytes that are not JSON.
fn pages() -> impl Strategy<Value = Vec<u8>> {
    let json = prop_oneof![
        3 => nested(),
        2 => recursive(),
        1 => deep(),
        1 => wide(),
        2 => (nested(), nested(), leaf(), leaf()).prop_map(|(data, links, next, total)| json!({
            "data": data, "links": links, "next": next, "more": true, "total": total,
        })),
    ]
    .prop_map(|v| serde_json::to_vec(&v).expect("JSON text"));
    prop_oneof![
        8 => json,
        // invalid UTF-8 in a string, cut-off text, nesting past serde_json's limit
        1 => (nested(), any::<u8>()).prop_map(|(v, b)| {
            let mut t = serde_json::to_vec(&json!({ "data": [v] })).expect("JSON text");
            let at = t.len() / 2;
            t.truncate(at);
            t.extend_from_slice(&[b'"', 0xff, 0xfe, b, b'"', b']', b'}']);
            t
        }),
        1 => (1usize..400).prop_map(|n| "[".repeat(n).into_bytes()),
    ]
}

/// How much memory extracting a page may hold at once: the matches as references, a
/// record at a time; never a copy of the body per level of its nesting.
fn bound(page_bytes: usize) -> usize {
    8 * page_bytes + 256 * 1024
}

fn response(body: Value) -> Response {
    let text = serde_json::to_vec(&body).expect("JSON text");
    Response {
        url: Url::parse("http://127.0.0.1:9/x?c=0").expect("a URL"),
        headers: Default::default(),
        body_hash: xxhash_rust::xxh3::xxh3_64(&text),
        body,
        records: None,
    }
}

/// The response a run makes of a page of a source with `records = $.data[*]`: its
/// records kept as text.
fn split_response(page: &[u8]) -> Response {
    let (body, records) = split(page.to_vec(), &["data".to_string()]).expect("a page a tree reads");
    Response {
        url: Url::parse("http://127.0.0.1:9/x?c=0").expect("a URL"),
        headers: Default::default(),
        body_hash: xxhash_rust::xxh3::xxh3_64(page),
        body,
        records,
    }
}

/// A warning a person can read in a log: short, one line, nothing a terminal acts on.
fn assert_clean(what: &str, w: &str) {
    assert!(
        w.chars().count() <= 600,
        "{what}: a warning of {} characters",
        w.chars().count()
    );
    assert!(
        !w.chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
        "{what}: {w:?}"
    );
}

/// Every extractor takes the page apart without a panic, holding at most [`bound`] and
/// one copy of the body's tree.
fn extracted_within_bound(page: &[u8]) -> Result<(), TestCaseError> {
    // A body that is not JSON is the HTTP client's error ("not valid JSON"), as it
    // parses the page the same way.
    let Ok(body) = serde_json::from_slice::<Value>(page) else {
        return Ok(());
    };
    for (records, ex) in extractors() {
        // What one copy of the body's tree holds: a `json` field of a match may hold
        // that much (`ids = $..id` of the match that is the whole records array is a
        // copy of its ids), and a tree of small values is up to 30 times its text.
        let (body, one_copy) = kept_by(|| body.clone());
        let one_copy = usize::try_from(one_copy).unwrap_or(0);
        let ((), peak) = peak_of(|| {
            let Ok(count) = ex.count(&body, None) else {
                // Only a source without `records` refuses a page: one not an array.
                assert!(records.is_empty() && !body.is_array(), "{records}");
                return;
            };
            let items = ex
                .items(body, None)
                .expect("the items of a page that was counted");
            let refs = items.refs();
            assert_eq!(refs.len(), count, "{records}");
            for item in refs {
                match ex.record(item, None) {
                    Ok(r) => {
                        let _ = ex.cursor_of(&r);
                        let _ = ex.key_of(&r);
                    }
                    Err(rejected) => assert!(
                        rejected.reason.chars().count() <= 300,
                        "{records}: {}",
                        rejected.reason
                    ),
                }
                let _ = ex.item_cursor(item, None);
            }
        });
        prop_assert!(
            peak <= bound(page.len()) + one_copy,
            "{}: held {} bytes for a page of {} (a copy of its tree: {})",
            records,
            peak,
            page.len(),
            one_copy
        );
    }
    Ok(())
}

/// Found by the property above: every object of the records array matched by `$..*`,
/// and the match that is the array itself holds a copy of all of them in `ids = $..id`.
/// A tree of `{"id":{"id":null}}` is about 30 times its text, past `bound` alone.
#[test]
fn a_json_field_of_the_whole_array_holds_one_copy_of_its_tree() {
    let items = vec![r#"{"id":{"id":null}}"#; 2_049].join(",");
    let page = format!(r#"{{"data":[{items}],"items":[]}}"#);
    extracted_within_bound(page.as_bytes()).expect("within the bound");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Every extractor takes every page apart without a panic, within the bound.
    #[test]
    fn hostile_pages_are_extracted_within_a_memory_bound(page in pages()) {
        extracted_within_bound(&page)?;
    }

    /// A page split as a run splits it (the records kept as text) gives the count, and
    /// item by item the record or the rejection, its tree gives, within the same bound.
    #[test]
    fn a_page_split_gives_what_its_tree_gives(page in pages(), wrapped in any::<bool>()) {
        // The page, or the page as the records of `$.a.b[*]`.
        let page = if wrapped {
            let mut p = br#"{"x":[{"b":1}],"a":{"c":null,"b":"#.to_vec();
            p.extend_from_slice(&page);
            p.extend_from_slice(b"},\"y\":2}");
            p
        } else {
            page
        };
        let whole = serde_json::from_slice::<Value>(&page);
        for (records, ex) in extractors().iter().chain(direct_extractors()) {
            let Some(at) = ex.split_at() else { continue };
            // The page parsed, as the tree above is, before what extraction holds is counted.
            let parted = split(page.clone(), &at);
            let copy = whole.as_ref().ok().cloned();
            let ((), peak) = peak_of(|| {
                let (Ok(body), Some(copy)) = (&whole, copy) else {
                    // What a tree refuses the split refuses, but for nesting past the
                    // depth limit inside an item, which its own parse meets.
                    return;
                };
                let (tree, raw) = parted.expect("a page a tree reads is split");
                let count = ex.count(body, None);
                assert_eq!(count.as_ref().ok(), ex.count(&tree, raw.as_ref()).as_ref().ok(), "{records}");
                if count.is_err() {
                    return;
                }
                let by_tree = ex.items(copy, None).expect("items");
                let by_text = ex.items(tree, raw).expect("items");
                let (a, b) = (by_tree.refs(), by_text.refs());
                assert_eq!(a.len(), b.len(), "{records}");
                for (x, y) in a.into_iter().zip(b) {
                    assert_eq!(x.json(), y.json(), "{records}");
                    match (ex.record(x, None), ex.record(y, None)) {
                        (Ok(r), Ok(s)) => assert_eq!(r, s, "{records}"),
                        (Err(r), Err(s)) => {
                            assert_eq!(r.reason, s.reason, "{records}");
                            assert_eq!(r.key, s.key, "{records}");
                            assert_eq!(r.cursor, s.cursor, "{records}");
                        }
                        (r, s) => panic!("{records}: {:?} from the tree, {:?} from the text", r.map_err(|e| e.reason), s.map_err(|e| e.reason)),
                    }
                    assert_eq!(ex.item_cursor(x, None), ex.item_cursor(y, None), "{records}");
                }
            });
            // What the sinks get: the JSON written from the text (a `json` field's text
            // copied when it is what its tree writes) is the tree's. Outside the bound:
            // written JSON may be six times its text (`\u0001` for a control character).
            if let (Ok(body), Ok((tree, raw))) = (&whole, split(page.clone(), &at)) {
                if let (Ok(by_tree), Ok(by_text)) = (ex.items(body.clone(), None), ex.items(tree, raw)) {
                    let mut room = Room::default();
                    for (x, y) in by_tree.refs().into_iter().zip(by_text.refs()) {
                        if let (Ok(t), Ok(j)) = (ex.record_in(y, None, &mut room), ex.record(x, None)) {
                            let (mut a, mut b) = (Vec::new(), Vec::new());
                            write_record_raw(&ex.heads, &t, &room.raw, &mut a);
                            write_record(&ex.names, &j, &mut b);
                            prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{}", records);
                        }
                    }
                }
            }
            // Besides what extraction holds, the comparison parses each item's text into
            // a tree (`y.json()`): up to 20 times the text for small nested values (a
            // `Value` and an `IndexMap` entry for every few bytes).
            let compared = page.len().saturating_mul(20);
            prop_assert!(
                peak <= bound(page.len()) + compared,
                "{}: held {} bytes for a page of {}", records, peak, page.len()
            );
        }
    }

    /// Every paginator decides as it does on the tree when the page's records are kept
    /// as text: a cursor read from the last record (`$.data[-1].id`) included.
    #[test]
    fn every_paginator_decides_alike_on_a_split_page(page in pages(), count in 0usize..10) {
        let Ok(body) = serde_json::from_slice::<Value>(&page) else { return Ok(()) };
        let (whole, split) = (response(body), split_response(&page));
        for (what, src) in paginated() {
            let decisions = |resp: &Response| {
                let mut pager = Pager::new(&src.paginate, Url::parse("http://127.0.0.1:9/x").expect("URL"), vec![]);
                let first = pager.first();
                let same = |u: &Url| u.origin() == first.origin();
                let mut said = vec![format!("{}", pager.repeats_previous(resp))];
                for _ in 0..3 {
                    let next = pager.next(resp, count, &same);
                    said.push(format!("{next:?}"));
                    if !matches!(next, Next::Fetch(_)) {
                        break;
                    }
                }
                said
            };
            prop_assert_eq!(decisions(&whole), decisions(&split), "{}", what);
        }
    }

    /// Every paginator decides on every page without a panic; what it says when it stops
    /// early is short and clean, whatever the page held.
    #[test]
    fn hostile_pages_go_through_every_paginator(page in pages(), count in 0usize..10) {
        let Ok(body) = serde_json::from_slice::<Value>(&page) else { return Ok(()) };
        let resp = response(body);
        for (what, src) in paginated() {
            let mut pager = Pager::new(&src.paginate, Url::parse("http://127.0.0.1:9/x").expect("URL"), vec![]);
            let first = pager.first();
            let same = |u: &Url| u.origin() == first.origin();
            let _ = pager.repeats_previous(&resp);
            for _ in 0..3 {
                match pager.next(&resp, count, &same) {
                    Next::Fetch(u) => prop_assert!(same(&u), "{what}: {u}"),
                    Next::Done => break,
                    Next::Stop(w) | Next::Limit(w) => {
                        assert_clean(what, &w);
                        break;
                    }
                }
            }
        }
    }

    /// The walk for paths of names, indexes and wildcards selects what jsonpath-rust
    /// selects, in the same order, on any page.
    #[test]
    fn descendant_paths_select_what_jsonpath_rust_selects(page in pages()) {
        let Ok(body) = serde_json::from_slice::<Value>(&page) else { return Ok(()) };
        for text in ["$..items[*]", "$..id", "$..*", "$.data[*][*]", "$..items[0].id", "$..[-1]", "$.items..n"] {
            let query = jsonpath_rust::parser::parse_json_path(text).expect("a path");
            let theirs: Vec<&Value> = jsonpath_rust::query::js_path_process(&query, &body)
                .expect("selects")
                .into_iter()
                .map(|r| r.val())
                .collect();
            let path = Path::compile(&hamstr::check::JsonPath { text: text.into(), singular: None });
            prop_assert!(path.select(&body) == theirs, "{}", text);
        }
    }
}

/// Item 10: a run's loop detection kept every URL it requested, so an API whose cursors
/// are 50 KB made it hold 100 MB over 2,000 pages (and a gigabyte over 20,000). It holds
/// a fixed-size digest per URL now.
#[test]
fn loop_detection_holds_a_digest_per_url_however_long_the_cursors() {
    let src = &paginated()[2].1;
    let mut pager = Pager::new(
        &src.paginate,
        Url::parse("http://127.0.0.1:9/x").expect("URL"),
        vec![],
    );
    pager.first();
    let same = |_: &Url| true;
    let pages = 2_000;
    let ((), kept) = kept_by(|| {
        for n in 0..pages {
            let resp = response(
                json!({ "data": [{ "id": n }], "next": format!("{n}:{}", "c".repeat(50_000)), "more": true }),
            );
            let next = pager.next(&resp, 1, &same);
            assert!(matches!(next, Next::Fetch(_)), "page {n}: {next:?}");
        }
    });
    assert!(
        kept < 1024 * 1024,
        "the pager kept {kept} bytes for {pages} URLs of 50 KB"
    );
}
