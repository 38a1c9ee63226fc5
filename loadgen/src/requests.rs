//! The `cmd_ping` requests of one connection, as ready masked frames.
//!
//! Within a connection every request is the same `PubSubReq` but for its sequence (the state,
//! the mask and the frame's length never change, and every sequence is a 9-byte varint; see
//! `sequence_base` in `main.rs`). So the frame is made once, and a request is a copy of it with
//! the sequence's bytes written in.
//!
//! With permessage-deflate ([`Compression::Template`], what `--compress` does) the message is
//! `[field 1: the sequence]` followed by `[field 32: cmd_ping { state }]`. The second part is
//! compressed once, with zlib-rs at the chosen level as a zlib client compresses a message on its
//! own (raw DEFLATE, a sync flush, the RFC 7692 tail `00 00 ff ff` removed); each request's
//! payload is a stored block (BTYPE 00, BFINAL 0) carrying the sequence field, then those
//! precompressed blocks. A stored block ends on a byte boundary, so the blocks after it start on
//! one, and a stream compressed on its own never refers back before its own start: the server
//! inflates a valid message of the same dynamic (or fixed) blocks a level-N zlib client would
//! send for the state, plus 5 bytes of stored-block header and the 10 bytes of the sequence as
//! they are. What is left per request is a copy, where compressing each request cost the load
//! generator more than the server's work for it. [`Compression::Each`] (`--compress-each`)
//! compresses every request whole, as a zlib client does (zlib-rs reset after each message), for
//! comparison. Neither uses the module's own deflate code: what the server is sent does not move
//! with the code under test.

use apisix_pubsub_rs::deflate::TAIL;
use apisix_pubsub_rs::proto::{pub_sub_req, CmdPing, PubSubReq};
use flate2::{Compress, Compression as Level, FlushCompress};
use prost::Message as _;

/// Bytes of a sequence's varint: every sequence of a run is in [2^56, 2^63).
const SEQ_LEN: usize = 9;
/// The sequence field: its tag (field 1, varint) and the varint.
const SEQ_FIELD_LEN: usize = 1 + SEQ_LEN;
/// A stored block's header for the sequence field: BFINAL 0, BTYPE 00 and the padding to the byte
/// boundary in one byte, then LEN and NLEN, little-endian.
const STORED_HEADER: [u8; 5] = [0x00, SEQ_FIELD_LEN as u8, 0x00, !(SEQ_FIELD_LEN as u8), 0xff];

/// How a connection's requests are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Not at all (no permessage-deflate).
    Off,
    /// A stored block with the sequence, then the rest precompressed once at `level` with a
    /// window of `window_bits` (see the module's doc).
    Template { level: u32, window_bits: u8 },
    /// Each request compressed whole by zlib-rs at `level`, reset after each, as a zlib client
    /// without context takeover compresses.
    Each { level: u32, window_bits: u8 },
}

/// Makes a connection's request frames.
pub struct Requests {
    /// One whole masked frame; a request copies it and writes its sequence in.
    frame: Vec<u8>,
    /// Where the sequence's varint starts in `frame`.
    seq_at: usize,
    /// The mask key, rotated so that its byte 0 masks `frame[seq_at]`.
    seq_mask: [u8; 4],
    /// For [`Compression::Each`]: the zlib state, the ping's state and the mask.
    each: Option<(Compress, Vec<u8>, [u8; 4])>,
}

/// The message of a request, uncompressed.
pub fn ping_bytes(seq: i64, state: &[u8]) -> Vec<u8> {
    PubSubReq { sequence: seq, req: Some(pub_sub_req::Req::CmdPing(CmdPing { state: state.to_vec() })) }.encode_to_vec()
}

/// The 9 bytes of `seq`'s varint.
pub fn seq_varint(seq: i64) -> [u8; SEQ_LEN] {
    assert!((1i64 << 56..i64::MAX).contains(&seq), "sequence {seq} is not a 9-byte varint");
    let mut v = seq as u64;
    let mut out = [0u8; SEQ_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (v & 0x7f) as u8 | if i + 1 < SEQ_LEN { 0x80 } else { 0 };
        v >>= 7;
    }
    out
}

/// `message` compressed on its own, as a zlib client compresses a message without context
/// takeover: raw DEFLATE at `level` with a `window_bits` window, a sync flush, the tail removed.
pub fn deflate_alone(message: &[u8], level: u32, window_bits: u8) -> Vec<u8> {
    let mut out = Vec::new();
    deflate_into(&mut zlib(level, window_bits), message, &mut out);
    out
}

fn zlib(level: u32, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Level::new(level), false, window_bits)
}

/// Appends `message` compressed by `z` (fresh or reset) to `out`, then resets `z`.
fn deflate_into(z: &mut Compress, message: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(message.len() + message.len() / 64 + 64);
    let in_before = z.total_in();
    loop {
        let input = &message[(z.total_in() - in_before) as usize..];
        z.compress_vec(input, out, FlushCompress::Sync).expect("deflate with a sync flush");
        // The flush is complete when it did not fill the room it had.
        if (z.total_in() - in_before) as usize == message.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out[start..].ends_with(&TAIL), "a sync flush ends with an empty stored block");
    out.truncate(out.len() - TAIL.len());
    z.reset();
}

impl Requests {
    /// The requests of a connection whose pings carry `state`, masked with `mask`.
    pub fn new(state: &[u8], mask: [u8; 4], compression: Compression) -> Requests {
        let message = ping_bytes(1 << 56, state);
        debug_assert_eq!(message[0], 0x08, "field 1, varint, first");
        let (payload, seq_in_payload, rsv1, each) = match compression {
            Compression::Off => (message, 1, false, None),
            Compression::Template { level, window_bits } => {
                let mut p = STORED_HEADER.to_vec();
                p.extend_from_slice(&message[..SEQ_FIELD_LEN]);
                p.extend_from_slice(&deflate_alone(&message[SEQ_FIELD_LEN..], level, window_bits));
                (p, STORED_HEADER.len() + 1, true, None)
            }
            Compression::Each { level, window_bits } => (message, 1, false, Some((zlib(level, window_bits), state.to_vec(), mask))),
        };
        let mut frame = Vec::new();
        crate::ws::masked_frame(&mut frame, 0x2, &payload, mask);
        if rsv1 {
            frame[0] |= 0x40;
        }
        let header = frame.len() - payload.len();
        let seq_at = header + seq_in_payload;
        let phase = seq_in_payload % 4;
        let seq_mask = [mask[phase], mask[(phase + 1) % 4], mask[(phase + 2) % 4], mask[(phase + 3) % 4]];
        Requests { frame, seq_at, seq_mask, each }
    }

    /// The size of a request's frame (with [`Compression::Each`], of the uncompressed one).
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Appends the frame of the request with sequence `seq` to `out`.
    pub fn push(&mut self, out: &mut Vec<u8>, seq: i64) {
        if let Some((zlib, state, mask)) = self.each.as_mut() {
            let mut z = Vec::new();
            deflate_into(zlib, &ping_bytes(seq, state), &mut z);
            let at = out.len();
            crate::ws::masked_frame(out, 0x2, &z, *mask);
            out[at] |= 0x40;
            return;
        }
        let at = out.len() + self.seq_at;
        out.extend_from_slice(&self.frame);
        for (i, (o, v)) in out[at..at + SEQ_LEN].iter_mut().zip(seq_varint(seq)).enumerate() {
            *o = v ^ self.seq_mask[i % 4];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress, Status};

    /// One whole client frame of `buf`: RSV1 and the unmasked payload; checks FIN, binary, MASK.
    fn unframe(buf: &[u8]) -> (bool, Vec<u8>, usize) {
        assert_eq!(buf[0] & 0x8f, 0x82, "FIN, binary");
        assert_eq!(buf[1] & 0x80, 0x80, "masked");
        let (len, hdr) = match buf[1] & 0x7f {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = &buf[hdr..hdr + 4];
        let payload = buf[hdr + 4..hdr + 4 + len].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        (buf[0] & 0x40 != 0, payload, hdr + 4 + len)
    }

    /// Raw inflate of a permessage-deflate payload with the tail appended, by flate2 on its own.
    fn inflate(payload: &[u8], window_bits: u8) -> Vec<u8> {
        let mut d = Decompress::new_with_window_bits(false, window_bits);
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        let status = d.decompress_vec(&input, &mut out, FlushDecompress::Sync).expect("a valid DEFLATE stream");
        assert_eq!(status, Status::Ok, "no final block");
        assert_eq!(d.total_in() as usize, input.len(), "all input taken");
        out
    }

    /// The states `--payload` makes, of a few sizes, and the empty one.
    fn states() -> Vec<Vec<u8>> {
        let kinds = [("bytes", 16), ("json", 1024), ("random", 1024), ("json", 60_000), ("bytes", 0)];
        kinds.into_iter().map(|(kind, len)| crate::payload(kind, len, 3)).collect()
    }

    #[test]
    fn every_request_inflates_to_its_ping() {
        let mask = [0x5a, 0x13, 0x37, 0x42];
        for state in states() {
            for (level, window_bits) in [(0, 15), (1, 15), (6, 15), (9, 15), (6, 9)] {
                for c in [Compression::Template { level, window_bits }, Compression::Each { level, window_bits }] {
                    let mut r = Requests::new(&state, mask, c);
                    let mut out = Vec::new();
                    let seqs = [1i64 << 56, (1 << 56) + (7 << 32) + 1, (1 << 56) + (7 << 32) + 0x1234_5678, i64::MAX - 1];
                    for s in seqs {
                        r.push(&mut out, s);
                    }
                    let mut at = 0;
                    for s in seqs {
                        let (rsv1, payload, len) = unframe(&out[at..]);
                        at += len;
                        assert!(rsv1, "compressed: RSV1");
                        let req = PubSubReq::decode(&inflate(&payload, window_bits)[..]).expect("a PubSubReq");
                        assert_eq!(req.sequence, s, "{c:?}, state of {} bytes", state.len());
                        assert_eq!(req.req, Some(pub_sub_req::Req::CmdPing(CmdPing { state: state.clone() })));
                    }
                    assert_eq!(at, out.len());
                }
            }
        }
    }

    #[test]
    fn a_template_request_is_a_stored_sequence_then_what_zlib_makes_of_the_rest() {
        let state = &states()[1];
        let message = ping_bytes((1 << 56) + 99, state);
        let mut r = Requests::new(state, [1, 2, 3, 4], Compression::Template { level: 6, window_bits: 15 });
        let mut out = Vec::new();
        r.push(&mut out, (1 << 56) + 99);
        let (_, payload, _) = unframe(&out);
        assert_eq!(payload[..5], STORED_HEADER);
        assert_eq!(payload[5..15], message[..10]);
        assert_eq!(payload[15..], deflate_alone(&message[10..], 6, 15)[..]);
        // The state compresses: the request is smaller than the message.
        assert!(payload.len() < message.len() / 2, "{} of {}", payload.len(), message.len());
        // --compress-each sends what zlib makes of the whole message, each time the same.
        let mut each = Requests::new(state, [1, 2, 3, 4], Compression::Each { level: 6, window_bits: 15 });
        let mut out = Vec::new();
        for _ in 0..2 {
            out.clear();
            each.push(&mut out, (1 << 56) + 99);
            assert_eq!(unframe(&out).1, deflate_alone(&message, 6, 15));
        }
    }

    #[test]
    fn uncompressed_requests_are_the_messages() {
        for state in states() {
            let mut r = Requests::new(&state, [9, 8, 7, 6], Compression::Off);
            let mut out = Vec::new();
            for s in [1i64 << 56, (1 << 56) + 12345] {
                out.clear();
                r.push(&mut out, s);
                let (rsv1, payload, len) = unframe(&out);
                assert!(!rsv1);
                assert_eq!(len, out.len());
                assert_eq!(payload, ping_bytes(s, &state));
            }
        }
    }

    #[test]
    fn sequences_are_nine_byte_varints() {
        for s in [1i64 << 56, (1 << 56) + (3 << 32) + 5, i64::MAX - 1] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(s as u64, &mut buf);
            assert_eq!(buf, seq_varint(s));
        }
    }

    #[test]
    #[should_panic(expected = "not a 9-byte varint")]
    fn a_short_sequence_is_refused() {
        seq_varint(5);
    }
}
