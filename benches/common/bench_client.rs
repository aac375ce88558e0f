//! The client half of the hand-written benchmark programs (`benches/baseline.rs`, which
//! stores the records in sled, and `benches/nostore.rs`, which stores nothing): their
//! arguments, one reqwest client (one keep-alive connection) fetching the pages of
//! `benches/bench_api.rs` one after another, each body parsed into typed serde structs
//! that borrow their strings from it, and each record validated (the amount as a
//! `rust_decimal::Decimal`, the timestamps as RFC 3339 with chrono).

use std::error::Error;
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// One page of the API's answer; every string borrows from the response body.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<Record<'a>>,
    total_pages: u64,
}

#[derive(Deserialize)]
pub struct Record<'a> {
    pub id: &'a str,
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

#[derive(Deserialize, Serialize)]
pub struct Customer<'a> {
    id: u64,
    tier: &'a str,
}

/// The validated record, written as JSON (decimal as an exact string, timestamps as
/// RFC 3339 UTC) the same shape hamstr stores.
#[derive(Serialize)]
pub struct Validated<'a> {
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

/// A record's values, validated.
pub fn validate<'a>(r: &'a Record<'a>) -> Result<Validated<'a>, BoxError> {
    let amount = Decimal::from_str(r.amount)
        .map_err(|e| format!("record {}: amount `{}`: {e}", r.id, r.amount))?;
    Ok(Validated {
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
    })
}

pub struct Options {
    pub url: String,
    /// `--db DIR`, for a program that takes one.
    #[allow(dead_code, reason = "`nostore` takes no --db")]
    pub db: Option<String>,
    pub per_page: u32,
}

/// The arguments: `--url` (required), `--per-page N`, and `--db DIR` when `with_db`
/// (then required); `usage` is printed with an error or for `--help`.
pub fn parse_args(usage: &str, with_db: bool) -> Result<Options, String> {
    let (mut url, mut db, mut per_page) = (None, None, 500);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench` to harness-less benches; ignore it.
        if arg == "--bench" {
            continue;
        }
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--db" if with_db => db = Some(value("--db")?),
            "--per-page" => {
                let text = value("--per-page")?;
                per_page = text
                    .parse()
                    .map_err(|_| format!("--per-page: `{text}` is not a number"))?;
            }
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{usage}")),
        }
    }
    if with_db && db.is_none() {
        return Err(format!("--db is required\n{usage}"));
    }
    Ok(Options {
        url: url.ok_or_else(|| format!("--url is required\n{usage}"))?,
        db,
        per_page,
    })
}

/// Fetches every page and hands its records to `page`; returns how many there were.
pub async fn each_page(
    options: &Options,
    mut page: impl FnMut(&[Record<'_>]) -> Result<(), BoxError>,
) -> Result<u64, BoxError> {
    // reqwest is built without a default TLS provider; plain http needs none, but
    // building the client wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().build()?;
    let url = format!("{}/records", options.url.trim_end_matches('/'));
    let mut seen = 0u64;
    let mut number = 1u64;
    loop {
        let body = client
            .get(&url)
            .query(&[("page", number), ("per_page", u64::from(options.per_page))])
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let answer: Page<'_> = serde_json::from_slice(&body)?;
        if answer.data.is_empty() {
            break;
        }
        page(&answer.data)?;
        seen += answer.data.len() as u64;
        if number >= answer.total_pages {
            break;
        }
        number += 1;
    }
    Ok(seen)
}

/// Runs a program: its arguments, then `run`, timed; prints `records=N seconds=S`.
/// Exits 2 on bad arguments and 1 when the run fails, with `name` before the message.
pub async fn main_of<F, Fut>(name: &str, usage: &str, with_db: bool, run: F)
where
    F: FnOnce(Options) -> Fut,
    Fut: std::future::Future<Output = Result<u64, BoxError>>,
{
    let options = match parse_args(usage, with_db) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    match run(options).await {
        Ok(records) => {
            let seconds = started.elapsed().as_secs_f64();
            println!("records={records} seconds={seconds:.3}");
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}
