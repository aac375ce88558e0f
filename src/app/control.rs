//! While `hamstr run` holds a data directory, `dump` and `state` ask it over a Unix
//! socket instead of opening the store (which the run has locked): one request line,
//! then the answer as JSON lines, a piece at a time as it is rendered, so that a large
//! dump is never held whole on either side.
//!
//! Only the user running hamstr asks and answers: each end checks the other's uid. The
//! socket (0600) is `control.sock` in the data directory; when that path is too long for
//! a socket address, it lives in a private folder (0700, a random name, made
//! exclusively) in the temporary folder, whose path the data directory records: a name
//! derived from the data directory could be taken first by another user. Socket, folder
//! and record go when the run ends.

use super::Error;
use std::path::{Path, PathBuf};

/// A question to the running process.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Request {
    Dump {
        name: String,
        rejected: bool,
        csv: bool,
    },
    State,
}

/// Answers a request, writing the answer to the stream it is given as it goes.
pub type Answer = dyn Fn(Request, &mut dyn std::io::Write) -> Result<(), Error> + Send + Sync;

/// One line of an answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Frame {
    /// The next part of the answer's text.
    Out(String),
    /// The answer is complete.
    Done,
    /// The answer stops here: the error the run met.
    Failed(String),
}

/// The file in the data directory that records where the socket is when it cannot be
/// inside.
const RECORD: &str = "control.path";

/// The text of one [`Frame::Out`], in bytes.
const PIECE: usize = 64 * 1024;

/// `control.sock` in the data directory, when its path fits a socket address (about
/// 100 bytes). Decided on the full path, so `run` and `dump` agree however each names
/// the folder.
fn socket_inside(data_dir: &Path) -> Option<PathBuf> {
    const SOCKET_PATH_MAX: usize = 100;
    let full = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let inside = full.join("control.sock");
    (inside.as_os_str().len() < SOCKET_PATH_MAX).then_some(inside)
}

#[cfg(unix)]
pub use unix::{ask, serve, serving, Reached};

#[cfg(unix)]
mod unix {
    use super::{socket_inside, Answer, Frame, Request, PIECE, RECORD};
    use crate::app::Error;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    /// The longest request line the run reads.
    const MAX_REQUEST: u64 = 64 * 1024;
    /// Requests answered at once; one more is told the run is busy.
    const MAX_CONNECTIONS: usize = 8;
    /// How long the run waits for a request line, and for the asker to take a piece.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
    /// How long the asker waits for the next piece (a dump renders as it reads).
    const READ_TIMEOUT: Duration = Duration::from_secs(60);
    /// The longest line the asker reads: a piece of text escaped as JSON.
    const MAX_LINE: u64 = 8 * PIECE as u64;

    /// The run's socket, served until this is dropped; then the socket (and the private
    /// folder and record of a socket outside the data directory) is removed.
    pub struct Serving {
        task: Option<tokio::task::JoinHandle<()>>,
        socket: PathBuf,
        /// The private folder the socket is in, and the data directory's record of it.
        outside: Option<(PathBuf, PathBuf)>,
    }

    impl Drop for Serving {
        fn drop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
            }
            let _ = std::fs::remove_file(&self.socket);
            if let Some((folder, record)) = &self.outside {
                let _ = std::fs::remove_dir(folder);
                let _ = std::fs::remove_file(record);
            }
        }
    }

    /// Answers requests (on blocking threads, `answer` reading the store the run holds)
    /// until the returned [`Serving`] is dropped. Called with the store's lock held, so
    /// a socket file found at the path is a killed run's.
    pub fn serve(data_dir: &Path, answer: Arc<Answer>) -> Result<Serving, Error> {
        let io = |what: &str, path: &Path| {
            let what = format!("{what} `{}`", path.display());
            move |e: std::io::Error| Error::Io(format!("{what}: {e}"))
        };
        let mut serving = match socket_inside(data_dir) {
            Some(socket) => {
                let _ = std::fs::remove_file(&socket);
                Serving {
                    task: None,
                    socket,
                    outside: None,
                }
            }
            None => {
                let record = data_dir.join(RECORD);
                remove_recorded(&record);
                // mkdtemp: a new folder with a random name, 0700, made exclusively; no
                // other user can have put anything there.
                let folder = tempfile::Builder::new()
                    .prefix("hamstr-")
                    .tempdir()
                    .map_err(io("cannot make a private folder in", &std::env::temp_dir()))?
                    .keep();
                let socket = folder.join("control.sock");
                let serving = Serving {
                    task: None,
                    socket,
                    outside: Some((folder, record.clone())),
                };
                std::fs::write(&record, serving.socket.as_os_str().as_encoded_bytes())
                    .map_err(io("cannot write", &record))?;
                serving
            }
        };
        let path = serving.socket.clone();
        let listener =
            tokio::net::UnixListener::bind(&path).map_err(io("cannot listen on", &path))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("cannot make private", &path))?;
        }
        serving.task = Some(tokio::spawn(accept(listener, answer)));
        Ok(serving)
    }

    /// Removes the private folder a killed run left, as recorded in the data directory;
    /// only a folder of ours, with nothing but a socket in it.
    fn remove_recorded(record: &Path) {
        let Ok(bytes) = std::fs::read(record) else {
            return;
        };
        let socket = recorded_path(&bytes);
        let Some(folder) = socket.parent() else {
            return;
        };
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ours = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == my_uid());
        let is_socket = std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
        if ours(folder) && ours(&socket) && is_socket {
            let _ = std::fs::remove_file(&socket);
            let _ = std::fs::remove_dir(folder);
        }
    }

    /// Accepts connections until aborted. A failed accept (no file descriptors left,
    /// say) is waited out, a little longer each time, never the end of the server.
    async fn accept(listener: tokio::net::UnixListener, answer: Arc<Answer>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let mut pause = Duration::ZERO;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if pause.is_zero() {
                        tracing::warn!(error = %e, "control socket: accept failed; trying again");
                    }
                    pause = (pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            pause = Duration::ZERO;
            match peer_uid(&stream) {
                Ok(uid) if uid == my_uid() => {}
                Ok(uid) => {
                    tracing::warn!(uid, "control socket: refused a request from another user");
                    continue;
                }
                Err(_) => continue,
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // A small line fits the socket's buffer: written without waiting.
                let _ = stream.try_write(&frame(&Frame::Failed(
                    "the run is busy answering other requests; try again".into(),
                )));
                continue;
            };
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let answer = answer.clone();
            tokio::task::spawn_blocking(move || {
                respond(stream, answer.as_ref());
                drop(slot);
            });
        }
    }

    /// Reads one request (bounded in size and time) and writes its answer.
    fn respond(stream: UnixStream, answer: &Answer) {
        if stream.set_nonblocking(false).is_err()
            || stream.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
        {
            return;
        }
        let mut line = Vec::new();
        let read = BufReader::new((&stream).take(MAX_REQUEST)).read_until(b'\n', &mut line);
        let mut out = Pieces::new(&stream);
        let answered = match read {
            Err(_) => return,
            Ok(0) => return,
            Ok(_) if !line.ends_with(b"\n") => Err(format!(
                "the request is cut short or longer than {MAX_REQUEST} bytes"
            )),
            Ok(_) => match serde_json::from_slice::<Request>(&line) {
                Ok(req) => answer(req, &mut out).map_err(|e| e.to_string()),
                Err(e) => Err(format!("bad request: {e}")),
            },
        };
        out.finish(answered);
    }

    /// A `Write` that sends what it is given as [`Frame::Out`] lines of about [`PIECE`]
    /// bytes, cut at character boundaries.
    struct Pieces<'a> {
        stream: &'a UnixStream,
        pending: Vec<u8>,
    }

    impl<'a> Pieces<'a> {
        fn new(stream: &'a UnixStream) -> Self {
            Pieces {
                stream,
                pending: Vec::with_capacity(PIECE),
            }
        }

        /// Sends the pending text up to its last whole character (`all`: all of it).
        fn send(&mut self, all: bool) -> std::io::Result<()> {
            let whole = match std::str::from_utf8(&self.pending) {
                // An incomplete character at the end waits for its other bytes.
                Err(e) if e.error_len().is_none() && !all => e.valid_up_to(),
                _ => self.pending.len(),
            };
            if whole == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&self.pending[..whole]).into_owned();
            self.pending.drain(..whole);
            let mut stream = self.stream;
            stream.write_all(&frame(&Frame::Out(text)))
        }

        /// Sends what is pending, then the end of the answer.
        fn finish(mut self, answered: Result<(), String>) {
            let last = match answered.and_then(|()| self.send(true).map_err(|e| e.to_string())) {
                Ok(()) => Frame::Done,
                Err(e) => Frame::Failed(e),
            };
            let mut stream = self.stream;
            let _ = stream.write_all(&frame(&last));
        }
    }

    impl Write for Pieces<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.pending.extend_from_slice(buf);
            if self.pending.len() >= PIECE {
                self.send(false)?;
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn frame(f: &Frame) -> Vec<u8> {
        let mut line = serde_json::to_vec(f).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Whether the run asked would answer.
    pub enum Reached {
        Answered,
        /// No run listens (yet): why not.
        NoOne(String),
    }

    /// Where the run holding `data_dir` listens.
    fn socket_path(data_dir: &Path) -> Result<PathBuf, String> {
        if let Some(inside) = socket_inside(data_dir) {
            return Ok(inside);
        }
        let record = data_dir.join(RECORD);
        let bytes = std::fs::read(&record)
            .map_err(|e| format!("cannot read `{}`: {e}", record.display()))?;
        Ok(recorded_path(&bytes))
    }

    fn recorded_path(bytes: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }

    /// Connects to the run holding `data_dir`, if one of ours listens.
    fn connect(data_dir: &Path) -> Result<Result<(UnixStream, PathBuf), String>, Error> {
        let path = match socket_path(data_dir) {
            Ok(p) => p,
            Err(why) => return Ok(Err(why)),
        };
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("`{}`: {e}", path.display()))),
        };
        let uid = peer_uid(&stream)
            .map_err(|e| Error::Io(format!("cannot tell who serves `{}`: {e}", path.display())))?;
        if uid != my_uid() {
            return Err(Error::Io(format!(
                "`{}` is served by another user (uid {uid}), not by a run of yours; \
                 nothing was asked",
                path.display()
            )));
        }
        Ok(Ok((stream, path)))
    }

    /// Whether a run of ours answers for `data_dir` (a store held without one is held by
    /// a `dump` or `state` reading it).
    pub fn serving(data_dir: &Path) -> bool {
        matches!(connect(data_dir), Ok(Ok(_)))
    }

    /// Asks the run holding `data_dir`, handing each part of the answer to `out` as it
    /// arrives.
    pub fn ask(
        data_dir: &Path,
        req: &Request,
        out: &mut dyn FnMut(&str) -> Result<(), Error>,
    ) -> Result<Reached, Error> {
        let (stream, path) = match connect(data_dir)? {
            Ok(connected) => connected,
            Err(why) => return Ok(Reached::NoOne(why)),
        };
        let io = |e: std::io::Error| {
            Error::Io(format!(
                "the run answering on `{}` failed: {e}",
                path.display()
            ))
        };
        // A run that ends while it is asked closes the socket. Before any part of the
        // answer came that is no run answering: the caller reads the store itself once
        // it is let go. After a part, the answer is cut and nothing is retried.
        let stopped = |e: &std::io::Error| {
            use std::io::ErrorKind::*;
            matches!(
                e.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            )
        };
        let gone = || {
            Reached::NoOne(format!(
                "the run on `{}` stopped before answering",
                path.display()
            ))
        };
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        let mut line = serde_json::to_vec(req).map_err(|e| Error::Io(e.to_string()))?;
        line.push(b'\n');
        match (&stream).write_all(&line) {
            Err(e) if stopped(&e) => return Ok(gone()),
            other => other.map_err(io)?,
        }
        let mut reader = BufReader::new(&stream);
        let mut heard = false;
        loop {
            line.clear();
            let n = match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Err(e) if stopped(&e) && !heard => return Ok(gone()),
                other => other.map_err(io)?,
            };
            if !line.ends_with(b"\n") {
                if n == 0 && !heard {
                    return Ok(gone());
                }
                let why = if n as u64 == MAX_LINE {
                    "a garbled answer from the run: a line too long"
                } else {
                    "the run's answer was cut short (did it stop?)"
                };
                return Err(Error::Io(why.into()));
            }
            match serde_json::from_slice::<Frame>(&line) {
                Ok(Frame::Out(text)) => {
                    heard = true;
                    out(&text)?
                }
                Ok(Frame::Done) => return Ok(Reached::Answered),
                Ok(Frame::Failed(why)) => return Err(Error::Remote(why)),
                Err(e) => return Err(Error::Io(format!("a garbled answer from the run: {e}"))),
            }
        }
    }

    fn my_uid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// The uid of the process at the other end of a Unix socket.
    fn peer_uid(socket: &impl AsRawFd) -> std::io::Result<u32> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let mut cred = libc::ucred {
                pid: 0,
                uid: u32::MAX,
                gid: u32::MAX,
            };
            let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
            // SAFETY: `cred` and `len` are valid for writes of the size given, as
            // SO_PEERCRED asks; the descriptor is borrowed, open for the call.
            let r = unsafe {
                libc::getsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_PEERCRED,
                    (&mut cred as *mut libc::ucred).cast(),
                    &mut len,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(cred.uid)
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let (mut uid, mut gid) = (u32::MAX, u32::MAX);
            // SAFETY: both pointers are valid for writes; the descriptor is open.
            if unsafe { libc::getpeereid(socket.as_raw_fd(), &mut uid, &mut gid) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(uid)
        }
    }
}

#[cfg(not(unix))]
pub enum Reached {
    Answered,
    NoOne(String),
}

#[cfg(not(unix))]
pub fn ask(
    _data_dir: &Path,
    _req: &Request,
    _out: &mut dyn FnMut(&str) -> Result<(), Error>,
) -> Result<Reached, Error> {
    Ok(Reached::NoOne("no control socket on this system".into()))
}

#[cfg(not(unix))]
pub fn serving(_data_dir: &Path) -> bool {
    false
}

#[cfg(all(test, unix))]
#[path = "control_tests.rs"]
mod tests;
