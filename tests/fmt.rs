//! `hamstr fmt`: the canonical form keeps what a file means and every comment, is
//! stable (formatting twice changes nothing), never panics, and the command writes only
//! when it should (spec §9; the rules are in docs/language.md, "Formatting").

use assert_cmd::Command;
use hamstr::check::{check, check_with, Checked, Mode};
use hamstr::format::{comments, format, FormatError};
use hamstr::plan::Plan;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn hamstr() -> Command {
    let mut cmd = Command::cargo_bin("hamstr").expect("the hamstr binary");
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Every pipeline file the project holds: the examples, their spec originals, and the
/// diagnostic fixtures.
fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("examples"),
        root.join("../shared/spec/examples"),
        root.join("tests/fixtures/check"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "hmr") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    assert!(files.len() > 40, "the corpus is missing: {files:?}");
    files
}

fn checked(text: &str) -> Checked {
    check("pipeline.hmr", text, &|_| None)
}

/// What the checker says, without where it says it.
fn diagnostics(c: &Checked) -> Vec<(String, String)> {
    let mut d: Vec<_> = c
        .report
        .diagnostics
        .iter()
        .map(|d| (format!("{:?}", d.severity), d.code.to_string()))
        .collect();
    d.sort();
    d
}

fn comment_texts(text: &str) -> Vec<String> {
    comments(text)
        .expect("parses")
        .into_iter()
        .map(|c| c.text)
        .collect()
}

#[test]
fn every_file_that_parses_formats_stably_and_means_the_same() {
    let mut formatted = 0;
    for path in corpus() {
        let text = std::fs::read_to_string(&path).unwrap();
        let out = match format(&text) {
            Ok(out) => out,
            Err(FormatError::Syntax(_)) => {
                // Only a file with a syntax error (such as a bad escape) is refused.
                assert!(
                    diagnostics(&checked(&text))
                        .iter()
                        .any(|(_, code)| code == "hamstr::syntax"),
                    "{} should format",
                    path.display()
                );
                continue;
            }
            Err(e) => panic!("{}: {e:?}", path.display()),
        };
        formatted += 1;
        let name = path.display();
        assert_eq!(
            format(&out).unwrap(),
            out,
            "{name}: formatting twice changes it"
        );
        let (before, after) = (checked(&text), checked(&out));
        assert_eq!(
            before.pipeline, after.pipeline,
            "{name}: the pipeline changed"
        );
        assert_eq!(
            before.pipeline.as_ref().map(Plan::new),
            after.pipeline.as_ref().map(Plan::new),
            "{name}: the plan changed"
        );
        assert_eq!(
            diagnostics(&before),
            diagnostics(&after),
            "{name}: the diagnostics changed"
        );
        let (tree, _) = hamstr::syntax::parse(&text);
        let (again, _) = hamstr::syntax::parse(&out);
        assert_eq!(
            tree.unwrap().without_spans(),
            again.unwrap().without_spans(),
            "{name}: the syntax tree changed"
        );
    }
    assert!(formatted > 35, "only {formatted} files formatted");
}

#[test]
fn every_comment_survives_in_order() {
    for path in corpus() {
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(out) = format(&text) else { continue };
        let (mut before, mut after) = (comment_texts(&text), comment_texts(&out));
        assert_eq!(before, after, "{}: comments moved", path.display());
        before.sort();
        after.sort();
        assert_eq!(before, after);
        // The `#` lines are all still there, as plain text too.
        let hashes = |t: &str| t.lines().filter(|l| l.contains('#')).count();
        assert!(hashes(&out) >= hashes(&text).min(1), "{}", path.display());
    }
}

#[test]
fn the_examples_are_valid_and_stay_as_the_spec_wrote_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in corpus()
        .iter()
        .filter(|p| !p.starts_with(root.join("tests")))
    {
        let text = std::fs::read_to_string(path).unwrap();
        // A tenants file (chain.hmr's shops.csv) is read beside the pipeline.
        let dir = path.parent().unwrap();
        let files = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| e.to_string());
        let checked_beside =
            |t: &str| check_with("pipeline.hmr", t, &|_| None, &files, Mode::Single);
        assert_eq!(
            checked_beside(&text).report.errors(),
            0,
            "{}",
            path.display()
        );
        let out = format(&text).unwrap();
        assert_eq!(
            checked_beside(&out).report.errors(),
            0,
            "{}",
            path.display()
        );
        let spec_copy = root
            .join("../shared/spec/examples")
            .join(path.file_name().unwrap());
        if path.starts_with(root.join("examples")) && spec_copy.exists() {
            assert_eq!(
                text,
                std::fs::read_to_string(&spec_copy).unwrap(),
                "{} differs from the spec's copy",
                path.display()
            );
        }
    }
}

const MESSY: &str = r#"   # header comment
service   api{base_url="http://x"   ,  timeout=10s # trailing on timeout
      retry{attempts=5,backoff=1s}


  # about headers
headers {
"X-Client"="ham\u{73}tr"  "Tab"="a	b\u{1}"
}
} # after service
model M { id:string, note : string? }
model Order {
  id : string # the id


  amount:decimal
}
source s from api {get="/x" schedule=every( 30s ) records=$.data[*]   key=[ id , note, ]
  where = ( amount>0 and not(note==null) ) or -amount<=-(1+2)*3
  paginate = cursor(param = "after", # the cursor
     from = $.data[-1].id)
  fields{ id=$['#odd key'] note=$.n ?? "none" # a comment
  }}
sink a=sled("a")
sink bbb = jsonl("x") # jsonl
flow s->a,bbb



# the end
"#;

const MESSY_FORMATTED: &str = r#"# header comment
service api {
  base_url = "http://x"
  timeout  = 10s  # trailing on timeout
  retry { attempts = 5  backoff = 1s }

  # about headers
  headers {
    "X-Client" = "hamstr"
    "Tab"      = "a\tb\u{0001}"
  }
}  # after service

model M { id : string  note : string? }

model Order {
  id : string  # the id

  amount : decimal
}

source s from api {
  get      = "/x"
  schedule = every(30s)
  records  = $.data[*]
  key      = [id, note]
  where    = (amount > 0 and not (note == null)) or -amount <= -(1 + 2) * 3
  # the cursor
  paginate = cursor(param = "after", from = $.data[-1].id)
  fields {
    id   = $['#odd key']
    note = $.n ?? "none"  # a comment
  }
}

sink a   = sled("a")
sink bbb = jsonl("x")  # jsonl
flow s -> a, bbb

# the end
"#;

#[test]
fn a_messy_file_comes_out_canonical() {
    let out = format(MESSY).unwrap();
    assert_eq!(out, MESSY_FORMATTED, "got:\n{out}");
    assert_eq!(format(&out).unwrap(), out);
}

#[test]
fn declarations_are_one_blank_line_apart_and_one_line_ones_keep_their_grouping() {
    let text = "service a { base_url = \"http://x\" }\nmodel M { id : string }\n\n\n\
                sink s = stdout()\nsink t = stdout()\n\nflow x -> s\n# on y\nflow y -> t\n";
    assert_eq!(
        format(text).unwrap(),
        "service a { base_url = \"http://x\" }\n\nmodel M { id : string }\n\n\
         sink s = stdout()\nsink t = stdout()\n\nflow x -> s\n# on y\nflow y -> t\n"
    );
}

#[test]
fn a_block_on_one_line_stays_there_only_while_it_fits() {
    let long = format!(
        "service a {{ base_url = \"http://{}\"  timeout = 1s }}\n",
        "x".repeat(90)
    );
    assert_eq!(
        format(&long).unwrap(),
        format!(
            "service a {{\n  base_url = \"http://{}\"\n  timeout  = 1s\n}}\n",
            "x".repeat(90)
        )
    );
    assert_eq!(format("model M {\n}\n").unwrap(), "model M {}\n");
    assert_eq!(
        format("model M { # none yet\n}\n").unwrap(),
        "model M {  # none yet\n}\n"
    );
    assert_eq!(format("").unwrap(), "");
    assert_eq!(
        format("# only\n\n\n# comments").unwrap(),
        "# only\n\n# comments\n"
    );
}

#[test]
fn jsonpath_and_literals_are_kept_byte_for_byte() {
    let text = "sink s = f($['a b'][?@.x > 1], $..id, 1h30m, 20/s, 2.50, -3, \"\\u{1F980}\")\n";
    assert_eq!(
        format(text).unwrap(),
        "sink s = f($['a b'][?@.x > 1], $..id, 1h30m, 20/s, 2.50, -3, \"🦀\")\n"
    );
}

#[test]
fn a_file_that_does_not_parse_is_an_error_not_a_guess() {
    assert!(matches!(
        format("service a { base_url = }"),
        Err(FormatError::Syntax(_))
    ));
    // A bad escape leaves a tree, but printing it would drop the escape.
    assert!(matches!(
        format("sink s = stdout(\"\\q\")"),
        Err(FormatError::Syntax(_))
    ));
}

// ---- the command ----

fn temp_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.hmr");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn check_exits_0_on_a_canonical_file_and_1_with_a_diff_otherwise_writing_nothing() {
    let (dir, path) = temp_file(MESSY_FORMATTED);
    hamstr()
        .args(["fmt", "--check"])
        .arg(&path)
        .assert()
        .code(0)
        .stdout("");
    std::fs::write(&path, MESSY).unwrap();
    let out = hamstr()
        .args(["fmt", "--check"])
        .arg(&path)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("+++ "), "{stdout}");
    assert!(
        stdout.contains("+  timeout  = 10s  # trailing on timeout"),
        "{stdout}"
    );
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("pipeline.hmr"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), MESSY);
    assert_eq!(dir_listing(dir.path()), ["pipeline.hmr"]);
}

#[test]
fn fmt_rewrites_the_file_in_place_and_leaves_no_temporary_behind() {
    let (dir, path) = temp_file(MESSY);
    hamstr().arg("fmt").arg(&path).assert().code(0).stdout("");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), MESSY_FORMATTED);
    assert_eq!(dir_listing(dir.path()), ["pipeline.hmr"]);
    hamstr()
        .args(["fmt", "--check"])
        .arg(&path)
        .assert()
        .code(0);
}

#[test]
fn a_file_with_a_syntax_error_is_left_byte_for_byte_with_checks_diagnostics() {
    let broken = "service a {\n  base_url = \n}\n# keep me   \n";
    let (_dir, path) = temp_file(broken);
    for args in [&["fmt"][..], &["fmt", "--check"]] {
        hamstr()
            .args(args)
            .arg(&path)
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicates::str::contains("hamstr::syntax"));
        assert_eq!(std::fs::read(&path).unwrap(), broken.as_bytes());
    }
}

#[test]
fn missing_and_non_utf8_files_exit_2_like_check() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.hmr");
    hamstr()
        .arg("fmt")
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(predicates::str::starts_with("error: cannot read"));
    let binary = dir.path().join("bin.hmr");
    std::fs::write(&binary, b"sink s = stdout()\n\xff\xfe").unwrap();
    hamstr()
        .args(["fmt", "--check"])
        .arg(&binary)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not UTF-8"));
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        b"sink s = stdout()\n\xff\xfe"
    );
}

// ---- never a panic ----

#[test]
fn huge_expressions_are_a_syntax_error_not_a_stack_overflow() {
    let (dir, _) = temp_file("");
    for (name, text) in [
        (
            "chain.hmr",
            format!("sink s = stdout({})\n", vec!["a"; 20_000].join(" + ")),
        ),
        (
            "prefix.hmr",
            format!("sink s = stdout({} a)\n", vec!["not"; 50_000].join(" ")),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        for command in ["fmt", "check"] {
            hamstr()
                .arg(command)
                .arg(&path)
                .assert()
                .code(1)
                .stderr(predicates::str::contains("too deep"));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

/// Formatting must never panic; when it succeeds, the output is stable and keeps the
/// comments.
fn holds(text: &str) {
    if let Ok(out) = format(text) {
        assert_eq!(
            format(&out).ok().as_deref(),
            Some(out.as_str()),
            "input:\n{text}"
        );
        assert_eq!(comment_texts(text), comment_texts(&out), "input:\n{text}");
    }
}

const PIECES: &[&str] = &[
    "{", "}", "(", ")", "[", "]", ",", "=", "# c\n", "#", "\n", "\n\n", " ", "\"", "\"#\"", "$",
    "$.a[", "$['#']", "-", "not ", "(a)", "1s", "x", ":", "?", "??", "->",
];

#[test]
fn mutated_examples_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        // examples/ holds the tests of its pipelines beside them.
        if path.extension().is_none_or(|x| x != "hmr") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let cuts: Vec<usize> = (0..text.len())
            .step_by(7)
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for (n, &at) in cuts.iter().enumerate() {
            let piece = PIECES[n % PIECES.len()];
            holds(&format!("{}{piece}{}", &text[..at], &text[at..]));
            let end = cuts.get(n + 2).copied().unwrap_or(text.len());
            holds(&format!("{}{}", &text[..at], &text[end..]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn token_soups_never_panic(pieces in proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(PIECES).prop_map(str::to_string),
            proptest::sample::select(&[
                "service a ", "model M ", "source s from a ", "sink k = ", "flow s -> k",
                "aggregate g ", "b = 1 ", "f(x = 2)", "id : string", "\"q\" = $.x ",
            ][..]).prop_map(str::to_string),
            "[a-z#\"${}() \n,=]{0,4}",
        ],
        0..40,
    )) {
        holds(&pieces.concat());
    }
}
