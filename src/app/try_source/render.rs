//! `try`'s report for a person: each page's requests and answers, a table of its first
//! records fitted to the terminal's width, rejections, the next request, and the flags.
//! Everything that came from the API is filtered (`api_text`) on its way to the terminal.

use super::report::{NextRequest, PageTrial, Trial};
use super::SHOWN_RECORDS;
use crate::nodes::net::{api_text, SHOWN};
use comfy_table::{presets, ContentArrangement, Table};
use serde_json::{Map, Value as Json};
use std::fmt::Write as _;
use std::io::IsTerminal;

/// The width to fit: the terminal's, else `COLUMNS`, else 100.
pub fn width() -> u16 {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(&stdout) {
            return w.max(40);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(100)
}

/// The rejections of a page shown; the others are counted.
const SHOWN_REJECTIONS: usize = 10;
/// The widest a cell's text gets before it is cut.
const CELL: usize = 60;

pub fn human(trial: &Trial, width: u16) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "source `{}` (service `{}`)",
        trial.source, trial.service
    );
    if let Some(parent) = &trial.parent {
        let _ = writeln!(out, "\nparent `{}`:", parent.source);
        if let Some(page) = &parent.page {
            exchanges(&mut out, page);
            let _ = writeln!(
                out,
                "  {} record{} on its first page",
                page.passed,
                plural(page.passed)
            );
        }
        if parent.requests.is_empty() {
            let _ = writeln!(
                out,
                "  its first page gave no record: `{}` would make no request",
                trial.source
            );
        } else {
            let _ = writeln!(out, "  its first records would trigger:");
            for t in &parent.requests {
                let _ = writeln!(out, "    {}", api_text(&t.request, 2 * SHOWN));
            }
            let _ = writeln!(out, "  (trying the first)");
        }
    }
    for page in &trial.pages {
        page_text(&mut out, page, &trial.fields, width);
    }
    if !trial.flags.is_empty() {
        let _ = writeln!(out, "\nflagged:");
        for f in &trial.flags {
            wrapped(&mut out, "  ", f.headline(), width);
            if f.did_you_mean.is_some() || f.path.is_some() && !f.keys.is_empty() {
                let keys = f.keys.iter().map(|k| api_text(k, 40)).collect::<Vec<_>>();
                wrapped(
                    &mut out,
                    "    ",
                    &format!("the items have: {}", keys.join(", ")),
                    width,
                );
            }
        }
    }
    out
}

fn exchanges(out: &mut String, page: &PageTrial) {
    for x in &page.exchanges {
        let answer = match (&x.response, &x.error) {
            (Some(r), _) => {
                let reason = reqwest::StatusCode::from_u16(r.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                format!("{} {reason}", r.status)
            }
            (None, Some(e)) => format!("failed: {}", api_text(e, 2 * SHOWN)),
            (None, None) => "no answer".to_string(),
        };
        let _ = writeln!(
            out,
            "  {} {}\n    → {} in {} ms",
            x.request.method,
            api_text(&x.request.url, 2 * SHOWN),
            answer.trim_end(),
            x.elapsed_ms
        );
    }
}

fn page_text(out: &mut String, page: &PageTrial, fields: &[String], width: u16) {
    let _ = writeln!(out, "\npage {} ({} ms):", page.page, page.elapsed_ms);
    exchanges(out, page);
    if page.exchanges.is_empty() {
        return;
    }
    let filtered = if page.passed < page.records {
        format!(", {} pass `where`", page.passed)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  `records` selected {} item{}: {} record{}{filtered}, {} rejected",
        page.selected,
        plural(page.selected),
        page.records,
        plural(page.records),
        page.rejected.len()
    );
    let shown: Vec<&Map<String, Json>> = page.sample.iter().take(SHOWN_RECORDS).collect();
    if !shown.is_empty() {
        out.push_str(&table(&shown, fields, width));
        out.push('\n');
        if page.records > shown.len() {
            let more = page.records - shown.len();
            let _ = writeln!(out, "  … and {more} more record{}", plural(more));
        }
    }
    if !page.rejected.is_empty() {
        let _ = writeln!(out, "  rejected:");
        for r in page.rejected.iter().take(SHOWN_REJECTIONS) {
            let _ = writeln!(
                out,
                "    item {}: {}",
                r.item,
                api_text(&r.reason, 2 * SHOWN)
            );
        }
        if page.rejected.len() > SHOWN_REJECTIONS {
            let _ = writeln!(
                out,
                "    … and {} more",
                page.rejected.len() - SHOWN_REJECTIONS
            );
        }
    }
    let next = match &page.next {
        NextRequest::Request { request, fetched } => format!(
            "{}{}",
            api_text(request, 2 * SHOWN),
            if *fetched {
                ""
            } else {
                "  (not fetched: raise --pages to follow it)"
            }
        ),
        NextRequest::Done => "nothing: this was the last page".to_string(),
        NextRequest::Stopped(why) => format!("nothing: {}", api_text(why, 2 * SHOWN)),
        NextRequest::None => return,
    };
    let _ = writeln!(out, "  next: {next}");
}

/// The records as a table as wide as `width`; when the fields cannot share that width,
/// one record after another, a field a line.
fn table(records: &[&Map<String, Json>], fields: &[String], width: u16) -> String {
    let columns = fields.len().max(1);
    if usize::from(width) / columns < 8 {
        let mut out = String::new();
        for (i, r) in records.iter().enumerate() {
            let _ = writeln!(out, "  record {}:", i + 1);
            for f in fields {
                let _ = writeln!(out, "    {f}: {}", cell(r.get(f)));
            }
        }
        return out.trim_end().to_string();
    }
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(fields.iter().map(String::as_str));
    for r in records {
        t.add_row(fields.iter().map(|f| cell(r.get(f))));
    }
    t.to_string()
}

/// A value as a cell: text as it is, null as `null`, anything else as JSON; filtered
/// and cut.
fn cell(v: Option<&Json>) -> String {
    let text = match v {
        None | Some(Json::Null) => "null".to_string(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    api_text(&text, CELL)
}

/// `text` in lines of at most `width` characters, each starting with `indent`, cut
/// between words.
fn wrapped(out: &mut String, indent: &str, text: &str, width: u16) {
    let room = usize::from(width).saturating_sub(indent.len()).max(20);
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > room {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_fits_the_width_it_is_given() {
        let fields: Vec<String> = ["id", "title", "body"].map(String::from).to_vec();
        let long = "word ".repeat(40);
        let r = json!({"id": 1, "title": "a\u{1b}[31m title", "body": long});
        let rows = [r.as_object().unwrap()];
        let text = table(&rows, &fields, 50);
        for line in text.lines() {
            assert!(line.chars().count() <= 50, "{line:?} in\n{text}");
        }
        assert!(!text.contains('\u{1b}'), "{text}");
        let many: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let wide = json!({"f0": 1});
        let text = table(&[wide.as_object().unwrap()], &many, 60);
        assert!(
            text.contains("record 1:\n    f0: 1\n    f1: null"),
            "{text}"
        );
    }
}
