//! A small hand-written HTTP/1.1 server side: request parsing, the request log entry,
//! replies, and the byte-level writers the faults need.

use std::io;
use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One request as the fake API received it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// 1-based position in the server's whole log.
    pub seq: usize,
    pub method: String,
    /// The request target exactly as sent (path and query, still percent-encoded).
    pub target: String,
    /// The path as sent (percent-encoded, no query).
    pub path: String,
    /// The path percent-decoded.
    pub decoded_path: String,
    /// Query pairs, decoded (`+` and `%2B` are told apart: `+` is a space).
    pub query: Vec<(String, String)>,
    /// Header names lower-case, values as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Logged {
    /// The first value of query parameter `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`, in order.
    pub fn query_values(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `user:password` from an `Authorization: Basic` header, decoded.
    pub fn basic_credentials(&self) -> Option<String> {
        let value = self.header("authorization")?;
        let (scheme, rest) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let bytes = base64_decode(rest.trim())?;
        String::from_utf8(bytes).ok()
    }

    /// True when `path` is this request's path, as sent or decoded.
    pub fn is_to(&self, path: &str) -> bool {
        self.path == path || self.decoded_path == path
    }
}

/// A complete HTTP answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Extra headers; `content-length`, `date` and `connection` are added when written.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(value: &Value) -> Reply {
        Reply::json_status(200, value)
    }

    pub fn json_status(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).expect("serialise JSON"),
        }
    }

    /// A JSON error answer `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json_status(status, &serde_json::json!({ "error": message }))
    }

    pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request read off the wire, before it is logged.
pub(crate) struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub wants_close: bool,
}

impl RawRequest {
    pub fn into_logged(self, seq: usize) -> Logged {
        let (path, query) = match self.target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (self.target.clone(), String::new()),
        };
        // absolute-form targets (`http://host/path`) are reduced to their path
        let path = match path.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/".into(), |i| rest[i..].to_string()),
            None => path,
        };
        let decoded_path = percent_encoding::percent_decode_str(&path)
            .decode_utf8_lossy()
            .into_owned();
        let query = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Logged {
            seq,
            method: self.method,
            target: self.target,
            path,
            decoded_path,
            query,
            headers: self.headers,
            body: self.body,
            at: Instant::now(),
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; false on end of stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Reads one request from a keep-alive connection. `buf` keeps bytes that belong to the
/// next request. `Ok(None)` when the peer closed the connection between requests.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> io::Result<Option<RawRequest>> {
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        if !fill(stream, buf).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);

    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or_default().to_string();
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(bad("bad request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let connection = get("connection").unwrap_or_default();
    let wants_close = connection.contains("close") || version == "HTTP/1.0";
    let chunked = get("transfer-encoding").is_some_and(|te| te.contains("chunked"));
    let length = match get("content-length") {
        Some(v) => v.parse::<usize>().map_err(|_| bad("bad content-length"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(bad("request body too large"));
    }
    if get("expect").is_some_and(|e| e == "100-continue") && (chunked || buf.len() < length) {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }

    let body = if chunked {
        read_chunked(stream, buf).await?
    } else {
        while buf.len() < length {
            if !fill(stream, buf).await? {
                return Err(bad("request body cut short"));
            }
        }
        buf.drain(..length).collect()
    };
    Ok(Some(RawRequest {
        method,
        target,
        headers,
        body,
        wants_close,
    }))
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(pos) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..pos + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf).await? {
            return Err(bad("bad chunked body"));
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // trailers, then the empty line
            while !read_line(stream, buf).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("request body too large"));
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf).await? {
                return Err(bad("chunked body cut short"));
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// How the length of a body is announced.
pub(crate) enum Framing {
    Length(u64),
    Chunked,
}

/// The status line and headers, ending with the blank line.
pub(crate) fn head_bytes(
    status: u16,
    headers: &[(String, String)],
    framing: Framing,
    close: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "date: {}\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    ));
    match framing {
        Framing::Length(n) => out.push_str(&format!("content-length: {n}\r\n")),
        Framing::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
    }
    out.push_str(if close {
        "connection: close\r\n"
    } else {
        "connection: keep-alive\r\n"
    });
    out.push_str("\r\n");
    out.into_bytes()
}

pub(crate) async fn write_reply(
    stream: &mut TcpStream,
    reply: &Reply,
    close: bool,
) -> io::Result<()> {
    let mut bytes = head_bytes(
        reply.status,
        &reply.headers,
        Framing::Length(reply.body.len() as u64),
        close,
    );
    bytes.extend_from_slice(&reply.body);
    stream.write_all(&bytes).await?;
    stream.flush().await
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding.
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any other character.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let trimmed = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in trimmed.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
