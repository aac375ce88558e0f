//! The receiving side of a source (spec §11): one event POSTed to the listener becomes
//! records committed like a polled page. Verified first, then its body read (JSON or a
//! form), its items selected by `records`, each fetched from the service when `fetch`
//! says so, and handed to the source's extract node; the answer waits for the commit.

mod body;
pub mod verify;

use crate::check::Source;
use crate::nodes::eval::Path;
use crate::nodes::extract::SourceMsg;
use crate::nodes::source::http::{Request, ServiceClient};
use crate::nodes::source::{url_of, Failed};
use crate::stop::Stop;
use http::HeaderMap;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot};

/// How an event is answered: the status, and a short text that holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub message: String,
}

impl Answer {
    fn new(status: u16, message: impl Into<String>) -> Answer {
        Answer {
            status,
            message: message.into(),
        }
    }

    /// Try again later: nothing of the event was stored.
    pub fn unavailable(message: impl Into<String>) -> Answer {
        Answer::new(503, message)
    }
}

/// A receiving source while its unit runs: what the listener hands its events to.
pub struct Receiver {
    pub src: Arc<Source>,
    client: Arc<ServiceClient>,
    /// The extract node's input; weak, so that the unit's end closes it.
    tx: mpsc::WeakSender<SourceMsg>,
    stop: Stop,
    records: Option<Path>,
    /// One lock per fetched URL: two events naming one record are fetched and committed
    /// one after the other, so the key state ends with the later answer.
    fetching: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Receiver {
    pub fn new(
        src: Arc<Source>,
        client: Arc<ServiceClient>,
        tx: &mpsc::Sender<SourceMsg>,
        stop: Stop,
    ) -> Receiver {
        let records = src
            .receive
            .as_ref()
            .and_then(|r| r.records.as_ref())
            .map(Path::compile);
        Receiver {
            src,
            client,
            tx: tx.downgrade(),
            stop,
            records,
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// The largest body this source takes.
    pub fn max_body(&self) -> u64 {
        self.src.receive.as_ref().map_or(0, |r| r.max_body)
    }

    /// Verifies, reads, fetches and commits one event; the answer says how it went.
    pub async fn accept(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let Some(receive) = self.src.receive.as_ref() else {
            return Answer::new(404, "not found");
        };
        if self.stop.is_stopping() {
            return Answer::unavailable("shutting down");
        }
        // Held from here: an event taken before a stop is committed within the grace.
        let Some(tx) = self.tx.upgrade() else {
            return Answer::unavailable("the source is not running");
        };
        let now = chrono::Utc::now().timestamp();
        if let Err(verify::Refused(why)) = verify::verify(&receive.verify, headers, body, now) {
            tracing::warn!(source = %self.src.name, reason = %why, "event refused");
            return Answer::new(401, "verification failed");
        }
        let items = match body::items(headers, body, self.records.as_ref()) {
            Ok(items) => items,
            Err(why) => return Answer::new(400, why),
        };
        let (records, rejected, _locks) = match &receive.fetch {
            None => (items, Vec::new(), Vec::new()),
            Some(path) => match self.fetch_all(path, items).await {
                Ok(fetched) => fetched,
                Err(answer) => return answer,
            },
        };
        self.commit(tx, records, rejected).await
    }

    /// GETs the record each item names; any failure refuses the whole event (503).
    #[allow(clippy::type_complexity)]
    async fn fetch_all(
        &self,
        path: &str,
        items: Vec<Json>,
    ) -> Result<
        (
            Vec<Json>,
            Vec<(String, Json)>,
            Vec<tokio::sync::OwnedMutexGuard<()>>,
        ),
        Answer,
    > {
        let mut records = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        let mut locks = Vec::new();
        for item in items {
            let url = match url_of(path, &self.client, item.as_object(), &[]) {
                Ok(url) => url,
                Err(Failed::Rejected(why)) => {
                    rejected.push((why, item));
                    continue;
                }
                Err(Failed::Error(e)) => return Err(Answer::unavailable(e)),
            };
            let lock = self.lock(url.as_str());
            locks.push(lock.lock_owned().await);
            let req = Request {
                post: false,
                url,
                body: None,
            };
            match self.client.fetch(&req, &self.stop).await {
                Ok(resp) => records.push(resp.body),
                Err(e) => {
                    tracing::warn!(source = %self.src.name, error = %e.message, "an event's record could not be fetched");
                    return Err(Answer::unavailable(format!(
                        "the record could not be fetched: {}",
                        e.message
                    )));
                }
            }
        }
        Ok((records, rejected, locks))
    }

    fn lock(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(url).and_then(Weak::upgrade) {
            return lock;
        }
        // Forget the locks no event holds any more, now and then.
        if map.len() > 1024 {
            map.retain(|_, l| l.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(url.to_string(), Arc::downgrade(&lock));
        lock
    }

    /// Hands the records to the extract node and waits for their commit.
    async fn commit(
        &self,
        tx: mpsc::Sender<SourceMsg>,
        records: Vec<Json>,
        rejected: Vec<(String, Json)>,
    ) -> Answer {
        let (done, committed) = oneshot::channel();
        let msg = SourceMsg::Event {
            items: records,
            rejected,
            done,
        };
        if tx.send(msg).await.is_err() {
            return Answer::unavailable("the source is not running");
        }
        drop(tx);
        match committed.await {
            Ok(true) => Answer::new(200, "committed"),
            Ok(false) => Answer::unavailable("the records could not be committed"),
            Err(_) => Answer::unavailable("the source stopped before the commit"),
        }
    }
}
