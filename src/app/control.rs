//! While `hamstr run` holds a data directory, `dump` and `state` ask it over a Unix
//! socket in that directory instead of opening the store (which the run has locked).

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

/// Where the run holding `data_dir` listens: `control.sock` in it, or, when that path is
/// too long for a Unix socket (about 100 bytes), a socket in the temporary folder named
/// after the data directory's full path, which `ask` finds the same way.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    const SOCKET_PATH_MAX: usize = 100;
    // Decided on the full path, so `run` and `dump` agree however each names the folder.
    let full = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let inside = full.join("control.sock");
    if inside.as_os_str().len() < SOCKET_PATH_MAX {
        return inside;
    }
    let id = xxhash_rust::xxh3::xxh3_64(full.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("hamstr-{id:016x}.sock"))
}

/// What goes back over the socket: the answer, or the error the run met, as text.
#[cfg(unix)]
type Reply = Result<String, String>;

/// Answers requests until the returned task is dropped; `answer` runs on the store the
/// run holds.
#[cfg(unix)]
pub fn serve(
    data_dir: &Path,
    answer: std::sync::Arc<dyn Fn(Request) -> Result<String, Error> + Send + Sync>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let path = socket_path(data_dir);
    // A socket file left by a killed run: the store lock proves no one else serves it.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Error::Io(format!("cannot listen on `{}`: {e}", path.display())))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                let reply: Reply = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => tokio::task::spawn_blocking(move || answer(req))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|answered| answered.map_err(|e| e.to_string())),
                    Err(e) => Err(format!("bad request: {e}")),
                };
                let bytes = serde_json::to_vec(&reply).unwrap_or_default();
                let _ = write.write_all(&bytes).await;
                let _ = write.shutdown().await;
            });
        }
    }))
}

/// Asks the run holding `data_dir`.
#[cfg(unix)]
pub fn ask(data_dir: &Path, req: &Request) -> Result<String, Error> {
    use std::io::{Read, Write};
    let path = socket_path(data_dir);
    let io = |e: std::io::Error| {
        Error::Io(format!(
            "the data directory is in use, and its run does not answer on `{}`: {e}",
            path.display()
        ))
    };
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(io)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(|e| Error::Io(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(io)?;
    serde_json::from_slice::<Reply>(&reply)
        .map_err(|e| Error::Io(format!("a garbled answer from the run: {e}")))?
        .map_err(Error::Remote)
}

#[cfg(not(unix))]
pub fn ask(data_dir: &Path, _req: &Request) -> Result<String, Error> {
    Err(Error::Locked {
        path: data_dir.display().to_string(),
        then: "",
    })
}
