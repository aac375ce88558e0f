//! The server side: auth, per-path routes and faults, the request log, and the
//! connection loop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::dataset::{Ctx, Dataset, LinkMods};
use super::faults::{decorate, fault_reply, perform, Action, After, Fault};
use super::http::{self, Logged, Reply};

/// Credentials the API demands of every request (else 401).
#[derive(Clone, Debug)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`
    Bearer(String),
    /// `Authorization: Basic base64(USER:PASSWORD)`
    Basic(String, String),
    /// A header `NAME: VALUE` (name matched case-insensitively).
    Header(String, String),
    /// A query parameter `NAME=VALUE`.
    Query(String, String),
}

impl Auth {
    pub fn accepts(&self, req: &Logged) -> bool {
        match self {
            Auth::Bearer(token) => req
                .header("authorization")
                .and_then(|v| v.split_once(' '))
                .is_some_and(|(s, t)| s.eq_ignore_ascii_case("bearer") && t.trim() == token),
            Auth::Basic(user, pass) => {
                req.basic_credentials().as_deref() == Some(&format!("{user}:{pass}"))
            }
            Auth::Header(name, value) => req.header(name) == Some(value.as_str()),
            Auth::Query(name, value) => req.query_values(name).contains(&value.as_str()),
        }
    }
}

pub(crate) type HandlerFn = dyn Fn(&Logged) -> Reply + Send + Sync;

pub(crate) enum Route {
    Data(Box<Dataset>),
    Fixed(Reply),
    Handler(Arc<HandlerFn>),
}

#[derive(Default)]
pub(crate) struct Faults {
    pub queue: VecDeque<Fault>,
    pub always: Option<Fault>,
}

#[derive(Default)]
pub(crate) struct State {
    pub routes: HashMap<String, Route>,
    pub faults: HashMap<String, Faults>,
    pub hits: HashMap<String, usize>,
    pub last: HashMap<String, Reply>,
    pub log: Vec<Logged>,
    pub auth: Option<Auth>,
}

impl State {
    /// The key a request is filed under: its path as sent if anything is configured
    /// for it, else its decoded path.
    fn key_for(&self, req: &Logged) -> String {
        if self.routes.contains_key(&req.path) || self.faults.contains_key(&req.path) {
            req.path.clone()
        } else {
            req.decoded_path.clone()
        }
    }

    pub fn dataset(&mut self, path: &str) -> &mut Dataset {
        let route = self
            .routes
            .entry(path.to_string())
            .or_insert_with(|| Route::Data(Box::default()));
        if !matches!(route, Route::Data(_)) {
            *route = Route::Data(Box::default());
        }
        match route {
            Route::Data(ds) => ds,
            _ => unreachable!(),
        }
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub base: String,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs the request and decides what it gets.
    fn handle(&self, raw: http::RawRequest) -> Action {
        let mut st = self.lock();
        let req = raw.into_logged(st.log.len() + 1);
        st.log.push(req.clone());
        let key = st.key_for(&req);
        let hit = {
            let h = st.hits.entry(key.clone()).or_default();
            *h += 1;
            *h
        };
        if let Some(Route::Data(ds)) = st.routes.get_mut(&key) {
            ds.apply_pending(hit);
        }
        if let Some(auth) = &st.auth {
            if !auth.accepts(&req) {
                let challenge = match auth {
                    Auth::Basic(..) => "Basic realm=\"test\"",
                    _ => "Bearer",
                };
                return Action::Reply {
                    reply: Reply::error(401, "unauthorized")
                        .with_header("www-authenticate", challenge),
                    delay: None,
                };
            }
        }
        let fault = st
            .faults
            .get_mut(&key)
            .and_then(|f| f.queue.pop_front().or_else(|| f.always.clone()));
        let fault = fault.unwrap_or(Fault::Pass);

        if let Some(reply) = fault_reply(&fault) {
            return Action::Reply { reply, delay: None };
        }
        match fault {
            Fault::Hang(d) => return Action::Hang(d),
            Fault::CloseWithoutAnswer => return Action::Close,
            Fault::Raw(bytes) => return Action::Raw(bytes),
            Fault::Huge(size) => {
                return Action::Huge {
                    size,
                    chunked: false,
                }
            }
            Fault::HugeChunked(size) => {
                return Action::Huge {
                    size,
                    chunked: true,
                }
            }
            _ => {}
        }

        // the normal answer, possibly changed by a modifier fault
        let mods = match &fault {
            Fault::NextLinkToPage(p) => LinkMods {
                next_to_page: Some(*p),
                ..LinkMods::default()
            },
            Fault::RepeatCursor => LinkMods {
                repeat_cursor: true,
                ..LinkMods::default()
            },
            Fault::NextLinkTo(origin) => LinkMods {
                next_origin: Some(origin.clone()),
                ..LinkMods::default()
            },
            _ => LinkMods::default(),
        };
        let strip = match &st.auth {
            Some(Auth::Query(name, _)) => Some(name.clone()),
            _ => None,
        };
        let previous = match fault {
            Fault::SamePageAgain => st.last.get(&key).cloned(),
            _ => None,
        };
        let normal = match previous {
            Some(reply) => reply,
            None => match st.routes.get(&key) {
                None => Reply::error(404, "not found"),
                Some(Route::Fixed(reply)) => reply.clone(),
                Some(Route::Data(ds)) => ds.render(&Ctx {
                    base: &self.base,
                    path: &req.path,
                    query: &req.query,
                    strip: strip.as_deref(),
                    mods,
                }),
                Some(Route::Handler(f)) => {
                    let f = Arc::clone(f);
                    drop(st);
                    let reply = f(&req);
                    st = self.lock();
                    reply
                }
            },
        };
        st.last.insert(key, normal.clone());
        drop(st);

        match fault {
            Fault::ResetMidBody => Action::ResetMidBody(normal),
            Fault::ShortBody => Action::ShortBody(normal),
            Fault::Delay(d) => Action::Reply {
                reply: normal,
                delay: Some(d),
            },
            other => Action::Reply {
                reply: decorate(normal, &other),
                delay: None,
            },
        }
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let raw = match http::read_request(&mut stream, &mut buf).await {
            Ok(Some(raw)) => raw,
            Ok(None) => return,
            Err(_) => {
                let _ =
                    http::write_reply(&mut stream, &Reply::error(400, "bad request"), true).await;
                return;
            }
        };
        let close = raw.wants_close;
        let action = shared.handle(raw);
        match perform(&mut stream, action, close).await {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) | Err(_) => return,
        }
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // dropping this task (TestApi::drop) drops the set, which aborts every connection
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                while connections.try_join_next().is_some() {}
                connections.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
