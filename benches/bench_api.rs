//! Benchmark API server for the throughput benchmark (`benches/throughput.sh`).
//!
//! Serves `GET /records?page=N&per_page=500` (pages start at 1) as
//! `{"data": [...], "page": N, "total_pages": T}` over plain HTTP/1.1 on 127.0.0.1.
//! The records (200,000 by default, 11 fields each) are generated deterministically once
//! at start, and every page of the default size is serialised up front, so answering a
//! request is a copy of ready bytes: the server is cheap and never the bottleneck.
//! A page past the last one has an empty `data`.
//!
//! Usage: `bench_api [--port N] [--records N] [--per-page N] [--delay-ms N]`. With
//! `--port 0` (the default) the OS picks a free port. `--delay-ms N` answers every page
//! N ms late, an async sleep so that requests overlap: an API with latency, for pages
//! in flight (`benches/inflight.sh`). The first line on standard output is always
//! `listening on http://127.0.0.1:PORT`, flushed, so a script can read the address.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

const USAGE: &str = "usage: bench_api [--port N] [--records N] [--per-page N] [--delay-ms N]";

struct Options {
    port: u16,
    records: usize,
    per_page: usize,
    delay_ms: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 0,
        records: 200_000,
        per_page: 500,
        delay_ms: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench` to harness-less benches; ignore it.
        if arg == "--bench" {
            continue;
        }
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--port" => options.port = parse_number(&value("--port")?, "--port")?,
            "--records" => options.records = parse_number(&value("--records")?, "--records")?,
            "--per-page" => options.per_page = parse_number(&value("--per-page")?, "--per-page")?,
            "--delay-ms" => options.delay_ms = parse_number(&value("--delay-ms")?, "--delay-ms")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if options.per_page == 0 {
        return Err("--per-page must be at least 1".into());
    }
    Ok(options)
}

fn parse_number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: `{text}` is not a valid number"))
}

/// SplitMix64: a tiny deterministic generator, so every run serves identical data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Tony", "Shafi", "Leslie", "Hedy", "John",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Hoare",
    "Goldwasser",
    "Lamport",
    "Lamarr",
    "Backus",
];
const STATUSES: &[&str] = &["active", "pending", "suspended", "closed"];
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "CHF", "JPY"];
const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];
const TAGS: &[&str] = &[
    "priority",
    "wholesale",
    "retail",
    "b2b",
    "b2c",
    "returning",
    "new",
    "flagged",
    "vip",
    "newsletter",
];

#[derive(Serialize)]
struct Customer {
    id: u32,
    tier: &'static str,
}

#[derive(Serialize)]
struct Record {
    id: String,
    name: String,
    email: String,
    status: &'static str,
    seq: i64,
    created_at: String,
    updated_at: String,
    amount: String,
    currency: &'static str,
    customer: Customer,
    tags: Vec<&'static str>,
}

fn timestamp(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0)
        .expect("timestamp in range")
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Record number `n` (1-based), built from the shared generator.
fn make_record(n: usize, rng: &mut Rng) -> Record {
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    // 2024-01-01T00:00:00Z, then roughly one record every 2.5 minutes.
    let created = 1_704_067_200 + n as i64 * 150 + rng.below(120) as i64;
    let updated = created + rng.below(30 * 86_400) as i64;
    let cents = rng.below(10_000_000);
    let tag_count = rng.below(4) as usize;
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        tags.push(rng.pick(TAGS));
    }
    Record {
        id: format!("rec-{n:06}"),
        name: format!("{first} {last}"),
        email: format!(
            "{}.{}{n}@example.com",
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase()
        ),
        status: rng.pick(STATUSES),
        seq: n as i64,
        created_at: timestamp(created),
        updated_at: timestamp(updated),
        amount: format!("{}.{:02}", cents / 100, cents % 100),
        currency: rng.pick(CURRENCIES),
        customer: Customer {
            id: 10_000 + rng.below(90_000) as u32,
            tier: rng.pick(TIERS),
        },
        tags,
    }
}

struct Api {
    /// Each record serialised as one JSON object.
    records: Vec<Box<str>>,
    /// Pages of the default size, fully serialised; index 0 is page 1.
    pages: Vec<Bytes>,
    per_page: usize,
    /// How long each answer waits (`--delay-ms`).
    delay: std::time::Duration,
}

impl Api {
    fn new(count: usize, per_page: usize, delay_ms: u64) -> Self {
        let mut rng = Rng(0x6861_6d73_7472);
        let records: Vec<Box<str>> = (1..=count)
            .map(|n| {
                let json =
                    serde_json::to_string(&make_record(n, &mut rng)).expect("a record serialises");
                json.into_boxed_str()
            })
            .collect();
        let total_pages = count.div_ceil(per_page);
        let pages = (1..=total_pages)
            .map(|page| render_page(&records, page, per_page))
            .collect();
        Api {
            records,
            pages,
            per_page,
            delay: std::time::Duration::from_millis(delay_ms),
        }
    }
}

/// `{"data":[...],"page":N,"total_pages":T}` for 1-based `page`; empty `data` past the end.
fn render_page(records: &[Box<str>], page: usize, per_page: usize) -> Bytes {
    let total_pages = records.len().div_ceil(per_page);
    let start = page
        .saturating_sub(1)
        .saturating_mul(per_page)
        .min(records.len());
    let end = start.saturating_add(per_page).min(records.len());
    let slice = &records[start..end];
    let size: usize = slice.iter().map(|r| r.len() + 1).sum::<usize>() + 64;
    let mut body = String::with_capacity(size);
    body.push_str("{\"data\":[");
    for (i, record) in slice.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(record);
    }
    body.push_str("],\"page\":");
    body.push_str(&page.to_string());
    body.push_str(",\"total_pages\":");
    body.push_str(&total_pages.to_string());
    body.push('}');
    Bytes::from(body)
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn records(State(api): State<Arc<Api>>, Query(query): Query<PageQuery>) -> Response {
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(api.per_page);
    if page == 0 || per_page == 0 {
        return (StatusCode::BAD_REQUEST, "page and per_page start at 1\n").into_response();
    }
    if !api.delay.is_zero() {
        tokio::time::sleep(api.delay).await;
    }
    let body = if per_page == api.per_page && page <= api.pages.len() {
        api.pages[page - 1].clone()
    } else {
        render_page(&api.records, page, per_page)
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[tokio::main]
async fn main() {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench_api: {message}");
            std::process::exit(2);
        }
    };
    let api = Arc::new(Api::new(
        options.records,
        options.per_page,
        options.delay_ms,
    ));
    let app = Router::new()
        .route("/records", get(records))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port)))
        .await
        .unwrap_or_else(|e| {
            eprintln!("bench_api: cannot bind 127.0.0.1:{}: {e}", options.port);
            std::process::exit(1);
        });
    let addr = listener.local_addr().expect("bound socket has an address");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}").expect("write to stdout");
    stdout.flush().expect("flush stdout");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("bench_api: server error: {e}");
        std::process::exit(1);
    }
}
