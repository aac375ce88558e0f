//! Recorded HTTP exchanges (spec §16): `run --record DIR` writes every exchange of the
//! services as one readable JSON file, secrets masked; `run --replay DIR` answers the
//! requests from those files in order, with no network; `hamstr try` watches them in
//! memory. [`crate::nodes::net::send`] is the one place a service's request leaves, and
//! the one place a [`Tape`] sits.

mod exchange;

pub use exchange::{Answered, Asked, Body, Exchange, Headers};

use crate::masking::Masker;
use crate::nodes::net::{api_text, error_chain, SHOWN};
use exchange::{asked, file_name, same_request, shown_headers};
use reqwest::header::HeaderMap;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Why a request sent through [`crate::nodes::net::send`] got no answer.
#[derive(Debug)]
pub enum SendError {
    /// The network failed (worth retrying).
    Http(reqwest::Error),
    /// A failure of the network that was recorded (and is replayed now), or a body cut
    /// short while recording: worth retrying. The text holds no secret.
    Failed(String),
    /// The recording has no answer for this request, or cannot be written: the request
    /// fails for good. The text holds no secret.
    Fatal(String),
}

/// Where exchanges go or come from.
pub struct Tape {
    mode: Mode,
}

enum Mode {
    Record { dir: PathBuf, next: AtomicU64 },
    Replay(Player),
    Watch(Mutex<Vec<Exchange>>),
}

struct Player {
    dir: PathBuf,
    exchanges: Vec<Exchange>,
    used: Mutex<Vec<bool>>,
}

impl Tape {
    /// Records into `dir`, which is created (readable by its user only) when missing and
    /// must not already hold a recording: two runs' exchanges in one folder would replay
    /// as neither.
    pub fn record(dir: &Path) -> Result<Tape, String> {
        let shown = dir.display();
        if dir.exists() {
            if !dir.is_dir() {
                return Err(format!("cannot record into `{shown}`: it is not a folder"));
            }
            if !exchange_files(dir)?.is_empty() {
                return Err(format!(
                    "`{shown}` already holds a recording: remove it or record into another folder"
                ));
            }
        } else {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| format!("cannot create `{shown}`: {e}"))?;
        }
        Ok(Tape {
            mode: Mode::Record {
                dir: dir.to_path_buf(),
                next: AtomicU64::new(1),
            },
        })
    }

    /// Replays the recording in `dir`.
    pub fn replay(dir: &Path) -> Result<Tape, String> {
        let files = exchange_files(dir)?;
        if files.is_empty() {
            return Err(format!(
                "`{}` holds no recorded exchange (record one with `hamstr run FILE --record DIR`)",
                dir.display()
            ));
        }
        let mut exchanges = Vec::with_capacity(files.len());
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            let exchange: Exchange = serde_json::from_str(&text)
                .map_err(|e| format!("`{}` is not a recorded exchange: {e}", file.display()))?;
            exchanges.push(exchange);
        }
        let used = Mutex::new(vec![false; exchanges.len()]);
        Ok(Tape {
            mode: Mode::Replay(Player {
                dir: dir.to_path_buf(),
                exchanges,
                used,
            }),
        })
    }

    /// Keeps every exchange in memory (without bodies) for [`Tape::take_watched`].
    pub fn watch() -> Tape {
        Tape {
            mode: Mode::Watch(Mutex::new(Vec::new())),
        }
    }

    /// The exchanges watched since the last call, in order.
    pub fn take_watched(&self) -> Vec<Exchange> {
        match &self.mode {
            Mode::Watch(seen) => {
                std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()))
            }
            _ => Vec::new(),
        }
    }

    /// Sends `request` (recording or watching the exchange), or answers it from the
    /// recording. `max_body`: the most of an answer's body that is read while recording;
    /// one byte more is kept, so that the answer is refused as too large on replay too.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        request: reqwest::Request,
        masker: &Masker,
        max_body: u64,
    ) -> Result<reqwest::Response, SendError> {
        let asked = asked(&request, masker);
        match &self.mode {
            Mode::Replay(player) => player.answer(&asked),
            Mode::Watch(seen) => {
                let started = Instant::now();
                let sent = http.execute(request).await;
                let mut exchange = Exchange {
                    request: asked,
                    response: None,
                    error: None,
                    elapsed_ms: millis(started),
                };
                match &sent {
                    Ok(resp) => {
                        exchange.response = Some(Answered {
                            status: resp.status().as_u16(),
                            headers: shown_headers(resp.headers(), masker),
                            body: Body::default(),
                        })
                    }
                    Err(e) => exchange.error = Some(failure_text(e, masker)),
                }
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(exchange);
                sent.map_err(SendError::Http)
            }
            Mode::Record { dir, next } => {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let file = dir.join(file_name(n, &asked));
                let started = Instant::now();
                let mut exchange = Exchange {
                    request: asked,
                    response: None,
                    error: None,
                    elapsed_ms: 0,
                };
                let answered = match http.execute(request).await {
                    Ok(resp) => read_whole(resp, max_body, masker).await,
                    Err(e) => {
                        let text = failure_text(&e, masker);
                        Err((SendError::Http(e), text))
                    }
                };
                exchange.elapsed_ms = millis(started);
                let result = match answered {
                    Ok((resp, bytes)) => {
                        exchange.response = Some(Answered {
                            status: resp.status().as_u16(),
                            headers: shown_headers(resp.headers(), masker),
                            body: Body::of(&bytes, masker),
                        });
                        rebuilt(resp.status(), resp.headers(), bytes)
                    }
                    Err((e, text)) => {
                        exchange.error = Some(text);
                        Err(e)
                    }
                };
                write_exchange(&file, &exchange).await?;
                result
            }
        }
    }
}

impl Player {
    /// The first exchange not yet replayed whose request is this one.
    fn answer(&self, asked: &Asked) -> Result<reqwest::Response, SendError> {
        let found = {
            let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            let at = self.exchanges.iter().enumerate().position(|(i, x)| {
                !used.get(i).copied().unwrap_or(true) && same_request(&x.request, asked)
            });
            if let Some(i) = at {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
            }
            at.and_then(|i| self.exchanges.get(i))
        };
        let Some(exchange) = found else {
            let before = self
                .exchanges
                .iter()
                .filter(|x| same_request(&x.request, asked))
                .count();
            let why = if before == 0 {
                "no recorded exchange answers".to_string()
            } else {
                format!("the {before} recorded answer(s) to this request were all replayed already, none is left for")
            };
            return Err(SendError::Fatal(format!(
                "replay: {why} {} {} (recording `{}`)",
                asked.method,
                api_text(&asked.url, 2 * SHOWN),
                self.dir.display()
            )));
        };
        if let Some(error) = &exchange.error {
            return Err(SendError::Failed(format!("{error} (replayed)")));
        }
        let Some(answer) = &exchange.response else {
            return Err(SendError::Fatal(format!(
                "replay: the recorded exchange for {} {} has neither a response nor an error",
                asked.method,
                api_text(&asked.url, 2 * SHOWN)
            )));
        };
        let status = reqwest::StatusCode::from_u16(answer.status).map_err(|_| {
            SendError::Fatal(format!(
                "replay: the recorded status {} is not an HTTP status",
                answer.status
            ))
        })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &answer.headers {
            let values = match v {
                Json::Array(vs) => vs.iter().filter_map(Json::as_str).collect(),
                other => other.as_str().into_iter().collect::<Vec<_>>(),
            };
            for v in values {
                if let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                    reqwest::header::HeaderValue::from_str(v),
                ) {
                    headers.append(name, value);
                }
            }
        }
        let body = answer.body.bytes().map_err(|e| {
            SendError::Fatal(format!(
                "replay: the recorded body for {}: {e}",
                api_text(&asked.url, 2 * SHOWN)
            ))
        })?;
        rebuilt(status, &headers, body)
    }
}

/// An answer read whole (at most `max_body` + 1 bytes of its body) to be recorded.
async fn read_whole(
    mut resp: reqwest::Response,
    max_body: u64,
    masker: &Masker,
) -> Result<(reqwest::Response, Vec<u8>), (SendError, String)> {
    let mut bytes = Vec::new();
    let cap = max_body.saturating_add(1);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 >= cap {
                    bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
                    return Ok((resp, bytes));
                }
            }
            Ok(None) => return Ok((resp, bytes)),
            Err(e) => {
                let text = format!("the body was cut short: {}", failure_text(&e, masker));
                return Err((SendError::Failed(text.clone()), text));
            }
        }
    }
}

/// A response to hand on, built from a status, headers and a whole body.
fn rebuilt(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<reqwest::Response, SendError> {
    let mut builder = http::Response::builder().status(status);
    for (k, v) in headers {
        // The body is whole (and may be re-serialised): its length is its own.
        if k == reqwest::header::CONTENT_LENGTH || k == reqwest::header::TRANSFER_ENCODING {
            continue;
        }
        builder = builder.header(k, v);
    }
    builder
        .body(body)
        .map(reqwest::Response::from)
        .map_err(|e| SendError::Fatal(format!("cannot rebuild a recorded answer: {e}")))
}

async fn write_exchange(file: &Path, exchange: &Exchange) -> Result<(), SendError> {
    let cannot = |e: String| SendError::Fatal(format!("cannot write `{}`: {e}", file.display()));
    let text = serde_json::to_vec_pretty(exchange).map_err(|e| cannot(e.to_string()))?;
    let file_owned = file.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file_owned)?;
        f.write_all(&text)?;
        f.write_all(b"\n")
    })
    .await
    .map_err(|e| cannot(e.to_string()))?
    .map_err(|e| cannot(e.to_string()))
}

/// The exchange files of a recording, in their order (the number their name starts with).
fn exchange_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let n = name.split('-').next()?.parse::<u64>().ok()?;
            Some((n, p))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// A network error's text with secrets masked, filtered like any text from outside.
fn failure_text(e: &reqwest::Error, masker: &Masker) -> String {
    let kind = if e.is_timeout() {
        "timed out: "
    } else if e.is_connect() {
        "could not connect: "
    } else {
        ""
    };
    format!(
        "{kind}{}",
        api_text(&masker.mask(&error_chain(e)), 2 * SHOWN)
    )
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
