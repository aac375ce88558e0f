//! A few PostgreSQL connections on a runtime of their own. The state store's trait is
//! synchronous and is called from async workers and blocking threads alike; the
//! connections' own thread answers both without ever nesting one runtime in another.

use crate::state::{Result, StateError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

/// How many connections one instance keeps: a unit's commits, key lookups, the sinks'
/// queues and the lease loop each find one free most of the time.
const CONNECTIONS: usize = 4;

/// Work given a connection: a future borrowing it.
pub type Job<T> = Box<
    dyn for<'c> FnOnce(&'c mut Client) -> Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>
        + Send,
>;

/// The connections and the thread that drives them.
pub struct Pool {
    config: Config,
    clients: Arc<Vec<Mutex<Option<Client>>>>,
    next: AtomicUsize,
    handle: tokio::runtime::Handle,
    /// Dropped with the pool: the thread's runtime ends.
    _done: tokio::sync::oneshot::Sender<()>,
}

impl Pool {
    /// Parses `url` and connects once, so a wrong URL or an unreachable server is an
    /// error before anything runs. With `stalled`, the server ends a session whose
    /// transaction waits that long for its client: an instance stopped in the middle of
    /// a commit (`SIGSTOP`, a frozen VM) would otherwise keep its unit's row locked, and
    /// the claims of the others (`SKIP LOCKED`) would pass that unit by for as long.
    pub fn connect(url: &str, stalled: Option<std::time::Duration>) -> Result<Pool> {
        let mut config: Config = url.parse().map_err(|e| StateError::Open {
            path: super::shown(url),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        if let Some(d) = stalled {
            let option = format!(
                "-c idle_in_transaction_session_timeout={}",
                d.as_millis().max(1)
            );
            let options = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} {option}"),
                _ => option,
            };
            config.options(&options);
        }
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("hamstr-pg".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("hamstr-pg")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = done_rx.await;
                });
                rt.shutdown_background();
            })
            .map_err(|e| StateError::Io(format!("cannot start the database thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|e| StateError::Io(e.to_string()))?
            .map_err(StateError::Io)?;
        let clients = Arc::new((0..CONNECTIONS).map(|_| Mutex::new(None)).collect());
        let pool = Pool {
            config,
            clients,
            next: AtomicUsize::new(0),
            handle,
            _done: done,
        };
        pool.run(Box::new(|c| {
            Box::pin(async move { c.simple_query("SELECT 1").await.map(drop).map_err(db) })
        }))?;
        Ok(pool)
    }

    /// The database the pool connects to, as sinks name theirs.
    pub fn database(&self) -> String {
        crate::check::postgres_url::database_key(&self.config)
    }

    /// Runs `job` on a connection and waits for it (from any thread).
    pub fn run<T: Send + 'static>(&self, job: Job<T>) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let work = self.work(job);
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .map_err(|_| StateError::Io("the database thread stopped".into()))?
    }

    /// Runs `job` on a connection, awaited from another runtime.
    pub async fn run_async<T: Send + 'static>(&self, job: Job<T>) -> Result<T> {
        let work = self.work(job);
        self.handle
            .spawn(work)
            .await
            .map_err(|_| StateError::Io("the database thread stopped".into()))?
    }

    fn work<T: Send + 'static>(
        &self,
        job: Job<T>,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS;
        let (clients, config) = (self.clients.clone(), self.config.clone());
        async move {
            let mut slot = clients[at].lock().await;
            if slot.as_ref().is_none_or(|c| c.is_closed()) {
                let (client, connection) = config.connect(NoTls).await.map_err(db)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "the cluster database connection ended");
                    }
                });
                *slot = Some(client);
            }
            let client = slot.as_mut().expect("connected above");
            job(client).await
        }
    }
}

/// A database error as a state error, with PostgreSQL's own message when it has one.
pub fn db(e: tokio_postgres::Error) -> StateError {
    match e.as_db_error() {
        Some(d) => StateError::Io(format!("the cluster database: {}", d.message())),
        None => StateError::Io(format!("the cluster database: {e}")),
    }
}
