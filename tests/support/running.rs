//! A hamstr process running in the background that a test owns: killed on drop, so a
//! failing assertion never leaves a process behind; stopped gracefully on request; its
//! stderr collected line by line, so a test waits for a notification instead of sleeping.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often `wait_until` and `terminate` look again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds (true) or `limit` has passed (false). For conditions on
/// the world outside the process: requests served, records stored, lines in a file.
pub fn wait_until(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A started hamstr command (usually `hamstr run`). Dropping it kills the process
/// (SIGKILL) and reaps it.
pub struct RunningHamstr {
    child: Child,
    stderr: Arc<Lines>,
    reader: Option<JoinHandle<()>>,
    /// How many stderr lines `wait_for_stderr_line` has already looked past.
    seen: usize,
}

/// The stderr lines read so far, and whether the pipe has closed (no more will come).
#[derive(Default)]
struct Lines {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl RunningHamstr {
    /// Starts `cmd` with stdin closed and stderr collected; stdout stays as `cmd` set it
    /// (see `take_stdout`).
    pub fn start(mut cmd: Command) -> RunningHamstr {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hamstr");
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Lines::default());
        let lines = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || lines.read_all(pipe));
        RunningHamstr {
            child,
            stderr,
            reader: Some(reader),
            seen: 0,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The process's stdout, when the command piped it.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout was piped")
    }

    /// SIGTERM, as Ctrl-C would, then waits up to `limit` for the exit status; `None`
    /// (after killing it) when it did not exit in time.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        // Only a process not yet reaped: its pid cannot have been reused.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(POLL);
        };
        if status.is_none() {
            self.kill();
        }
        self.finish_reading();
        status
    }

    /// SIGKILL (like a crash) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_reading();
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.state.lock().expect("stderr lines").0.join("\n")
    }

    /// Waits up to `limit` for the next stderr line (after the one a previous call
    /// returned) for which `matches` holds, and returns it. Panics, showing `what` and
    /// the stderr so far, on timeout or when the process closed its stderr first.
    #[track_caller]
    pub fn wait_for_stderr_line(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut state = self.stderr.state.lock().expect("stderr lines");
        loop {
            let (lines, closed) = &*state;
            if let Some(i) = (self.seen..lines.len()).find(|&i| matches(&lines[i])) {
                self.seen = i + 1;
                return lines[i].clone();
            }
            let now = Instant::now();
            if *closed || now >= deadline {
                let why = if *closed {
                    "it closed stderr"
                } else {
                    "timed out"
                };
                panic!(
                    "{why} while waiting for {what}; stderr so far:\n{}",
                    lines.join("\n")
                );
            }
            state = self
                .stderr
                .changed
                .wait_timeout(state, deadline - now)
                .expect("stderr lines")
                .0;
        }
    }

    /// Once the process has exited: waits for the last of its stderr.
    fn finish_reading(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for RunningHamstr {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Lines {
    /// Reads lines (invalid UTF-8 replaced) until the pipe closes.
    fn read_all(&self, pipe: impl Read) {
        let mut pipe = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match pipe.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    self.state.lock().expect("stderr lines").0.push(line);
                    self.changed.notify_all();
                }
            }
        }
        self.state.lock().expect("stderr lines").1 = true;
        self.changed.notify_all();
    }
}
