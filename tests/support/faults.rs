//! Faults: what a request gets instead of (or on top of) its normal answer, and the
//! byte-level writers that produce them.

use std::io;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{head_bytes, write_reply, Framing, Reply};

/// The value of a `Retry-After` header.
#[derive(Clone, Debug)]
pub enum RetryAfter {
    Seconds(u64),
    HttpDate(SystemTime),
}

impl RetryAfter {
    pub fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(n) => n.to_string(),
            RetryAfter::HttpDate(t) => httpdate::fmt_http_date(*t),
        }
    }
}

/// One fault, consumed by one request to its path (see `TestApi::fail_next`).
#[derive(Clone, Debug)]
pub enum Fault {
    /// No fault: the normal answer. Lets a queue fail, say, only the third request.
    Pass,
    /// This status with a short JSON error body.
    Status(u16),
    /// This status with this body (content-type application/json).
    StatusWithBody(u16, String),
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after: RetryAfter },
    /// Any status (e.g. 503) with `Retry-After`.
    StatusRetryAfter(u16, RetryAfter),
    /// This exact answer instead of the normal one (see `support::apis` for the
    /// answers of real APIs: a rate-limit 403, a decimal `Retry-After`).
    Reply(Reply),
    /// The normal answer's head (its full `Content-Length`) and about half its body,
    /// then, after 100 ms, an abortive close (SO_LINGER 0: the peer sees a TCP RST).
    ResetMidBody,
    /// The normal answer's head and about half its body, then a plain close: fewer
    /// bytes than `Content-Length`.
    ShortBody,
    /// Reads the request and answers nothing for this long, then closes.
    Hang(Duration),
    /// Reads the request and closes the connection without a byte of answer.
    CloseWithoutAnswer,
    /// These exact bytes, then close.
    Raw(Vec<u8>),
    /// 200, application/json, body `{"data": [1, 2`.
    MalformedJson,
    /// 200, text/html, an HTML error page.
    Html,
    /// 200, application/json, a valid JSON body `{"data":[],"pad":"xxx…"}` of exactly
    /// this many bytes (at least 20), streamed from one static 64 KiB buffer with
    /// `Content-Length` (e.g. `Huge(100 << 20)` never allocates 100 MiB).
    Huge(u64),
    /// Like `Huge` but `Transfer-Encoding: chunked`, no `Content-Length`.
    HugeChunked(u64),
    /// 302 with `Location: url`.
    RedirectTo(String),
    /// Any status with `Location: url` (301, 303, 307, 308).
    Redirect(u16, String),
    /// The normal answer, carrying `RateLimit-Limit/Remaining/Reset` and
    /// `X-RateLimit-Limit/Remaining/Reset` (reset as seconds from now in both).
    RateLimitHeaders { remaining: u64, reset_secs: u64 },
    /// The normal answer with these extra headers.
    Headers(Vec<(String, String)>),
    /// The normal answer, sent after this delay.
    Delay(Duration),
    /// The normal page, but its next link (`NextUrl`, `LinkHeader`) points at page N
    /// of this same listing (`?page=N`), also on the last page. Other styles ignore it.
    NextLinkToPage(u64),
    /// Cursor: the next token is the one just received (the first page: a token for
    /// offset 0). Stripe style: the page ending with the `starting_after` record again,
    /// so the last id repeats. `NextUrl`/`LinkHeader`: a next link to this same page.
    RepeatCursor,
    /// Exactly the previous answer on this path again (identical body and headers).
    SamePageAgain,
    /// The normal page, but its next link (`NextUrl`, `LinkHeader`) points at the next
    /// page on another origin (`http://host:port`), also on the last page. Other
    /// styles ignore it.
    NextLinkTo(String),
}

impl Fault {
    /// Faults that only change or delay the normal answer.
    pub fn is_modifier(&self) -> bool {
        matches!(
            self,
            Fault::Pass
                | Fault::RateLimitHeaders { .. }
                | Fault::Headers(_)
                | Fault::Delay(_)
                | Fault::NextLinkToPage(_)
                | Fault::RepeatCursor
                | Fault::SamePageAgain
                | Fault::NextLinkTo(_)
        )
    }
}

/// What the connection task does with one request.
pub(crate) enum Action {
    Reply {
        reply: Reply,
        delay: Option<Duration>,
    },
    ResetMidBody(Reply),
    ShortBody(Reply),
    Hang(Duration),
    Close,
    Raw(Vec<u8>),
    Huge {
        size: u64,
        chunked: bool,
    },
}

/// Whether the connection may serve another request.
pub(crate) enum After {
    KeepAlive,
    Close,
}

pub(crate) const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><h1>Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p></body></html>\n";

/// The answer for a fault that replaces the normal answer (not `ResetMidBody`,
/// `ShortBody`, or the byte-level ones).
pub(crate) fn fault_reply(fault: &Fault) -> Option<Reply> {
    Some(match fault {
        Fault::Status(code) => Reply::error(*code, super::http::reason(*code)),
        Fault::StatusWithBody(code, body) => {
            Reply::text(*code, "application/json", body.clone().into_bytes())
        }
        Fault::TooManyRequests { retry_after } => {
            Reply::error(429, "rate limited").with_header("retry-after", retry_after.header_value())
        }
        Fault::StatusRetryAfter(code, retry_after) => {
            Reply::error(*code, super::http::reason(*code))
                .with_header("retry-after", retry_after.header_value())
        }
        Fault::Reply(reply) => reply.clone(),
        Fault::MalformedJson => Reply::text(200, "application/json", &b"{\"data\": [1, 2"[..]),
        Fault::Html => Reply::text(200, "text/html; charset=utf-8", HTML_PAGE),
        Fault::RedirectTo(url) => Reply::empty(302).with_header("location", url.clone()),
        Fault::Redirect(code, url) => Reply::empty(*code).with_header("location", url.clone()),
        _ => return None,
    })
}

/// Adds the header-only modifier faults to a normal answer.
pub(crate) fn decorate(mut reply: Reply, fault: &Fault) -> Reply {
    match fault {
        Fault::RateLimitHeaders {
            remaining,
            reset_secs,
        } => {
            let limit = (*remaining).max(100).to_string();
            for prefix in ["ratelimit", "x-ratelimit"] {
                reply = reply
                    .with_header(&format!("{prefix}-limit"), limit.clone())
                    .with_header(&format!("{prefix}-remaining"), remaining.to_string())
                    .with_header(&format!("{prefix}-reset"), reset_secs.to_string());
            }
            reply
        }
        Fault::Headers(extra) => {
            for (k, v) in extra {
                reply = reply.with_header(k, v.clone());
            }
            reply
        }
        _ => reply,
    }
}

static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];

const HUGE_PREFIX: &[u8] = b"{\"data\":[],\"pad\":\"";
const HUGE_SUFFIX: &[u8] = b"\"}";

/// Writes `size` bytes of valid JSON (`{"data":[],"pad":"xxxx…"}`) in 64 KiB pieces,
/// never holding more than one piece.
async fn write_huge(stream: &mut TcpStream, size: u64, chunked: bool) -> io::Result<()> {
    let fixed = (HUGE_PREFIX.len() + HUGE_SUFFIX.len()) as u64;
    let size = size.max(fixed);
    let head = head_bytes(
        200,
        &[("content-type".into(), "application/json".into())],
        if chunked {
            Framing::Chunked
        } else {
            Framing::Length(size)
        },
        false,
    );
    stream.write_all(&head).await?;
    write_piece(stream, HUGE_PREFIX, chunked).await?;
    let mut left = size - fixed;
    while left > 0 {
        let n = left.min(FILL.len() as u64) as usize;
        write_piece(stream, &FILL[..n], chunked).await?;
        left -= n as u64;
    }
    write_piece(stream, HUGE_SUFFIX, chunked).await?;
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.flush().await
}

async fn write_piece(stream: &mut TcpStream, piece: &[u8], chunked: bool) -> io::Result<()> {
    if chunked {
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await?;
        stream.write_all(piece).await?;
        stream.write_all(b"\r\n").await
    } else {
        stream.write_all(piece).await
    }
}

/// Head with the full `Content-Length` and about half the body.
async fn write_partial(stream: &mut TcpStream, reply: &Reply) -> io::Result<()> {
    let full = reply.body.len().max(2);
    let sent = reply.body.len() / 2;
    let mut bytes = head_bytes(
        reply.status,
        &reply.headers,
        Framing::Length(full as u64),
        false,
    );
    bytes.extend_from_slice(&reply.body[..sent]);
    stream.write_all(&bytes).await?;
    stream.flush().await
}

pub(crate) async fn perform(
    stream: &mut TcpStream,
    action: Action,
    close: bool,
) -> io::Result<After> {
    match action {
        Action::Reply { reply, delay } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            write_reply(stream, &reply, close).await?;
            Ok(if close {
                After::Close
            } else {
                After::KeepAlive
            })
        }
        Action::ResetMidBody(reply) => {
            write_partial(stream, &reply).await?;
            // let the client read the head and the partial body before the RST
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.set_zero_linger()?;
            Ok(After::Close)
        }
        Action::ShortBody(reply) => {
            write_partial(stream, &reply).await?;
            stream.shutdown().await?;
            Ok(After::Close)
        }
        Action::Hang(d) => {
            tokio::time::sleep(d).await;
            Ok(After::Close)
        }
        Action::Close => Ok(After::Close),
        Action::Raw(bytes) => {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            Ok(After::Close)
        }
        Action::Huge { size, chunked } => {
            write_huge(stream, size, chunked).await?;
            Ok(if close {
                After::Close
            } else {
                After::KeepAlive
            })
        }
    }
}
