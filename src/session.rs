//! One pubsub connection, without I/O: bytes in, steps for the handler loop out, reply bytes queued.
//!
//! The Lua loop feeds what the socket gave, then calls [`Session::step`] until it needs more bytes.
//! Control frames and protocol errors are answered here; commands are handed out to be served, and
//! their replies are queued in arrival order. All output goes through one queue ([`Output`]), which
//! the loop drains with whole-frame writes: the one writer path that keeps replies ordered.

use std::collections::VecDeque;

use crate::frame::{self, close_code, Decoder, Event, Limits, Opcode, Poll, ProtocolError};
use crate::message::{EncodeError, Op, ReplyEncoder, RequestDecoder};
use crate::schema::Field;

/// Longest text-frame preview put in a log line, in input bytes.
pub const PREVIEW_LEN: usize = 256;

/// What the loop has to do next.
#[derive(Debug)]
pub enum Step<'a> {
    /// Every complete frame is served: send the queued output, then feed more bytes.
    NeedMore,
    /// A command to hand to its handler; then call [`Session::reply_finish`] or [`Session::reply_error`].
    Command {
        /// The request's sequence (the reply carries it back).
        sequence: i64,
        /// Which command.
        command: &'static Field,
        /// How to build its parameter table.
        ops: &'a [Op],
        /// The request bytes, where [`crate::message::op::BYTES`] values point.
        payload: &'a [u8],
        /// Where [`crate::message::op::TEXT`] values point.
        text: &'a [u8],
    },
    /// A request without a command (APISIX logs a warning and sends nothing).
    Empty,
    /// A binary message that is not a `PubSubReq`; the `wrong command` reply is queued.
    Undecodable(&'a str),
    /// A text message; the preview is escaped and cut for a log line. Nothing is sent.
    Text(&'a str),
    /// The peer closed; the echo is queued. The session is over.
    Closed(u16),
    /// The peer broke the protocol; the closing frame is queued. The session is over.
    Failed(ProtocolError),
    /// The session was over already.
    Ended,
}

/// Queued output: whole frames, drained front first.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
    start: usize,
    /// End offsets (in `buf`) of the queued frames.
    ends: VecDeque<usize>,
}

impl Output {
    /// Queued bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.buf);
        self.ends.push_back(self.buf.len());
    }

    /// The longest run of whole frames at the front that fits in `max` bytes, or the first frame
    /// alone when it is larger.
    pub fn peek(&self, max: usize) -> &[u8] {
        let start = self.start;
        let fit = self.ends.partition_point(|&e| e - start <= max);
        let end = match fit {
            0 => self.ends.front().copied().unwrap_or(start),
            n => self.ends[n - 1],
        };
        &self.buf[start..end]
    }

    /// Drops `n` bytes from the front (what a write sent).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        while self.ends.front().is_some_and(|&e| e <= self.start) {
            self.ends.pop_front();
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.ends.clear();
            self.start = 0;
        }
    }
}

/// Options of a [`Session`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Frame and message limits for what the client sends.
    pub limits: Limits,
    /// Split replies into frames of at most this many payload bytes (`None`: one frame each).
    pub fragment: Option<usize>,
}

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    opts: Options,
    frames: Decoder,
    requests: RequestDecoder,
    encoder: ReplyEncoder,
    out: Output,
    sequence: i64,
    awaiting_reply: bool,
    ended: bool,
    note: String,
}

impl Session {
    /// A session with these options.
    pub fn new(opts: Options) -> Session {
        Session {
            opts,
            frames: Decoder::new(opts.limits),
            requests: RequestDecoder::new(),
            encoder: ReplyEncoder::new(),
            out: Output::default(),
            sequence: 0,
            awaiting_reply: false,
            ended: false,
            note: String::new(),
        }
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        self.frames.feed(data);
    }

    /// The frame decoder (to ask whether the peer is mid-message, and what it was sending).
    pub fn frames(&self) -> &Decoder {
        &self.frames
    }

    /// The output queue.
    pub fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    /// True once a close was received, sent or forced by an error.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Serves frames until a command needs its handler, or until more bytes are needed.
    pub fn step(&mut self) -> Step<'_> {
        if self.awaiting_reply {
            // The loop moved on without replying: the client still gets its one reply.
            self.reply_error(b"");
        }
        if self.ended {
            return Step::Ended;
        }
        let Session { frames, out, opts, .. } = self;
        let polled = frames.poll_data(|ev| {
            if let Event::Ping(p) = ev {
                out.push_with(|b| frame::encode_frame(b, Opcode::Pong, p));
            }
            true
        });
        let event = match polled {
            Ok(Poll::NeedMore(_)) => return Step::NeedMore,
            Ok(Poll::Event(ev)) => ev,
            Err(e) => {
                self.ended = true;
                self.out.push_with(|b| frame::encode_close(b, e.close_code(), ""));
                return Step::Failed(e);
            }
        };
        match event {
            Event::Ping(_) | Event::Pong(_) => unreachable!("control frames are taken care of above"),
            Event::Close(status) => {
                let code = status.map_or(close_code::NORMAL, |(c, _)| c);
                self.ended = true;
                out.push_with(|b| frame::encode_close(b, code, ""));
                Step::Closed(code)
            }
            Event::Text(t) => {
                preview(&mut self.note, t);
                Step::Text(&self.note)
            }
            Event::Binary(payload) => match self.requests.decode(payload) {
                Err(e) => {
                    use std::fmt::Write as _;
                    self.note.clear();
                    let _ = write!(self.note, "{e}");
                    let reply = self.encoder.error_reply(0, 0, b"wrong command");
                    let fragment = opts.fragment;
                    out.push_with(|b| frame::encode_message(b, Opcode::Binary, reply, fragment));
                    Step::Undecodable(&self.note)
                }
                Ok(req) => {
                    let Some(command) = req.command else {
                        return Step::Empty;
                    };
                    self.sequence = req.sequence;
                    self.awaiting_reply = true;
                    Step::Command { sequence: req.sequence, command, ops: req.ops, payload, text: req.text }
                }
            },
        }
    }

    /// Starts the reply to the command handed out last; fill it through [`Session::encoder`].
    pub fn reply_begin(&mut self) {
        self.encoder.begin(self.sequence);
    }

    /// The encoder of the reply being built.
    pub fn encoder(&mut self) -> &mut ReplyEncoder {
        &mut self.encoder
    }

    /// Queues the reply built since [`Session::reply_begin`].
    pub fn reply_finish(&mut self) -> Result<(), EncodeError> {
        let reply = self.encoder.finish()?;
        let fragment = self.opts.fragment;
        self.out.push_with(|b| frame::encode_message(b, Opcode::Binary, reply, fragment));
        self.awaiting_reply = false;
        Ok(())
    }

    /// Queues `error_resp {code = 0, message}` as the reply to the command handed out last.
    pub fn reply_error(&mut self, message: &[u8]) {
        let reply = self.encoder.error_reply(self.sequence, 0, message);
        let fragment = self.opts.fragment;
        self.out.push_with(|b| frame::encode_message(b, Opcode::Binary, reply, fragment));
        self.awaiting_reply = false;
    }

    /// Queues a close frame and ends the session (worker exiting, read stall). Does nothing if the
    /// session has ended already: one close frame per connection.
    pub fn close(&mut self, code: u16, reason: &str) {
        if !self.ended {
            self.ended = true;
            self.out.push_with(|b| frame::encode_close(b, code, reason));
        }
    }
}

/// Writes into `out` a log-safe preview of `text`: control characters and backslashes escaped,
/// cut after [`PREVIEW_LEN`] input bytes with the full length noted.
pub fn preview(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.clear();
    let mut taken = 0;
    for c in text.chars() {
        if taken + c.len_utf8() > PREVIEW_LEN {
            let _ = write!(out, "...({} bytes)", text.len());
            return;
        }
        taken += c.len_utf8();
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::client_frame;
    use crate::proto;
    use prost::Message as _;

    const M: [u8; 4] = [1, 2, 3, 4];

    fn ping_req(seq: i64, state: &[u8]) -> Vec<u8> {
        let req = proto::PubSubReq { sequence: seq, req: Some(proto::pub_sub_req::Req::CmdPing(proto::CmdPing { state: state.to_vec() })) };
        client_frame(true, 2, &req.encode_to_vec(), M)
    }

    /// Splits the output queue into (opcode, payload) frames.
    fn frames(out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut d = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let op = out[pos] & 0x0f;
            let (len, hdr) = match out[pos + 1] {
                126 => (u16::from_be_bytes([out[pos + 2], out[pos + 3]]) as usize, 4),
                127 => (u64::from_be_bytes(out[pos + 2..pos + 10].try_into().unwrap()) as usize, 10),
                n => (n as usize, 2),
            };
            d.push((op, out[pos + hdr..pos + hdr + len].to_vec()));
            pos += hdr + len;
        }
        d
    }

    fn drain(s: &mut Session) -> Vec<(u8, Vec<u8>)> {
        let out = s.output().peek(usize::MAX).to_vec();
        let n = out.len();
        s.output().consume(n);
        frames(&out)
    }

    #[test]
    fn replies_keep_request_order_and_close_comes_last() {
        let mut s = Session::new(Options::default());
        let mut input = ping_req(1, b"a");
        input.extend(client_frame(true, 9, b"p", M));
        input.extend(ping_req(2, b"b"));
        input.extend(client_frame(true, 8, &1001u16.to_be_bytes(), M));
        s.feed(&input);
        for want in [1, 2] {
            match s.step() {
                Step::Command { sequence, command, .. } => assert_eq!((sequence, command.name), (want, "cmd_ping")),
                other => panic!("{other:?}"),
            }
            s.reply_error(b"x");
        }
        assert!(matches!(s.step(), Step::Closed(1001)));
        assert!(matches!(s.step(), Step::Ended));
        let out = drain(&mut s);
        let ops: Vec<u8> = out.iter().map(|f| f.0).collect();
        assert_eq!(ops, [2, 10, 2, 8]);
        assert_eq!(out[1].1, b"p");
        assert_eq!(out[3].1, 1001u16.to_be_bytes());
    }

    #[test]
    fn close_without_status_is_echoed_as_1000() {
        let mut s = Session::new(Options::default());
        s.feed(&client_frame(true, 8, b"", M));
        assert!(matches!(s.step(), Step::Closed(1000)));
        assert_eq!(drain(&mut s), [(8, 1000u16.to_be_bytes().to_vec())]);
    }

    #[test]
    fn undecodable_gets_wrong_command_with_sequence_0() {
        let mut s = Session::new(Options::default());
        s.feed(&client_frame(true, 2, &[0x08], M));
        assert!(matches!(s.step(), Step::Undecodable("truncated varint at offset 1")));
        let out = drain(&mut s);
        let resp = proto::PubSubResp::decode(&out[0].1[..]).unwrap();
        assert_eq!(resp.sequence, 0);
        assert!(matches!(resp.resp, Some(proto::pub_sub_resp::Resp::ErrorResp(ref e)) if e.message == "wrong command"));
    }

    #[test]
    fn a_command_left_unanswered_still_gets_one_reply() {
        let mut s = Session::new(Options::default());
        s.feed(&ping_req(77, b""));
        assert!(matches!(s.step(), Step::Command { .. }));
        assert!(matches!(s.step(), Step::NeedMore));
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(proto::PubSubResp::decode(&out[0].1[..]).unwrap().sequence, 77);
    }

    #[test]
    fn protocol_errors_queue_the_close_code() {
        let mut s = Session::new(Options::default());
        s.feed(&[0x82, 0x01, 0x00]);
        assert!(matches!(s.step(), Step::Failed(ProtocolError::Unmasked)));
        assert_eq!(drain(&mut s), [(8, 1002u16.to_be_bytes().to_vec())]);
        s.close(1001, "");
        assert!(s.output().is_empty(), "one close frame per connection");
    }

    #[test]
    fn empty_and_text() {
        let mut s = Session::new(Options::default());
        s.feed(&client_frame(true, 2, b"", M));
        s.feed(&client_frame(true, 1, b"a\nb\x1b[31m\\", M));
        assert!(matches!(s.step(), Step::Empty));
        match s.step() {
            Step::Text(p) => assert_eq!(p, "a\\nb\\u{1b}[31m\\\\"),
            other => panic!("{other:?}"),
        }
        assert!(s.output().is_empty());
    }

    #[test]
    fn preview_is_cut() {
        let mut out = String::new();
        preview(&mut out, &"x".repeat(10_000));
        assert_eq!(out, format!("{}...(10000 bytes)", "x".repeat(PREVIEW_LEN)));
    }

    #[test]
    fn output_peek_takes_whole_frames_up_to_the_limit() {
        let mut o = Output::default();
        for len in [10usize, 20, 30] {
            o.push_with(|b| b.extend(std::iter::repeat(0).take(len)));
        }
        assert_eq!(o.peek(35).len(), 30);
        assert_eq!(o.peek(5).len(), 10, "a frame larger than the limit goes alone");
        o.consume(10);
        assert_eq!(o.peek(1000).len(), 50);
        o.consume(50);
        assert!(o.is_empty());
    }

    #[test]
    fn replies_can_be_fragmented() {
        let mut s = Session::new(Options { fragment: Some(4), ..Options::default() });
        s.feed(&ping_req(1, b"0123456789"));
        assert!(matches!(s.step(), Step::Command { .. }));
        s.reply_error(b"0123456789");
        let out = drain(&mut s);
        assert!(out.len() > 2);
        assert_eq!(out[0].0, 2);
        assert!(out[1..].iter().all(|f| f.0 == 0));
    }
}
