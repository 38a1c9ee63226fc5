//! The client side of a WebSocket, as much of it as a load generator needs: the opening handshake,
//! masked frames out, and whole server frames cut from a read buffer.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Opens a TCP connection (with `SO_RCVBUF` set to `rcvbuf` when given, before connecting, so
/// the window the server sees is small from the start) and performs the WebSocket handshake on
/// `path`. Returns the stream and whatever the server sent after its 101 response.
pub async fn connect(addr: &str, path: &str, rcvbuf: Option<u32>) -> io::Result<(TcpStream, Vec<u8>)> {
    connect_with(addr, path, rcvbuf, "").await.map(|(stream, rest, _)| (stream, rest))
}

/// As [`connect`], with `headers` (complete lines) added to the request; also returns the
/// response's header block.
pub async fn connect_with(addr: &str, path: &str, rcvbuf: Option<u32>, headers: &str) -> io::Result<(TcpStream, Vec<u8>, String)> {
    let sockaddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr}: no address")))?;
    let socket = if sockaddr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n)?;
    }
    let mut stream = socket.connect(sockaddr).await?;
    stream.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut tmp = [0u8; 4096];
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other(format!("handshake refused: {}", String::from_utf8_lossy(&buf[..end]))));
            }
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Ok((stream, buf, head));
        }
    }
}

/// One server frame: its opcode and where its payload lies in the buffer it was cut from.
#[derive(Clone, Debug)]
pub struct FrameAt {
    pub opcode: u8,
    pub fin: bool,
    /// RSV1: a permessage-deflate message's first frame.
    pub rsv1: bool,
    pub payload: std::ops::Range<usize>,
}

/// The complete (unmasked) server frame at `buf[*start..]`, if there is one; `*start` moves past it.
pub fn next_frame(buf: &[u8], start: &mut usize) -> Option<FrameAt> {
    let b = &buf[*start..];
    if b.len() < 2 {
        return None;
    }
    let (len, hdr) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if b.len() < hdr + len {
        return None;
    }
    let at = *start + hdr;
    *start += hdr + len;
    Some(FrameAt { opcode: b[0] & 0x0f, fin: b[0] & 0x80 != 0, rsv1: b[0] & 0x40 != 0, payload: at..at + len })
}

/// The complete server frame at `buf[*start..]` as (opcode, payload), if there is one.
pub fn take_frame(buf: &[u8], start: &mut usize) -> Option<(u8, Vec<u8>)> {
    next_frame(buf, start).map(|f| (f.opcode, buf[f.payload].to_vec()))
}

/// Reads more bytes into `buf`, dropping what was taken before `*start`.
pub async fn fill<R: AsyncReadExt + Unpin>(rd: &mut R, buf: &mut Vec<u8>, start: &mut usize) -> io::Result<()> {
    fill_by(rd, buf, start, 1 << 16).await
}

/// As [`fill`], reading at most `chunk` bytes; the buffer's spare room is not zeroed first, so a
/// connection that mostly waits keeps only what it has read.
pub async fn fill_by<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    start: &mut usize,
    chunk: usize,
) -> io::Result<()> {
    if *start > 0 {
        buf.drain(..*start);
        *start = 0;
    }
    buf.reserve(chunk);
    let n = (&mut *rd).take(chunk as u64).read_buf(buf).await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed"));
    }
    Ok(())
}

/// Appends a masked client frame of `opcode` carrying `payload`.
pub fn masked_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    apisix_pubsub_rs::frame::encode_client_frame(out, true, opcode, payload, mask);
}

/// A masked close frame with status 1000.
pub fn close_frame() -> Vec<u8> {
    let mut out = Vec::new();
    masked_frame(&mut out, 0x8, &1000u16.to_be_bytes(), [0, 0, 0, 0]);
    out
}
