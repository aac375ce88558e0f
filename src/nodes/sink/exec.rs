//! The `exec([program, args...], batch = N, timeout = D)` sink: callbacks. The program
//! runs without a shell, once per batch of at most `batch` records of a page, with the
//! records on its standard input (one JSON object a line) and `HAMSTR_SINK` and
//! `HAMSTR_SOURCE` in its environment. Exit 0 means delivered; another exit, a signal or
//! running past `timeout` means the page waits in the sink's durable queue and is tried
//! again with backoff (at least once). The program runs in its own process group, so a
//! timeout kills whatever it started too. Its standard error is logged line by line with
//! secrets masked; its standard output (which must not mix with a `stdout()` sink's
//! records) is logged at debug level.

use super::resume::Resume;
use super::{SinkWriter, WriteFuture};
use crate::check::Text;
use crate::masking::Masker;
use crate::nodes::extract::Emitted;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

/// The longest line of the program's output that is logged whole; longer ones are cut.
const LINE_LIMIT: usize = 4096;
/// How many lines of one run's output are logged: a chatty program cannot flood the log.
const LINES_LOGGED: usize = 1000;
/// How long the output of a program that exited is still read: a process it left
/// behind may hold the pipe open for ever.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(5);

pub struct ExecWriter {
    sink: String,
    program: PathBuf,
    args: Vec<String>,
    /// The pipeline's folder: the program's working directory.
    dir: PathBuf,
    /// The command as it may be shown (arguments from `env()` as `***`).
    shown: String,
    masker: Masker,
    batch: usize,
    timeout: Duration,
    /// The page that failed part-way (its hash) and how many of its batches were
    /// delivered: they are not run again while hamstr keeps running.
    resume: Resume,
}

impl ExecWriter {
    /// `command` is the program and its arguments, as the checker made them (never
    /// empty); a relative program path with a `/` resolves against `base`, a bare name
    /// is looked up on `PATH`.
    pub fn new(
        sink: &str,
        command: &[Text],
        batch: u32,
        timeout_ms: u64,
        base: &Path,
    ) -> Result<ExecWriter, String> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| format!("sink `{sink}`: the command names no program"))?;
        let masker = Masker::new(
            command
                .iter()
                .filter(|t| t.secret)
                .map(|t| t.value.clone())
                .collect(),
        );
        Ok(ExecWriter {
            sink: sink.to_string(),
            program: program_path(&program.value, base),
            args: args.iter().map(|t| t.value.clone()).collect(),
            dir: base.to_path_buf(),
            shown: command
                .iter()
                .map(Text::shown)
                .collect::<Vec<_>>()
                .join(" "),
            masker,
            batch: batch.max(1) as usize,
            timeout: Duration::from_millis(timeout_ms.max(1)),
            resume: Resume::default(),
        })
    }

    /// A message about this sink's program, with its secrets masked.
    fn say(&self, what: &str) -> String {
        self.masker.mask(&format!(
            "sink `{}` (exec {}): {what}",
            self.sink, self.shown
        ))
    }

    /// Runs the program once with `input` on its standard input.
    async fn run(&self, source: &str, input: Vec<u8>) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .env("HAMSTR_SINK", &self.sink)
            .env("HAMSTR_SOURCE", source)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.say(&format!("cannot start the program: {e}")))?;
        let mut group = Group::of(&child);
        let stdin = child.stdin.take();
        let output = tokio::spawn(log_output(
            self.sink.clone(),
            source.to_string(),
            self.masker.clone(),
            child.stderr.take(),
            child.stdout.take(),
        ));
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading its input closes the pipe
                // (EPIPE): its exit status decides, not the write.
                let _ = stdin.write_all(&input).await;
            }
        };
        let finished = tokio::time::timeout(self.timeout, async {
            let ((), status) = tokio::join!(feed, child.wait());
            status
        })
        .await;
        let status = match finished {
            Ok(status) => {
                group.exited();
                status
            }
            Err(_) => {
                group.kill();
                let _ = child.wait().await;
                output.abort();
                return Err(self.say(&format!(
                    "ran past its timeout of {}; its process group was killed",
                    shown_duration(self.timeout)
                )));
            }
        };
        let last_line = match tokio::time::timeout(OUTPUT_AFTER_EXIT, output).await {
            Ok(Ok(last)) => last,
            _ => None,
        };
        let status = status.map_err(|e| self.say(&format!("cannot wait for the program: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let said = last_line
            .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        Err(self.say(&format!("{}{said}", failure(status))))
    }
}

impl SinkWriter for ExecWriter {
    fn write<'a>(
        &'a mut self,
        source: &'a str,
        _names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        Box::pin(async move {
            let (hash, done) = self.resume.start(records);
            for (i, chunk) in records.chunks(self.batch).enumerate().skip(done) {
                if let Err(e) = self.run(source, json_lines(chunk)).await {
                    self.resume.failed(hash, i);
                    return Err(e.into());
                }
            }
            self.resume.done();
            Ok(())
        })
    }
}

/// Where the program is: a relative path with a separator resolves against the
/// pipeline's folder (as the spec says), a bare name is found on `PATH` by the system.
fn program_path(program: &str, base: &Path) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && path.components().count() > 1 {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}

/// The process group of a running program, killed when the program runs too long or
/// when the write is dropped (the shutdown grace ended), unless the program exited.
struct Group {
    pid: Option<u32>,
}

impl Group {
    fn of(child: &tokio::process::Child) -> Group {
        Group { pid: child.id() }
    }

    /// The program exited and was reaped: its group id may belong to another process
    /// soon, so it is never signalled now. Processes it left behind keep running.
    fn exited(&mut self) {
        self.pid = None;
    }

    fn kill(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        #[cfg(unix)]
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) with a negative pid signals the process group the program
            // leads (it was started with `process_group(0)` and is not reaped yet, so
            // the group id is still its own); no memory is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        #[cfg(not(unix))]
        let _ = pid;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Logs the program's standard error (info) and output (debug) line by line, masked;
/// gives back the last line of standard error, for the failure's message.
async fn log_output(
    sink: String,
    source: String,
    masker: Masker,
    stderr: Option<tokio::process::ChildStderr>,
    stdout: Option<tokio::process::ChildStdout>,
) -> Option<String> {
    let err = async {
        let mut last = None;
        if let Some(stderr) = stderr {
            let mut n = 0;
            read_lines(stderr, |line| {
                let line = masker.mask(&line);
                n += 1;
                if n <= LINES_LOGGED {
                    tracing::info!(sink = %sink, source = %source, stderr = %line, "the program said");
                } else if n == LINES_LOGGED + 1 {
                    tracing::info!(sink = %sink, "the program says more; its further lines are not logged");
                }
                last = Some(line);
            })
            .await;
        }
        last
    };
    let out = async {
        if let Some(stdout) = stdout {
            let mut n = 0;
            read_lines(stdout, |line| {
                n += 1;
                if n <= LINES_LOGGED {
                    let line = masker.mask(&line);
                    tracing::debug!(sink = %sink, source = %source, stdout = %line, "the program wrote");
                }
            })
            .await;
        }
    };
    let (last, ()) = tokio::join!(err, out);
    last
}

/// Calls `each` with every line of `from` (without its newline, invalid UTF-8 replaced,
/// cut at [`LINE_LIMIT`]) until the end or a read error.
async fn read_lines(from: impl AsyncRead + Unpin, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let limit = (LINE_LIMIT + 1) as u64;
        match (&mut reader).take(limit).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let whole = buf.last() == Some(&b'\n');
        if !whole && buf.len() > LINE_LIMIT {
            // A line too long: what was read is logged, the rest of it skipped.
            buf.truncate(LINE_LIMIT);
            each(format!("{}…", String::from_utf8_lossy(&buf)));
            if skip_line(&mut reader).await.is_err() {
                return;
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        each(text.trim_end_matches(['\n', '\r']).to_string());
    }
}

/// Reads up to and with the next newline, keeping nothing.
async fn skip_line(reader: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// Why a program that did not exit 0 failed, in words.
fn failure(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}{}", signal_name(sig));
        }
    }
    format!("ended abnormally ({status})")
}

#[cfg(unix)]
fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGPIPE => " (SIGPIPE)",
        _ => "",
    }
}

fn shown_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The records of a batch, one JSON object a line, each line ending in a newline.
fn json_lines(records: &[Emitted]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum());
    for r in records {
        out.extend_from_slice(&r.json);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_paths_resolve_against_the_pipeline_folder() {
        let base = Path::new("/srv/pipes");
        assert_eq!(
            program_path("./announce.sh", base),
            Path::new("/srv/pipes/./announce.sh")
        );
        assert_eq!(
            program_path("bin/notify", base),
            Path::new("/srv/pipes/bin/notify")
        );
        assert_eq!(
            program_path("/usr/bin/env", base),
            Path::new("/usr/bin/env")
        );
        assert_eq!(program_path("curl", base), Path::new("curl"));
    }

    #[test]
    fn lines_end_in_newlines() {
        let r = |s: &str| Emitted {
            key: None,
            json: s.as_bytes().to_vec().into(),
        };
        assert_eq!(json_lines(&[r("{\"a\":1}"), r("{}")]), b"{\"a\":1}\n{}\n");
        assert!(json_lines(&[]).is_empty());
    }

    #[test]
    fn secret_arguments_are_not_shown() {
        let cmd = [
            Text::plain("./notify"),
            Text::plain("--token"),
            Text::plain("tok-123456").into_secret(),
        ];
        let w = ExecWriter::new("hook", &cmd, 10, 1000, Path::new("/tmp")).unwrap();
        let said = w.say("exited with status 1: bad token tok-123456");
        assert_eq!(
            said,
            "sink `hook` (exec ./notify --token ***): exited with status 1: bad token ***"
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_skipped() {
        let mut text = vec![b'x'; LINE_LIMIT + 100];
        text.extend_from_slice(b"\nnext\r\nlast");
        let mut lines = Vec::new();
        read_lines(&text[..], |l| lines.push(l)).await;
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0].chars().filter(|c| *c == 'x').count(), LINE_LIMIT);
        assert_eq!(lines[1..], ["next", "last"]);
    }
}
