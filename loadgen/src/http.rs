//! A keep-alive HTTP/1.1 client for one thing: POSTing a body to a publisher location and reading
//! the response (Content-Length or chunked), one request at a time on one connection.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Poster {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A response: its status and its body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Poster {
    pub fn new(addr: &str) -> Poster {
        Poster { addr: addr.to_string(), stream: None, buf: Vec::new() }
    }

    /// The server it posts to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// POSTs `body` to `path`, (re)connecting when the server closed the previous connection.
    /// `stamp` is called just before the request is written and may change the body (a publisher
    /// puts the send time in it).
    pub async fn post(&mut self, path: &str, body: &mut [u8], stamp: impl FnOnce(&mut [u8])) -> io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head.as_bytes());
        stamp(body);
        req.extend_from_slice(body);
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&req).await?;
        let r = read_response(stream, &mut self.buf).await;
        if !matches!(&r, Ok((_, true))) {
            self.stream = None;
        }
        r.map(|(resp, _)| resp)
    }
}

async fn more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "publisher connection closed"));
    }
    Ok(())
}

/// Reads one response; the bool says whether the connection may be kept.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(Response, bool)> {
    let end = loop {
        if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break e;
        }
        more(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad response: {head}")))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    for l in lines {
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.contains("chunked"),
            "connection" => keep = !v.contains("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let line_end = loop {
                if let Some(e) = buf.windows(2).position(|w| w == b"\r\n") {
                    break e;
                }
                more(stream, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                more(stream, buf).await?;
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        while buf.len() < n {
            more(stream, buf).await?;
        }
        body.extend(buf.drain(..n));
    } else {
        keep = false;
    }
    Ok((Response { status, body }, keep))
}
