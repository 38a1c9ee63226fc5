//! Reading ping replies cheaply: compressed ones inflated with one state reused for every message,
//! and every reply checked against the bytes it should have.

use apisix_pubsub_rs::deflate::TAIL;
use apisix_pubsub_rs::proto::{pub_sub_resp, PongResp, PubSubResp};
use flate2::{Decompress, FlushDecompress, Status};
use prost::Message as _;

use crate::requests::seq_varint;

/// Inflates a connection's compressed replies (permessage-deflate, unfragmented messages): one
/// state for the connection, reset after each message when the server agreed to
/// `server_no_context_takeover`, kept otherwise; output goes into a buffer kept between messages,
/// written without being zeroed first.
pub struct ReplyInflater {
    state: Decompress,
    reset: bool,
    /// A message's payload with the tail appended, so a message is one inflate call.
    input: Vec<u8>,
    out: Vec<u8>,
    max: usize,
}

/// A compressed reply that did not inflate: corrupt, or larger than the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct BadReply(pub &'static str);

impl ReplyInflater {
    /// For replies compressed with a window of at most 2^15 bytes; `context_takeover` as the
    /// server agreed; a message inflating to more than `max` bytes is an error.
    pub fn new(context_takeover: bool, max: usize) -> ReplyInflater {
        ReplyInflater { state: Decompress::new_with_window_bits(false, 15), reset: !context_takeover, input: Vec::new(), out: Vec::new(), max }
    }

    /// The inflated message of one frame's `payload`. A stream ended by a final block (BFINAL,
    /// which RFC 7692 lets a sender use) ends there, and the next message starts a new one.
    pub fn inflate(&mut self, payload: &[u8]) -> Result<&[u8], BadReply> {
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&TAIL);
        self.out.clear();
        // Room for a few times the input at first; the buffer keeps its capacity afterwards.
        self.out.reserve((4 * self.input.len()).max(4096).min(self.max + 1));
        let mut taken = 0;
        let mut ended = false;
        loop {
            if self.out.len() == self.out.capacity() {
                self.out.reserve(self.out.capacity());
            }
            let (in_before, out_before) = (self.state.total_in(), self.out.len());
            // decompress_vec writes into the spare capacity as it is, not zeroed first.
            let status = self.state.decompress_vec(&self.input[taken..], &mut self.out, FlushDecompress::Sync);
            let status = status.map_err(|_| BadReply("corrupt compressed reply"))?;
            taken += (self.state.total_in() - in_before) as usize;
            if self.out.len() > self.max {
                return Err(BadReply("compressed reply inflates past the limit"));
            }
            let room_left = self.out.len() < self.out.capacity();
            match status {
                Status::StreamEnd => {
                    ended = true;
                    break;
                }
                _ if taken == self.input.len() && room_left => break,
                _ if room_left && self.out.len() == out_before && self.state.total_in() == in_before => {
                    return Err(BadReply("compressed reply that does not inflate"));
                }
                _ => {}
            }
        }
        if self.reset || ended {
            self.state.reset(false);
        }
        Ok(&self.out)
    }
}

/// What the replies of a connection must be: `PongResp` with its request's sequence and state.
pub struct ExpectedReply {
    /// The encoding of a reply but for the sequence's 9 varint bytes at 1..10.
    bytes: Vec<u8>,
    state: Vec<u8>,
}

impl ExpectedReply {
    /// For pings carrying `state`.
    pub fn new(state: &[u8]) -> ExpectedReply {
        let bytes = PubSubResp { sequence: 1 << 56, resp: Some(pub_sub_resp::Resp::PongResp(PongResp { state: state.to_vec() })) }.encode_to_vec();
        ExpectedReply { bytes, state: state.to_vec() }
    }

    /// Whether `reply` answers the ping of sequence `seq`: the bytes this module's encoder gives
    /// are compared as they are; anything else (another server's encoding: other field order,
    /// longer varints) is decoded and its sequence and state compared. With `full` false only
    /// the state's length is checked (a server that answers with a precomputed reply).
    pub fn check(&self, reply: &[u8], seq: i64, full: bool) -> Result<(), String> {
        if full && reply.len() == self.bytes.len() && reply[0] == self.bytes[0] && reply[10..] == self.bytes[10..] && reply[1..10] == seq_varint(seq) {
            return Ok(());
        }
        match PubSubResp::decode(reply) {
            Ok(PubSubResp { sequence, resp: Some(pub_sub_resp::Resp::PongResp(p)) }) => {
                if full && sequence == seq && p.state == self.state || !full && p.state.len() == self.state.len() {
                    Ok(())
                } else {
                    Err(format!("bad reply to {seq}: sequence {sequence}, state of {} bytes", p.state.len()))
                }
            }
            Ok(r) => Err(format!("bad reply to {seq}: sequence {}, not a pong", r.sequence)),
            Err(e) => Err(format!("bad reply to {seq}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::deflate_alone;

    fn reply(seq: i64, state: &[u8]) -> Vec<u8> {
        PubSubResp { sequence: seq, resp: Some(pub_sub_resp::Resp::PongResp(PongResp { state: state.to_vec() })) }.encode_to_vec()
    }

    fn json(len: usize) -> Vec<u8> {
        (0..).flat_map(|i| format!("{{\"id\":{i},\"side\":\"sell\"}},").into_bytes()).take(len).collect()
    }

    #[test]
    fn replies_inflate_one_after_another() {
        let mut inf = ReplyInflater::new(false, 1 << 20);
        for (i, len) in [1024, 16, 60_000, 0, 1024, 200_000].into_iter().enumerate() {
            let m = reply((1 << 56) + i as i64, &json(len));
            for level in [1, 6] {
                let got = inf.inflate(&deflate_alone(&m, level, 15)).expect("inflates");
                assert_eq!(got, &m[..], "message {i} of {len} bytes");
            }
        }
    }

    #[test]
    fn with_context_takeover_the_window_is_kept() {
        let m = reply(1 << 56, &json(1024));
        let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut inf = ReplyInflater::new(true, 1 << 20);
        for _ in 0..3 {
            let mut out = Vec::with_capacity(4096);
            z.compress_vec(&m, &mut out, flate2::FlushCompress::Sync).unwrap();
            out.truncate(out.len() - 4);
            assert_eq!(inf.inflate(&out).expect("inflates"), &m[..]);
        }
    }

    #[test]
    fn bad_compressed_replies_are_errors() {
        let m = reply(1 << 56, &json(4096));
        let z = deflate_alone(&m, 6, 15);
        assert!(ReplyInflater::new(false, 1 << 20).inflate(&[0xff, 0xff, 0xff]).is_err(), "corrupt");
        // A truncated stream may inflate without an error, to something else: the check sees it.
        assert_ne!(ReplyInflater::new(false, 1 << 20).inflate(&z[..z.len() / 2]).ok(), Some(&m[..]), "truncated");
        assert_eq!(ReplyInflater::new(false, 4095).inflate(&z), Err(BadReply("compressed reply inflates past the limit")));
        assert!(ReplyInflater::new(false, m.len()).inflate(&z).is_ok(), "at the limit");
    }

    #[test]
    fn a_final_block_ends_the_message() {
        let m = reply(1 << 56, &json(4096));
        let mut inf = ReplyInflater::new(true, 1 << 20);
        for _ in 0..2 {
            let mut fin = flate2::Compress::new(flate2::Compression::new(6), false);
            let mut out = Vec::with_capacity(8192);
            fin.compress_vec(&m, &mut out, flate2::FlushCompress::Finish).unwrap();
            assert_eq!(inf.inflate(&out).expect("inflates"), &m[..]);
        }
    }

    #[test]
    fn a_reply_must_carry_its_sequence_and_state() {
        let state = json(1024);
        let e = ExpectedReply::new(&state);
        let seq = (1 << 56) + (5 << 32) + 77;
        assert_eq!(e.check(&reply(seq, &state), seq, true), Ok(()));
        assert!(e.check(&reply(seq + 1, &state), seq, true).is_err(), "another sequence");
        assert!(e.check(&reply(seq + (1 << 40), &state), seq, true).is_err(), "another sequence, high bits");
        let mut other = state.clone();
        other[500] ^= 1;
        assert!(e.check(&reply(seq, &other), seq, true).is_err(), "another state");
        assert!(e.check(&reply(seq, &state[1..]), seq, true).is_err(), "a shorter state");
        assert!(e.check(&[], seq, true).is_err(), "empty");
        assert!(e.check(&reply(seq, &state)[..100], seq, true).is_err(), "truncated");
        // Length only: the state's bytes may differ.
        assert_eq!(e.check(&reply(1, &other), seq, false), Ok(()));
        assert!(e.check(&reply(1, &state[1..]), seq, false).is_err());
    }

    #[test]
    fn another_encoding_of_the_right_reply_passes() {
        let state = json(300);
        let e = ExpectedReply::new(&state);
        let seq = (1 << 56) + 3;
        // The pong first, then the sequence: valid protobuf, not byte-equal to ours.
        let ours = reply(seq, &state);
        let mut swapped = ours[10..].to_vec();
        swapped.extend_from_slice(&ours[..10]);
        assert_eq!(e.check(&swapped, seq, true), Ok(()));
        // The sequence written twice (the last one counts): the first is wrong.
        let mut twice = reply(seq + 1, &state)[..10].to_vec();
        twice.extend_from_slice(&ours);
        assert_eq!(e.check(&twice, seq, true), Ok(()));
        let mut twice_wrong = ours[..10].to_vec();
        twice_wrong.extend_from_slice(&reply(seq + 1, &state));
        assert!(e.check(&twice_wrong, seq, true).is_err());
    }
}
