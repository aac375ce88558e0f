//! A few PostgreSQL connections on a runtime of their own. The state store's trait is
//! synchronous and is called from async workers and blocking threads alike; the
//! connections' own thread answers both without ever nesting one runtime in another.
//! The URL is read as libpq reads it, TLS included (`sslmode`, `sslrootcert`, through
//! [`crate::pg_tls`]), and no error shows its password.

use crate::masking::Masker;
use crate::pg_tls::{self, Tls};
use crate::state::{Result, StateError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config};

/// How many connections one instance keeps: a unit's commits, key lookups, the sinks'
/// queues and the lease loop each find one free most of the time.
const CONNECTIONS: usize = 4;

/// How long a connection attempt may take when the URL's `connect_timeout` does not say:
/// an unreachable server is an error, not a wait without end.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Work given a connection: a future borrowing it.
pub type Job<T> = Box<
    dyn for<'c> FnOnce(&'c mut Client) -> Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>
        + Send,
>;

/// The connections and the thread that drives them.
pub struct Pool {
    config: Config,
    /// How the connections are encrypted; the connector is built for each connection,
    /// so a CA file fixed meanwhile is read again.
    tls: Tls,
    /// The URL as it may be shown, and what hides its password in any error text.
    shown: String,
    masker: Masker,
    clients: Arc<Vec<Mutex<Option<Client>>>>,
    next: AtomicUsize,
    handle: tokio::runtime::Handle,
    /// Dropped with the pool: the thread's runtime ends.
    _done: tokio::sync::oneshot::Sender<()>,
}

impl Pool {
    /// Parses `url` and connects once, so a wrong URL, an unreachable server or a
    /// refused certificate is an error before anything runs. With `stalled`, the server
    /// ends a session whose transaction waits that long for its client: an instance
    /// stopped in the middle of a commit (`SIGSTOP`, a frozen VM) would otherwise keep its
    /// unit's row locked, and the claims of the others (`SKIP LOCKED`) would pass that
    /// unit by for as long.
    pub fn connect(url: &str, stalled: Option<std::time::Duration>) -> Result<Pool> {
        let (shown, masker) = pg_tls::mask_for(url);
        let pg_tls::Target { mut config, tls } = pg_tls::parse(url)
            .map_err(|why| StateError::Io(format!("the cluster database URL {shown} {why}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hamstr");
        }
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
            tls,
            shown,
            masker,
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
        let (tls, shown, masker) = (self.tls.clone(), self.shown.clone(), self.masker.clone());
        async move {
            let mut slot = clients[at].lock().await;
            if slot.as_ref().is_none_or(|c| c.is_closed()) {
                let cannot = |why: String| {
                    StateError::Io(masker.mask(&format!(
                        "cannot connect to the cluster database {shown}: {why}"
                    )))
                };
                let connector = tls.connector().map_err(cannot)?;
                let (client, connection) = config
                    .connect(connector)
                    .await
                    .map_err(|e| cannot(pg_tls::error_text(&e)))?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        let e = masker.mask(&pg_tls::error_text(&e));
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
