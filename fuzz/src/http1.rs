//! A minimal HTTP/1.1 client over a plain TCP stream: the fuzzer decides every byte
//! of the request (a library client would normalise the oddities away) and reads
//! just enough of the answer to judge it.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::case::HttpCase;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server will close the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// The request's bytes, with a correct `Content-Length` unless the case sets one.
pub fn encode(case: &HttpCase, host: &str) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: {host}\r\n",
        case.method, case.target
    )
    .into_bytes();
    let mut has_length = false;
    for (name, value) in &case.headers {
        has_length |= name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value.0);
        out.extend_from_slice(b"\r\n");
    }
    if !has_length && (!case.body.0.is_empty() || case.method == "POST") {
        out.extend_from_slice(format!("content-length: {}\r\n", case.body.0.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&case.body.0);
    out
}

/// One connection, reused while the server keeps it open.
pub struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buffer: Vec::new(),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// No more bytes from this side: the server sees the end of the request stream.
    pub async fn finish(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next response; `None` when the server closed before sending a byte.
    /// `head_only` stops after the headers of a 200 (an SSE stream never ends).
    pub async fn read(&mut self, head_only: bool) -> std::io::Result<Option<Response>> {
        let head_end = loop {
            if let Some(i) = find(&self.buffer, b"\r\n\r\n") {
                break i;
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(bad("response head too long"));
            }
            if self.fill().await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(bad("connection closed inside a response head"));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        self.buffer.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if (head_only && status == 200)
            || status == 204
            || status == 304
            || (100..200).contains(&status)
        {
            return Ok(Some(response));
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().map_err(|_| bad("content-length"))?;
            if length > MAX_BODY {
                return Err(bad("response body too long"));
            }
            while self.buffer.len() < length {
                if self.fill().await? == 0 {
                    return Err(bad("connection closed inside a response body"));
                }
            }
            response.body = self.buffer.drain(..length).collect();
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            response.body = self.chunked().await?;
        } else {
            while self.fill().await? > 0 {
                if self.buffer.len() > MAX_BODY {
                    return Err(bad("response body too long"));
                }
            }
            response.body = std::mem::take(&mut self.buffer);
        }
        Ok(Some(response))
    }

    async fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buffer, b"\r\n") {
                    break i;
                }
                if self.fill().await? == 0 {
                    return Err(bad("connection closed inside a chunk"));
                }
            };
            let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            self.buffer.drain(..line_end + 2);
            while self.buffer.len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(bad("connection closed inside a chunk"));
                }
            }
            body.extend(self.buffer.drain(..size));
            self.buffer.drain(..2);
            if size == 0 {
                return Ok(body);
            }
            if body.len() > MAX_BODY {
                return Err(bad("response body too long"));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}
