//! The postgres sink's write speed (`benches/pg_sink.sh`): N records of the throughput
//! benchmark's shape (11 fields, keyed by `id`) written through hamstr's postgres writer
//! in pages of `--batch`, against the same records bulk-loaded with one binary
//! `COPY ... FROM STDIN`, the fastest way into PostgreSQL. A third run writes pages as
//! multi-row `INSERT ... VALUES ... ON CONFLICT` statements: the alternative to the
//! writer's `UNNEST` arrays, measured to choose between them. Every variant starts from
//! the records as the sink receives them (JSON objects) into an empty table with the
//! primary key, and commits once per page (COPY: once).
//!
//! Usage: `pg_sink --url postgres://... [--records N] [--batch N] [--rounds N]`
//! (`--url` defaults to `DATABASE_URL`). Prints records/s per round, the medians and
//! the writer / COPY ratio.

use chrono::{DateTime, Utc};
use hamstr::check::{Schema, Text, Type};
use hamstr::nodes::extract::Emitted;
use hamstr::nodes::sink::postgres::{PgWriter, Table};
use hamstr::nodes::sink::SinkWriter;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type as PgType};
use tokio_postgres::{Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: pg_sink [--url postgres://...] [--records N] [--batch N] [--rounds N] \
     [--only writer|values|copy]";

const FIELDS: [(&str, Type); 11] = [
    ("id", Type::String),
    ("name", Type::String),
    ("email", Type::String),
    ("status", Type::String),
    ("seq", Type::Int),
    ("created_at", Type::Datetime),
    ("updated_at", Type::Datetime),
    ("amount", Type::Decimal),
    ("currency", Type::String),
    ("customer", Type::Json),
    ("tags", Type::Json),
];

#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
    email: String,
    status: String,
    seq: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    amount: String,
    currency: String,
    customer: serde_json::Value,
    tags: serde_json::Value,
}

/// Record `n`: the bench API's shape, with values varied by `n`.
fn record(n: usize) -> Record {
    const FIRST: [&str; 5] = ["Ada", "Grace", "Edsger", "Barbara", "Ken"];
    const LAST: [&str; 5] = ["Lovelace", "Hopper", "Dijkstra", "Liskov", "Thompson"];
    const STATUS: [&str; 4] = ["active", "pending", "suspended", "closed"];
    const CURRENCY: [&str; 5] = ["EUR", "USD", "GBP", "CHF", "JPY"];
    const TAGS: [&str; 4] = ["vip", "new", "b2b", "retail"];
    let created = DateTime::from_timestamp(1_704_067_200 + n as i64 * 150, 0).expect("time");
    let cents = (n * 7919) % 10_000_000;
    Record {
        id: format!("rec-{n:06}"),
        name: format!("{} {}", FIRST[n % 5], LAST[(n / 5) % 5]),
        email: format!("user{n}@example.com"),
        status: STATUS[n % 4].into(),
        seq: n as i64,
        created_at: created,
        updated_at: created + chrono::Duration::seconds((n % 86_400) as i64),
        amount: format!("{}.{:02}", cents / 100, cents % 100),
        currency: CURRENCY[n % 5].into(),
        customer: serde_json::json!({"id": 10_000 + n % 90_000, "tier": "gold"}),
        tags: serde_json::json!(TAGS[..n % 4]),
    }
}

struct Options {
    url: String,
    records: usize,
    batch: usize,
    rounds: usize,
    /// Run only this variant: `writer`, `values` or `copy`.
    only: Option<String>,
}

fn options() -> Result<Options, BoxError> {
    let mut o = Options {
        url: std::env::var("DATABASE_URL").unwrap_or_default(),
        records: 100_000,
        batch: 500,
        rounds: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--url" => o.url = value()?,
            "--records" => o.records = value()?.parse()?,
            "--batch" => o.batch = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--only" => o.only = Some(value()?),
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
        }
    }
    if o.url.is_empty() {
        return Err(format!("no database: set DATABASE_URL or pass --url\n{USAGE}").into());
    }
    Ok(o)
}

fn schema() -> Schema {
    Schema {
        fields: FIELDS
            .iter()
            .map(|(n, t)| (n.to_string(), *t, false))
            .collect(),
        key: vec!["id".into()],
    }
}

async fn connect(url: &str) -> Result<Client, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Drops and creates `name` as the writer would create it.
async fn fresh_table(client: &Client, name: &str) -> Result<(), BoxError> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{name}\"; {}",
            Table::new(name, &schema()).create_sql()
        ))
        .await?;
    Ok(())
}

/// hamstr's writer, one `write` per page.
async fn via_writer(o: &Options, names: &[String], pages: &[Emitted]) -> Result<f64, BoxError> {
    let client = connect(&o.url).await?;
    client
        .batch_execute("DROP TABLE IF EXISTS bench_writer")
        .await?;
    let mut w = PgWriter::new(
        "bench",
        &Text::plain(o.url.clone()),
        "bench_writer",
        o.batch as u32,
        &schema(),
    )?;
    let start = Instant::now();
    for page in pages.chunks(o.batch) {
        let page = std::sync::Arc::new(page.to_vec());
        w.write("bench", names, &page).await?;
    }
    let secs = start.elapsed().as_secs_f64();
    check_count(&client, "bench_writer", pages.len()).await?;
    Ok(secs)
}

/// One binary COPY of every record, parsed from the same JSON.
async fn via_copy(o: &Options, pages: &[Emitted]) -> Result<f64, BoxError> {
    let mut client = connect(&o.url).await?;
    fresh_table(&client, "bench_copy").await?;
    let types = [
        PgType::TEXT,
        PgType::TEXT,
        PgType::TEXT,
        PgType::TEXT,
        PgType::INT8,
        PgType::TIMESTAMPTZ,
        PgType::TIMESTAMPTZ,
        PgType::NUMERIC,
        PgType::TEXT,
        PgType::JSONB,
        PgType::JSONB,
    ];
    let start = Instant::now();
    let tx = client.transaction().await?;
    let sink = tx
        .copy_in("COPY bench_copy FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    for e in pages {
        let r: Record = serde_json::from_slice(&e.json)?;
        let amount = Decimal::from_str(&r.amount)?;
        let row: [&(dyn ToSql + Sync); 11] = [
            &r.id,
            &r.name,
            &r.email,
            &r.status,
            &r.seq,
            &r.created_at,
            &r.updated_at,
            &amount,
            &r.currency,
            &r.customer,
            &r.tags,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    let secs = start.elapsed().as_secs_f64();
    check_count(&client, "bench_copy", pages.len()).await?;
    Ok(secs)
}

/// Multi-row `INSERT ... VALUES (...), (...) ON CONFLICT` per page, a transaction each.
async fn via_values(o: &Options, pages: &[Emitted]) -> Result<f64, BoxError> {
    let mut client = connect(&o.url).await?;
    fresh_table(&client, "bench_values").await?;
    let cols = FIELDS.len();
    let statement = |rows: usize| {
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let updates: Vec<String> = FIELDS[1..]
            .iter()
            .map(|(n, _)| format!("\"{n}\" = EXCLUDED.\"{n}\""))
            .collect();
        format!(
            "INSERT INTO bench_values VALUES {} ON CONFLICT (\"id\") DO UPDATE SET {}",
            tuples.join(", "),
            updates.join(", ")
        )
    };
    let full = client.prepare(&statement(o.batch)).await?;
    let start = Instant::now();
    for page in pages.chunks(o.batch) {
        let parsed: Vec<(Record, Decimal)> = page
            .iter()
            .map(|e| {
                let r: Record = serde_json::from_slice(&e.json)?;
                let d = Decimal::from_str(&r.amount)?;
                Ok((r, d))
            })
            .collect::<Result<_, BoxError>>()?;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(page.len() * cols);
        for (r, amount) in &parsed {
            params.extend_from_slice(&[
                &r.id as &(dyn ToSql + Sync),
                &r.name,
                &r.email,
                &r.status,
                &r.seq,
                &r.created_at,
                &r.updated_at,
                amount,
                &r.currency,
                &r.customer,
                &r.tags,
            ]);
        }
        let tx = client.transaction().await?;
        if page.len() == o.batch {
            tx.execute(&full, &params).await?;
        } else {
            tx.execute(statement(page.len()).as_str(), &params).await?;
        }
        tx.commit().await?;
    }
    let secs = start.elapsed().as_secs_f64();
    check_count(&client, "bench_values", pages.len()).await?;
    Ok(secs)
}

async fn check_count(client: &Client, table: &str, n: usize) -> Result<(), BoxError> {
    let row = client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await?;
    let got: i64 = row.get(0);
    if got as usize != n {
        return Err(format!("{table} holds {got} rows, expected {n}").into());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

async fn bench(o: Options) -> Result<(), BoxError> {
    let names: Vec<String> = FIELDS.iter().map(|(n, _)| n.to_string()).collect();
    let records: Vec<Emitted> = (1..=o.records)
        .map(|n| {
            let r = record(n);
            Emitted {
                key: Some(r.id.clone().into_bytes()),
                json: serde_json::to_vec(&r).expect("serialise").into(),
            }
        })
        .collect();
    println!(
        "pg_sink: {} records, pages of {}, {} round(s)",
        o.records, o.batch, o.rounds
    );
    let runs = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    let (mut w, mut v, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=o.rounds {
        let rate = |secs: f64| o.records as f64 / secs;
        let mut line = format!("round {round}:");
        if runs("writer") {
            w.push(rate(via_writer(&o, &names, &records).await?));
            line.push_str(&format!("  writer (UNNEST) {:>7.0}/s", w[w.len() - 1]));
        }
        if runs("values") {
            v.push(rate(via_values(&o, &records).await?));
            line.push_str(&format!("  multi-row VALUES {:>7.0}/s", v[v.len() - 1]));
        }
        if runs("copy") {
            c.push(rate(via_copy(&o, &records).await?));
            line.push_str(&format!("  COPY {:>7.0}/s", c[c.len() - 1]));
        }
        println!("{line}");
    }
    let (w, v, c) = (median(w), median(v), median(c));
    for (what, rate) in [
        ("writer (UNNEST upsert)", w),
        ("multi-row VALUES upsert", v),
        ("COPY FROM STDIN (binary)", c),
    ] {
        if rate > 0.0 {
            println!("{what:<25} median {rate:>8.0} records/s");
        }
    }
    if w > 0.0 && c > 0.0 {
        println!("ratio: writer / COPY = {:.1} %", 100.0 * w / c);
    }
    if w > 0.0 && v > 0.0 {
        println!("ratio: writer / VALUES = {:.1} %", 100.0 * w / v);
    }
    let client = connect(&o.url).await?;
    client
        .batch_execute("DROP TABLE IF EXISTS bench_writer, bench_values, bench_copy")
        .await?;
    Ok(())
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pg_sink: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(bench(o)) {
        eprintln!("pg_sink: {e}");
        std::process::exit(1);
    }
}
