//! Hand-written no-store loop for the peers benchmark (`benches/peers.sh`).
//!
//! The upper bound of the job `benches/bench.hmr` describes: the client half of
//! `benches/baseline.rs` (`benches/common/bench_client.rs`) without the store. Pages are
//! fetched one after another, parsed into borrowing serde structs and validated, and
//! nothing is kept: each validated record is handed to `std::hint::black_box` so that the
//! work cannot be optimised away. Any tool that stores the records does at least this
//! much, so its throughput is measured against this one.
//!
//! Usage: `nostore --url http://127.0.0.1:PORT [--per-page N]`.
//! Prints `records=N seconds=S` when done (N: records fetched and validated).

#[path = "common/bench_client.rs"]
mod bench_client;

use bench_client::{each_page, main_of, validate, BoxError, Options};
use std::hint::black_box;

const USAGE: &str = "usage: nostore --url http://127.0.0.1:PORT [--per-page N]";

async fn run(options: Options) -> Result<u64, BoxError> {
    each_page(&options, |records| {
        for r in records {
            black_box(validate(r)?);
        }
        Ok(())
    })
    .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    main_of("nostore", USAGE, false, run).await
}
