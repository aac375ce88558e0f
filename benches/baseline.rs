//! Hand-written baseline client for the throughput benchmark (`benches/throughput.sh`).
//!
//! This is the program a careful person would write for the job `benches/bench.hmr`
//! describes, without a DSL: one reqwest client (one keep-alive connection), pages fetched
//! one after another, the body parsed into typed serde structs that borrow their strings
//! from it, the amount validated as a `rust_decimal::Decimal` and the timestamps as RFC 3339
//! with chrono, each record re-serialised as JSON from a typed struct into one `sled::Batch`
//! per page keyed by `id`, sled opened with a 16 MiB cache, and one `flush()` at the end.
//!
//! The client half is shared with `benches/nostore.rs` (`benches/common/bench_client.rs`).
//!
//! Usage: `baseline --url http://127.0.0.1:PORT --db DIR [--per-page N]`.
//! Prints `records=N seconds=S` when done.

#[path = "common/bench_client.rs"]
mod bench_client;

use bench_client::{each_page, main_of, validate, BoxError, Options};

const USAGE: &str = "usage: baseline --url http://127.0.0.1:PORT --db DIR [--per-page N]";

async fn run(options: Options) -> Result<u64, BoxError> {
    let db = sled::Config::new()
        .path(options.db.as_deref().unwrap_or_default())
        .cache_capacity(16 * 1024 * 1024)
        .open()?;
    let tree = db.open_tree("records")?;
    let mut json = Vec::with_capacity(1024);
    let stored = each_page(&options, |records| {
        let mut batch = sled::Batch::default();
        for r in records {
            json.clear();
            serde_json::to_writer(&mut json, &validate(r)?)?;
            batch.insert(r.id.as_bytes(), json.as_slice());
        }
        tree.apply_batch(batch)?;
        Ok(())
    })
    .await?;
    db.flush()?;
    Ok(stored)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    main_of("baseline", USAGE, true, run).await
}
