//! While `hamstr run` holds a data directory, `dump` and `state` ask it over a Unix
//! socket in that directory instead of opening the store (which the run has locked).

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

/// Answers requests until the returned task is dropped; `answer` runs on the store the
/// run holds.
#[cfg(unix)]
pub fn serve(
    data_dir: &Path,
    answer: std::sync::Arc<dyn Fn(Request) -> Result<String, String> + Send + Sync>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let path = socket_path(data_dir);
    // A socket file left by a killed run: the store lock proves no one else serves it.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on `{}`: {e}", path.display()))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => tokio::task::spawn_blocking(move || answer(req))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string())),
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
pub fn ask(data_dir: &Path, req: &Request) -> Result<String, String> {
    use std::io::{Read, Write};
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        format!(
            "the data directory is in use, and its run does not answer on `{}`: {e}",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    serde_json::from_slice::<Result<String, String>>(&reply)
        .map_err(|e| format!("a garbled answer from the run: {e}"))?
}

#[cfg(not(unix))]
pub fn ask(_data_dir: &Path, _req: &Request) -> Result<String, String> {
    Err("the data directory is in use by a running `hamstr run`".into())
}
