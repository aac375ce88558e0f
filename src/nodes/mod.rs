//! The node kinds of a running graph, one file each: the HTTP client and paginators of
//! source nodes, record extraction, aggregates, and the sinks.

pub mod aggregate;
pub mod auth;
pub mod cursor_order;
pub mod eval;
pub mod extract;
pub mod net;
pub mod receive;
pub mod record;
pub mod sink;
pub mod source;
pub mod tape;
pub mod value;

/// Runs blocking work (sled, extraction) on tokio's blocking pool, off the async
/// workers; a panic there is the calling task's panic, so its unit reports it.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("blocking work was cancelled: the runtime is shutting down"),
    }
}

/// Runs `f` on this worker when `quick` (work that waits on nothing: see
/// [`crate::state::StateStore::quick`]), else on the blocking pool ([`blocking`]).
pub(crate) async fn here_or_blocking<T: Send + 'static>(
    quick: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    if quick {
        f()
    } else {
        blocking(f).await
    }
}
