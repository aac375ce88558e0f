//! The `stdout()` sink: JSON lines on standard output, written on a blocking thread (a
//! reader that stalls holds that thread, not an async worker). A reader that left
//! (`EPIPE`) is not a failure to queue for: the sink says [`WriteError::Closed`] and the
//! run ends, like any Unix tool whose reader is gone.

use super::{SinkWriter, WriteError, WriteFuture};
use crate::nodes::extract::Emitted;
use std::io::Write;
use std::sync::Arc;

pub struct StdoutWriter;

impl SinkWriter for StdoutWriter {
    fn write<'a>(
        &'a mut self,
        _source: &'a str,
        _names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        let records = records.clone();
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::with_capacity(records.len() * 256);
                for r in records.iter() {
                    buf.extend_from_slice(&r.json);
                    buf.push(b'\n');
                }
                let mut out = std::io::stdout().lock();
                out.write_all(&buf).and_then(|_| out.flush())
            })
            .await
            .map_err(|e| e.to_string())?;
            match written {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(WriteError::Closed),
                Err(e) => Err(WriteError::Failed(format!(
                    "cannot write to standard output: {e}"
                ))),
            }
        })
    }
}
