//! Server frames out (headers, frames, fragmented messages, close frames), masking, and client
//! frames for tests and tools.

use super::Opcode;

/// XORs `data` with the repeating 4-byte `mask`, eight bytes at a time (the compiler vectorises the
/// word loop further).
#[inline]
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let wide = u64::from(m) | (u64::from(m) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask phase is back at byte 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Length of the header [`encode_header`] writes for a server frame of `payload_len` bytes.
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// The payload of `frame` when it is one whole unmasked binary server frame, FIN set and no RSV
/// bit, with the header [`encode_header`] writes for its length; else `None`.
pub fn binary_frame_payload(frame: &[u8]) -> Option<&[u8]> {
    let (&b0, rest) = frame.split_first()?;
    if b0 != 0x80 | Opcode::Binary.bits() {
        return None;
    }
    let (&b1, rest) = rest.split_first()?;
    let (len, body) = match b1 {
        0..=125 => (usize::from(b1), rest),
        126 => (usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), &rest[2..]),
        127 => (usize::try_from(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)).ok()?, &rest[8..]),
        _ => return None,
    };
    (body.len() == len && header_len(len) == frame.len() - len).then_some(body)
}

/// Appends an unmasked server frame header.
pub fn encode_header(out: &mut Vec<u8>, fin: bool, opcode: Opcode, payload_len: usize) {
    let mut h = [0u8; 10];
    let n = write_header(&mut h, fin, opcode, payload_len);
    out.extend_from_slice(&h[..n]);
}

/// Writes an unmasked server frame header at the front of `dst`, which must hold
/// [`header_len`]`(payload_len)` bytes; returns that length.
pub fn write_header(dst: &mut [u8], fin: bool, opcode: Opcode, payload_len: usize) -> usize {
    crate::metrics::WORKER.frame_out();
    put_header(dst, fin, opcode, payload_len)
}

/// [`write_header`] without counting a frame sent: for a header made once and sent by many
/// connections, each of which counts its own.
pub fn put_header(dst: &mut [u8], fin: bool, opcode: Opcode, payload_len: usize) -> usize {
    dst[0] = if fin { 0x80 } else { 0 } | opcode.bits();
    match payload_len {
        0..=125 => {
            dst[1] = payload_len as u8;
            2
        }
        126..=0xffff => {
            dst[1] = 126;
            dst[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            dst[1] = 127;
            dst[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    }
}

/// Appends one unmasked server frame with FIN set.
pub fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    out.reserve(header_len(payload.len()) + payload.len());
    encode_header(out, true, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a data message, split into frames of at most `fragment` payload bytes when given
/// (`None` or 0: one frame, whatever the size).
pub fn encode_message(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], fragment: Option<usize>) {
    let size = match fragment {
        Some(n) if n > 0 && payload.len() > n => n,
        _ => return encode_frame(out, opcode, payload),
    };
    let mut chunks = payload.chunks(size).peekable();
    let mut op = opcode;
    while let Some(chunk) = chunks.next() {
        let fin = chunks.peek().is_none();
        encode_header(out, fin, op, chunk.len());
        out.extend_from_slice(chunk);
        op = Opcode::Continuation;
    }
}

/// Appends a close frame with this status and reason (the reason is cut to fit 125 bytes, on a
/// character boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode_header(out, true, Opcode::Close, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

/// Appends a masked client frame with any 4-bit opcode, valid or not (for clients, tests and
/// fuzzing seeds; the server never masks).
pub fn encode_client_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let start = out.len();
    out.reserve(header_len(payload.len()) + 4 + payload.len());
    encode_header(out, fin, Opcode::Binary, payload.len());
    out[start] = (out[start] & 0x80) | (opcode & 0x0f);
    out[start + 1] |= 0x80;
    out.extend_from_slice(&mask);
    let body = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[body..], mask);
}

/// A masked client frame, as [`encode_client_frame`] writes it.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(&mut out, fin, opcode, payload, mask);
    out
}

