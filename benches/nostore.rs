//! Hand-written no-store loop for the peers benchmark (`benches/peers.sh`).
//!
//! The upper bound of the job `benches/bench.hmr` describes: the client half of
//! `benches/baseline.rs` without the store. One reqwest client (one keep-alive connection),
//! pages fetched one after another, the body parsed into typed serde structs that borrow
//! their strings from it, the amount validated as a `rust_decimal::Decimal` and the
//! timestamps as RFC 3339 with chrono, and nothing kept: each validated record is handed to
//! `std::hint::black_box` so that the work cannot be optimised away. Any tool that stores
//! the records does at least this much, so its throughput is measured against this one.
//!
//! Usage: `nostore --url http://127.0.0.1:PORT [--per-page N]`.
//! Prints `records=N seconds=S` when done (N: records fetched and validated).

use std::error::Error;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

const USAGE: &str = "usage: nostore --url http://127.0.0.1:PORT [--per-page N]";

type BoxError = Box<dyn Error + Send + Sync>;

/// One page of the API's answer; every string borrows from the response body.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<Record<'a>>,
    total_pages: u64,
}

#[derive(Deserialize)]
struct Record<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a str,
    status: &'a str,
    seq: i64,
    created_at: &'a str,
    updated_at: &'a str,
    amount: &'a str,
    currency: &'a str,
    #[serde(borrow)]
    customer: Customer<'a>,
    #[serde(borrow)]
    tags: Vec<&'a str>,
}

// Read only through `black_box`, which the dead-code lint does not see.
#[expect(dead_code)]
#[derive(Deserialize)]
struct Customer<'a> {
    id: u64,
    tier: &'a str,
}

/// The validated record, the same values `benches/baseline.rs` stores; built and dropped.
/// Read only through `black_box`, which the dead-code lint does not see.
#[expect(dead_code)]
struct Validated<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a str,
    status: &'a str,
    seq: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    amount: Decimal,
    currency: &'a str,
    customer: &'a Customer<'a>,
    tags: &'a [&'a str],
}

fn datetime(text: &str, field: &str, id: &str) -> Result<DateTime<Utc>, BoxError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("record {id}: {field} `{text}` is not RFC 3339: {e}").into())
}

struct Options {
    url: String,
    per_page: u32,
}

fn parse_args() -> Result<Options, String> {
    let (mut url, mut per_page) = (None, 500);
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
            "--url" => url = Some(value("--url")?),
            "--per-page" => {
                let text = value("--per-page")?;
                per_page = text
                    .parse()
                    .map_err(|_| format!("--per-page: `{text}` is not a number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Options {
        url: url.ok_or_else(|| format!("--url is required\n{USAGE}"))?,
        per_page,
    })
}

async fn run(options: &Options) -> Result<u64, BoxError> {
    // reqwest is built without a default TLS provider; plain http needs none, but
    // building the client wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().build()?;
    let url = format!("{}/records", options.url.trim_end_matches('/'));

    let mut seen = 0u64;
    let mut page = 1u64;
    loop {
        let body = client
            .get(&url)
            .query(&[("page", page), ("per_page", u64::from(options.per_page))])
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let answer: Page<'_> = serde_json::from_slice(&body)?;
        if answer.data.is_empty() {
            break;
        }
        for r in &answer.data {
            let amount = Decimal::from_str(r.amount)
                .map_err(|e| format!("record {}: amount `{}`: {e}", r.id, r.amount))?;
            black_box(Validated {
                id: r.id,
                name: r.name,
                email: r.email,
                status: r.status,
                seq: r.seq,
                created_at: datetime(r.created_at, "created_at", r.id)?,
                updated_at: datetime(r.updated_at, "updated_at", r.id)?,
                amount,
                currency: r.currency,
                customer: &r.customer,
                tags: &r.tags,
            });
        }
        seen += answer.data.len() as u64;
        if page >= answer.total_pages {
            break;
        }
        page += 1;
    }
    Ok(seen)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("nostore: {message}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    match run(&options).await {
        Ok(records) => {
            let seconds = started.elapsed().as_secs_f64();
            println!("records={records} seconds={seconds:.3}");
        }
        Err(e) => {
            eprintln!("nostore: {e}");
            std::process::exit(1);
        }
    }
}
