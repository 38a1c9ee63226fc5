//! One pubsub connection, without I/O: bytes in, steps for the handler loop out, output queued.
//!
//! The Lua loop feeds what the socket gave, then calls [`Session::step`] until it needs more bytes.
//! Control frames and protocol errors are answered here; commands are handed out to be served, and
//! their replies are queued in arrival order. All output goes through the session's
//! [`OutputQueue`], which the connection's one writer drains ([`Session::chunk`],
//! [`Session::consume`]).

use std::sync::Arc;

use crate::deflate::{self, Inflater, Sender};
use crate::frame::{self, close_code, Decoder, Event, Limits, Opcode, Poll, ProtocolError};
use crate::message::{op, EncodeError, Op, ReplyEncoder, RequestDecoder};
use crate::metrics::{self, error_kind, message_type, WORKER as METRICS};
use crate::message::encode::Taken;
use crate::queue::{OutputQueue, PushError};
use crate::schema::{Field, Schema};

pub use crate::queue::{Chunk, WRITE_BATCH, WRITE_MAX};

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
        command: Field,
        /// How to build its parameter table.
        ops: &'a [Op],
        /// The request bytes, where [`op::BYTES`] values point.
        payload: &'a [u8],
        /// Where [`op::TEXT`] values point.
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

/// Options of a [`Session`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Frame and message limits for what the client sends.
    pub limits: Limits,
    /// Split replies into frames of at most this many payload bytes (`None`: one frame each).
    pub fragment: Option<usize>,
    /// Refuse a push that would make the queue hold more than this many bytes (`None`: no limit).
    /// Replies are never refused.
    pub max_queue_bytes: Option<usize>,
}

/// Why [`Session::push_finish`] or [`Session::push_message`] queued nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushFailure {
    /// The message did not encode.
    #[error("failed to encode: {0}")]
    Encode(EncodeError),
    /// The queue refused it.
    #[error(transparent)]
    Queue(#[from] PushError),
}

/// Pings whose state is shorter than this are answered in Rust when the default handler is in
/// place: there the parameter and reply tables cost more than the bytes.
const ECHO_BELOW: usize = 4096;
/// So are pings whose state is at least this long: a Lua string this size is mapped and unmapped
/// by LuaJIT's allocator each time. Between the two, the Lua path is cheaper: the state becomes
/// one Lua string, which the reply holds by reference, where an echo here would copy it twice.
const ECHO_FROM: usize = 128 * 1024;
/// Output waits for the rest of a frame still arriving when at most this much of it is missing
/// (see [`Session::write_due`]).
const WAIT_FOR_FRAME: usize = 4096;

/// The `state` of a `cmd_ping` request: the last one in it (as a parameter table would hold), or
/// empty.
fn ping_state<'a>(state_id: u16, ops: &[Op], payload: &'a [u8]) -> &'a [u8] {
    let mut depth = 0usize;
    let mut state: &[u8] = &[];
    for o in ops {
        match o.code & !op::REPEATED {
            op::OPEN => depth += 1,
            op::CLOSE => depth = depth.saturating_sub(1),
            op::BYTES if depth == 0 && o.field == u32::from(state_id) => state = &payload[o.offset..o.offset + o.len],
            _ => {}
        }
    }
    state
}

/// Queues a message that `fill` writes whole after `begin_in` (from schema ids: it cannot fail).
fn queue_reply(
    out: &mut OutputQueue,
    deflate: Option<&mut Sender>,
    encoder: &mut ReplyEncoder,
    hint: usize,
    sequence: i64,
    fill: impl FnOnce(&mut ReplyEncoder),
) {
    encoder.begin_in(out.lend(hint), sequence);
    fill(encoder);
    let sealed = encoder.take().map(|taken| seal_deflated(out, deflate, None, taken, |out, taken| out.seal(taken)));
    if let Err(e) = sealed {
        debug_assert!(false, "{e:?}");
        out.restore(encoder.abandon());
    }
}

/// Samples a push's outcome into the worker's metrics; `pending`: the queue after it.
fn count_push(queued: Result<(), PushError>, pending: usize) -> Result<(), PushError> {
    match queued {
        Ok(()) => METRICS.queue_depth(pending),
        Err(e) => METRICS.push_refused(e == PushError::QueueFull),
    }
    queued
}

/// permessage-deflate: queues `taken` with `seal`, its payload compressed first when the
/// connection agreed to compression and the message is to be compressed (RSV1 then set on its
/// first frame). A message holding values by reference goes uncompressed: their bytes are not here.
///
/// With server context takeover a message compressed is in the window both sides keep: one
/// that a queue `limit` may refuse is compressed only if it would fit uncompressed.
fn seal_deflated<R>(
    out: &mut OutputQueue,
    deflate: Option<&mut Sender>,
    limit: Option<usize>,
    mut taken: Taken<'_>,
    seal: impl FnOnce(&mut OutputQueue, Taken<'_>) -> R,
) -> R {
    // Without compression, nothing more than the seal.
    let Some(d) = deflate else { return seal(out, taken) };
    let len = taken.buf.len() - taken.base;
    let fits_plain = limit.map_or(true, |l| fits(out, len, l));
    let compressed = taken.held == 0 && (!d.context_takeover() || fits_plain) && d.deflate_tail(&mut taken.buf, taken.base);
    let mark = out.total_queued();
    let sealed = seal(out, taken);
    if compressed && out.total_queued() > mark {
        out.flag_compressed(mark, 0);
    }
    sealed
}

/// Whether a message of `len` bytes fits in `out` under `limit`.
fn fits(out: &OutputQueue, len: usize, limit: usize) -> bool {
    out.pending() + frame::header_len(len) + len <= limit
}

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    frames: Decoder,
    requests: RequestDecoder,
    encoder: ReplyEncoder,
    out: OutputQueue,
    /// Answer `cmd_ping` here as the default handler would, without handing it out.
    echo_ping: bool,
    /// The command handed out last, and its sequence.
    command: Option<Field>,
    sequence: i64,
    /// Payload length of the last request: replies tend to be of its size, so it picks the header
    /// room of the next reply.
    hint: usize,
    awaiting_reply: bool,
    /// When the command was handed out ([`metrics::now_us`]), for the handler-time histogram.
    handed_out: u64,
    /// When the last reply was queued, until the next step: a command handed out by that step
    /// starts then (the Rust work between the two is well under a microsecond), so a pipelined
    /// batch reads the clock once per command, not twice. 0: read the clock.
    served_at: u64,
    ended: bool,
    /// See [`Options::max_queue_bytes`].
    max_queue: usize,
    /// The words of the last [`Step::Undecodable`] or [`Step::Text`].
    note: String,
    /// permessage-deflate, when negotiated: the sending side (the receiving side is the frame
    /// decoder's inflater).
    deflate: Option<Box<Sender>>,
}

impl Session {
    /// A session of `schema` with these options.
    pub fn new(schema: Arc<Schema>, opts: Options) -> Session {
        Session {
            frames: Decoder::new(opts.limits),
            requests: RequestDecoder::new(schema.clone()),
            encoder: ReplyEncoder::new(schema),
            out: OutputQueue::new(opts.fragment),
            echo_ping: false,
            command: None,
            sequence: 0,
            hint: 0,
            awaiting_reply: false,
            handed_out: 0,
            served_at: 0,
            ended: false,
            max_queue: opts.max_queue_bytes.unwrap_or(usize::MAX),
            note: String::new(),
            deflate: None,
        }
    }

    /// Turns on permessage-deflate with what the handshake agreed (`params`) under `config`:
    /// compressed messages are inflated as they arrive, and replies and pushes of at least the
    /// threshold are sent compressed.
    pub fn set_compression(&mut self, params: deflate::Params, config: deflate::Config) {
        self.frames.set_inflater(Inflater::new(&params));
        self.deflate = Some(Box::new(Sender::new(params, config)));
    }

    /// The sending side of permessage-deflate, when it was negotiated.
    pub fn compression(&self) -> Option<&Sender> {
        self.deflate.as_deref()
    }

    /// The schema of the session's messages.
    pub fn schema(&self) -> &Arc<Schema> {
        self.requests.schema()
    }

    /// Appends bytes read from the socket. Returns how many more are needed at least before
    /// [`Session::step`] can make progress (0: step now).
    pub fn feed(&mut self, data: &[u8]) -> usize {
        METRICS.bytes_in(data.len());
        self.frames.feed(data)
    }

    /// The frame decoder (to ask whether the peer is mid-message, and what it was sending).
    pub fn frames(&self) -> &Decoder {
        &self.frames
    }

    /// Whether `cmd_ping` is answered here, as the default handler of APISIX answers it (a pong
    /// with the request's state), instead of being handed out: for a caller that has no handler
    /// of its own for it. Pings with a state of 4 KiB up to 128 KiB are handed out all the same
    /// (see `ECHO_BELOW`, `ECHO_FROM`).
    pub fn set_echo_ping(&mut self, on: bool) {
        self.echo_ping = on;
    }

    /// Queued output bytes, held values included.
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// How many queued bytes one write should carry at most (see [`OutputQueue::write_size`]).
    pub fn write_size(&self) -> usize {
        self.out.write_size()
    }

    /// How many queued bytes to write before reading more: all of them, except for a connection's
    /// first write while a small frame is partly received (at most [`WAIT_FOR_FRAME`] bytes
    /// missing). Its rest is on its way, with more requests behind it, so then only whole writes
    /// of [`Session::write_size`] go out, none if less is queued: the first write is as large as
    /// the later ones, and nginx sizes the connection's send buffer once (see [`WRITE_BATCH`]). A
    /// client that stalls there holds back only its own first replies, until its read timeout
    /// ends it.
    pub fn write_due(&self) -> usize {
        let need = self.frames.need();
        if self.out.wrote() || self.ended || need == 0 || need > WAIT_FOR_FRAME || !self.frames.is_mid_message() {
            return self.out.pending();
        }
        self.out.whole_writes()
    }

    /// The queued bytes that fill whole writes (see [`OutputQueue::whole_writes`]).
    pub fn whole_writes(&self) -> usize {
        self.out.whole_writes()
    }

    /// The front of the queue: up to `max` queued bytes before the next held value, or that value.
    /// `None` when nothing is queued.
    pub fn chunk(&self, max: usize) -> Option<Chunk<'_>> {
        self.out.chunk(max)
    }

    /// Drops `n` bytes from the front of the queue (what a write sent), held values included.
    pub fn consume(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// The socket took less than was queued, on a push: see [`OutputQueue::backlogged`].
    pub fn backlogged(&mut self) {
        self.out.backlogged(self.max_queue);
    }

    /// Whether a write of queued bytes is under way: taken from the queue, not yet confirmed by
    /// [`Session::written`].
    pub fn writing(&self) -> bool {
        self.out.in_flight() > 0
    }

    /// The queued output from the front as the pieces of one gathered write (see
    /// [`OutputQueue::pieces`]).
    pub fn pieces<'a>(&'a self, max: usize, resolve: impl FnMut(u32) -> Option<&'a [u8]>, each: impl FnMut(&'a [u8])) -> usize {
        self.out.pieces(max, resolve, each)
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
        let served_at = std::mem::take(&mut self.served_at);
        if self.ended {
            return Step::Ended;
        }
        // A reply begun and never finished or failed is dropped.
        self.abandon();
        loop {
            let Session { frames, out, encoder, requests, deflate, .. } = self;
            let polled = frames.poll_data(|ev| {
                if let Event::Ping(p) = ev {
                    METRICS.received(message_type::PING);
                    METRICS.pong();
                    out.push_frames(|b| frame::encode_frame(b, Opcode::Pong, p));
                } else if let Event::Pong(_) = ev {
                    METRICS.received(message_type::PONG);
                }
                true
            });
            let event = match polled {
                Ok(Poll::NeedMore(_)) => {
                    METRICS.queue_depth(out.pending());
                    return Step::NeedMore;
                }
                Ok(Poll::Event(ev)) => ev,
                Err(e) => {
                    METRICS.protocol_error(&e);
                    self.ended = true;
                    out.push_frames(|b| frame::encode_close(b, e.close_code(), ""));
                    return Step::Failed(e);
                }
            };
            let payload = match event {
                Event::Ping(_) | Event::Pong(_) => unreachable!("control frames are taken care of above"),
                Event::Close(status) => {
                    let code = status.map_or(close_code::NORMAL, |(c, _)| c);
                    METRICS.received(message_type::CLOSE);
                    self.ended = true;
                    out.push_frames(|b| frame::encode_close(b, code, ""));
                    return Step::Closed(code);
                }
                Event::Text(t) => {
                    METRICS.received(message_type::TEXT);
                    preview(&mut self.note, t);
                    return Step::Text(&self.note);
                }
                Event::Binary(payload) => {
                    METRICS.received(message_type::BINARY);
                    payload
                }
            };
            let req = match requests.decode(payload) {
                Ok(req) => req,
                Err(e) => {
                    use std::fmt::Write as _;
                    self.note.clear();
                    let _ = write!(self.note, "{}", e.named(encoder.schema()));
                    self.hint = 0;
                    queue_reply(out, deflate.as_deref_mut(), encoder, 0, 0, |e| e.put_error(0, b"wrong command"));
                    METRICS.reply();
                    METRICS.error_reply(error_kind::UNDECODABLE);
                    return Step::Undecodable(&self.note);
                }
            };
            let Some(command) = req.command else {
                return Step::Empty;
            };
            METRICS.command(command.number);
            let known = *encoder.schema().known();
            if self.echo_ping && command.id == known.ping {
                let state = ping_state(known.ping_state, req.ops, payload);
                if state.len() < ECHO_BELOW || state.len() >= ECHO_FROM {
                    // The pong of the default handler, `{pong_resp = {state = params.state}}`.
                    queue_reply(out, deflate.as_deref_mut(), encoder, payload.len(), req.sequence, |e| e.put_pong(state));
                    METRICS.reply();
                    continue;
                }
            }
            self.sequence = req.sequence;
            self.command = Some(command);
            self.hint = payload.len();
            self.awaiting_reply = true;
            self.handed_out = if served_at != 0 { served_at } else { metrics::now_us() };
            break;
        }
        let (ops, text) = self.requests.last();
        let command = self.command.expect("set before the loop ends");
        Step::Command { sequence: self.sequence, command, ops, payload: self.frames.last_payload(), text }
    }

    /// Starts the reply to the command handed out last; fill it through [`Session::encoder`].
    pub fn reply_begin(&mut self) {
        self.abandon();
        self.encoder.begin_in(self.out.lend(self.hint), self.sequence);
    }

    /// The encoder of the reply being built.
    pub fn encoder(&mut self) -> &mut ReplyEncoder {
        &mut self.encoder
    }

    /// Queues the reply built since [`Session::reply_begin`].
    pub fn reply_finish(&mut self) -> Result<(), EncodeError> {
        if self.ended {
            // Closed meanwhile: nothing may follow the close frame.
            self.awaiting_reply = false;
            self.out.restore(self.encoder.abandon());
            return Ok(());
        }
        if !self.out.is_lent() {
            return Err(EncodeError::Unbalanced);
        }
        let (out, deflate) = (&mut self.out, self.deflate.as_deref_mut());
        self.encoder.take().map(|taken| seal_deflated(out, deflate, None, taken, |out, taken| out.seal(taken)))?;
        METRICS.reply();
        self.time_served();
        self.awaiting_reply = false;
        Ok(())
    }

    /// Samples how long the command awaiting its reply was out: its handler, with its parameter
    /// table and its reply's encoding.
    fn time_served(&mut self) {
        if let (true, Some(c)) = (self.awaiting_reply, self.command) {
            let now = metrics::now_us();
            METRICS.handler_time(c.number, now.saturating_sub(self.handed_out));
            self.served_at = now;
        }
    }

    /// Queues `error_resp {code = 0, message}` as the reply to the command handed out last.
    pub fn reply_error(&mut self, message: &[u8]) {
        self.time_served();
        self.awaiting_reply = false;
        self.abandon();
        if !self.ended {
            queue_reply(&mut self.out, self.deflate.as_deref_mut(), &mut self.encoder, 0, self.sequence, |e| e.put_error(0, message));
            METRICS.reply();
        }
    }

    /// Starts a push with this sequence; fill it through [`Session::encoder`], then call
    /// [`Session::push_finish`]. Nothing is queued until then.
    pub fn push_begin(&mut self, sequence: i64) {
        self.abandon();
        self.encoder.begin_in(self.out.lend_push(self.max_queue), sequence);
    }

    /// Queues the push built since [`Session::push_begin`] after everything queued so far, or
    /// drops it: when it does not encode, when the queue limit refuses it, or when the session has
    /// ended. A refused push leaves the queue as it was.
    pub fn push_finish(&mut self) -> Result<(), PushFailure> {
        if !self.out.is_lent() {
            return Err(PushFailure::Encode(EncodeError::Unbalanced));
        }
        if self.ended {
            self.out.restore(self.encoder.abandon());
            METRICS.push_refused(false);
            return Err(PushError::Closed.into());
        }
        let out = &mut self.out;
        let limit = self.max_queue;
        let deflate = self.deflate.as_deref_mut();
        let sealed = self.encoder.take().map(|taken| seal_deflated(out, deflate, Some(limit), taken, |out, taken| out.seal_push(taken, limit)));
        match sealed {
            Ok(queued) => Ok(count_push(queued, self.out.pending())?),
            Err(e) => {
                self.out.restore(self.encoder.abandon());
                Err(PushFailure::Encode(e))
            }
        }
    }

    /// Readies the session for a push queued whole: refused as closed (and counted so) once the
    /// session has ended, else a reply or push begun and not finished is dropped.
    fn start_push(&mut self) -> Result<(), PushError> {
        if self.ended {
            METRICS.push_refused(false);
            return Err(PushError::Closed);
        }
        self.abandon();
        Ok(())
    }

    /// Queues a push whose encoded `PubSubResp` is `payload`, encoded once for many connections:
    /// by reference, as value `held` of the caller, when given and the session does not fragment,
    /// else copied.
    pub fn push_message(&mut self, payload: &[u8], held: Option<u32>) -> Result<(), PushError> {
        self.start_push()?;
        let queued = match self.deflated(payload) {
            Some(compressed) => self.queue_bytes(&compressed, None, true),
            None => self.queue_bytes(payload, held, false),
        };
        count_push(queued, self.out.pending())
    }

    /// Whether a push may be queued as a whole frame held by reference ([`Session::push_framed`]):
    /// not when messages are cut into fragments or compressed, which need their payload.
    pub fn takes_framed(&self) -> bool {
        !self.out.fragments() && self.deflate.is_none()
    }

    /// Queues a push that is a whole binary frame of `len` bytes, its header included, encoded
    /// once for many connections and held by reference as value `held` of the caller: it is
    /// written from that one string. Only where [`Session::takes_framed`].
    pub fn push_framed(&mut self, len: usize, held: u32) -> Result<(), PushError> {
        debug_assert!(self.takes_framed());
        self.start_push()?;
        let queued = self.out.push_framed(held, len, self.max_queue);
        if queued.is_ok() {
            // (Its header was made once, without counting; each connection counts its frame.)
            crate::metrics::WORKER.frame_out();
        }
        count_push(queued, self.out.pending())
    }

    /// permessage-deflate: `payload` compressed for this connection, when it is to go compressed
    /// (with server context takeover, only if it would fit the queue uncompressed: see
    /// [`seal_deflated`]).
    fn deflated(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let d = self.deflate.as_deref_mut()?;
        if d.context_takeover() && !fits(&self.out, payload.len(), self.max_queue) {
            return None;
        }
        let mut compressed = Vec::new();
        d.deflate_into(payload, &mut compressed).then_some(compressed)
    }

    /// Queues a push made once for all connections of its [`deflate::SharedKey`]
    /// (permessage-deflate): as [`Session::push_message`], with `payload` compressed already and
    /// RSV1 set when `compressed`, or sent as it is when not (it did not compress smaller). Only
    /// for a session whose [`Sender::shared_key`] gave that key.
    pub fn push_deflated(&mut self, payload: &[u8], held: Option<u32>, compressed: bool) -> Result<(), PushError> {
        self.start_push()?;
        let queued = self.queue_bytes(payload, held, compressed);
        count_push(queued, self.out.pending())
    }

    /// Queues `payload`, a whole `PubSubResp` (compressed when `compressed`: RSV1 is then set on
    /// its first frame), as a push: by reference, as value `held` of the caller, when given and
    /// the queue does not fragment, else copied.
    fn queue_bytes(&mut self, payload: &[u8], held: Option<u32>, compressed: bool) -> Result<(), PushError> {
        let mark = self.out.total_queued();
        let held_len = match held {
            Some(id) if !self.out.fragments() => {
                self.out.push_held(id, payload.len(), self.max_queue)?;
                payload.len()
            }
            _ => {
                self.out.push_copy(payload, self.max_queue)?;
                0
            }
        };
        if compressed {
            self.out.flag_compressed(mark, held_len);
        }
        Ok(())
    }

    /// Drops a reply or push begun and not finished.
    pub fn abandon(&mut self) {
        if self.out.is_lent() {
            self.out.restore(self.encoder.abandon());
        }
    }

    /// Pushes queued and not yet wholly written.
    pub fn unsent_pushes(&self) -> usize {
        self.out.unsent_pushes()
    }

    /// Notes that a write of `n` bytes taken from the queue succeeded.
    pub fn written(&mut self, n: usize) {
        let unsent = self.out.unsent_pushes();
        self.out.written(n);
        METRICS.bytes_out(n);
        METRICS.pushes_sent(unsent - self.out.unsent_pushes());
    }

    /// Queues a close frame and ends the session (worker exiting, read stall). Does nothing if the
    /// session has ended already: one close frame per connection.
    pub fn close(&mut self, code: u16, reason: &str) {
        if !self.ended {
            self.ended = true;
            self.awaiting_reply = false;
            self.abandon();
            self.out.push_frames(|b| frame::encode_close(b, code, reason));
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
    use crate::schema::Schema;
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

    /// Up to `max` queued bytes from the front, stopping before a held value.
    fn peek(s: &Session, max: usize) -> Vec<u8> {
        match s.chunk(max) {
            Some(Chunk::Bytes(b)) => b.to_vec(),
            _ => Vec::new(),
        }
    }

    fn drain(s: &mut Session) -> Vec<(u8, Vec<u8>)> {
        let out = peek(s, usize::MAX);
        s.consume(out.len());
        frames(&out)
    }

    #[test]
    fn replies_keep_request_order_and_close_comes_last() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        let mut input = ping_req(1, b"a");
        input.extend(client_frame(true, 9, b"p", M));
        input.extend(ping_req(2, b"b"));
        input.extend(client_frame(true, 8, &1001u16.to_be_bytes(), M));
        s.feed(&input);
        for want in [1, 2] {
            match s.step() {
                Step::Command { sequence, command, .. } => assert_eq!((sequence, command.id), (want, Schema::builtin().known().ping)),
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
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&client_frame(true, 8, b"", M));
        assert!(matches!(s.step(), Step::Closed(1000)));
        assert_eq!(drain(&mut s), [(8, 1000u16.to_be_bytes().to_vec())]);
    }

    #[test]
    fn undecodable_gets_wrong_command_with_sequence_0() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&client_frame(true, 2, &[0x08], M));
        assert!(matches!(s.step(), Step::Undecodable("truncated varint at offset 1")));
        let out = drain(&mut s);
        let resp = proto::PubSubResp::decode(&out[0].1[..]).unwrap();
        assert_eq!(resp.sequence, 0);
        assert!(matches!(resp.resp, Some(proto::pub_sub_resp::Resp::ErrorResp(ref e)) if e.message == "wrong command"));
    }

    #[test]
    fn a_command_left_unanswered_still_gets_one_reply() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&ping_req(77, b""));
        assert!(matches!(s.step(), Step::Command { .. }));
        assert!(matches!(s.step(), Step::NeedMore));
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(proto::PubSubResp::decode(&out[0].1[..]).unwrap().sequence, 77);
    }

    #[test]
    fn protocol_errors_queue_the_close_code() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&[0x82, 0x01, 0x00]);
        assert!(matches!(s.step(), Step::Failed(ProtocolError::Unmasked)));
        assert_eq!(drain(&mut s), [(8, 1002u16.to_be_bytes().to_vec())]);
        s.close(1001, "");
        assert_eq!(s.pending(), 0, "one close frame per connection");
    }

    #[test]
    fn empty_and_text() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&client_frame(true, 2, b"", M));
        s.feed(&client_frame(true, 1, b"a\nb\x1b[31m\\", M));
        assert!(matches!(s.step(), Step::Empty));
        match s.step() {
            Step::Text(p) => assert_eq!(p, "a\\nb\\u{1b}[31m\\\\"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn preview_is_cut() {
        let mut out = String::new();
        preview(&mut out, &"x".repeat(10_000));
        assert_eq!(out, format!("{}...(10000 bytes)", "x".repeat(PREVIEW_LEN)));
    }

    fn pong_state(s: &mut Session, state: &[u8]) {
        s.reply_begin();
        s.encoder().put_pong(state);
        s.reply_finish().unwrap();
    }

    #[test]
    fn peek_gives_at_most_max_bytes_across_frames() {
        let mut s = Session::new(Schema::builtin(), Options { limits: Limits::up_to(1 << 20), ..Options::default() });
        for (seq, len) in [(1, 10usize), (2, 300), (3, 70_000)] {
            s.feed(&ping_req(seq, &vec![b'q'; len]));
        }
        let mut all = Vec::new();
        while let Step::Command { .. } = s.step() {
            pong_state(&mut s, &vec![b'r'; 40_000]);
        }
        while s.pending() > 0 {
            let chunk = peek(&s, 1000);
            assert!(!chunk.is_empty() && chunk.len() <= 1000);
            all.extend_from_slice(&chunk);
            s.consume(chunk.len());
        }
        let got: Vec<i64> = frames(&all).iter().map(|f| proto::PubSubResp::decode(&f.1[..]).unwrap().sequence).collect();
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn replies_of_every_header_size_are_framed_whatever_the_request_size() {
        // Request sizes pick the header room (4 or 10 bytes); reply sizes need 2, 4 or 10.
        for req_len in [0usize, 100, 70_000] {
            for state_len in [0usize, 1, 119, 120, 121, 122, 125, 126, 65_520, 65_530, 65_531, 65_535, 65_536, 70_000] {
                let mut s = Session::new(Schema::builtin(), Options { limits: Limits::up_to(1 << 20), ..Options::default() });
                s.feed(&ping_req(9, &vec![b'q'; req_len]));
                s.feed(&client_frame(true, 9, b"ping", M));
                assert!(matches!(s.step(), Step::Command { .. }));
                let state = vec![b's'; state_len];
                pong_state(&mut s, &state);
                assert!(matches!(s.step(), Step::NeedMore));
                let out = drain(&mut s);
                assert_eq!(out.len(), 2, "request {req_len}, state {state_len}");
                assert_eq!(out[0].0, 2);
                let resp = proto::PubSubResp::decode(&out[0].1[..]).unwrap();
                assert_eq!(resp.sequence, 9);
                match resp.resp {
                    Some(proto::pub_sub_resp::Resp::PongResp(p)) => assert_eq!(p.state, state),
                    other => panic!("{other:?}"),
                }
                assert_eq!(out[1], (10, b"ping".to_vec()), "the pong follows the reply");
            }
        }
    }

    /// Drains the queue `step` bytes at a time, putting held values (`values[id]`) in place.
    fn drain_held(s: &mut Session, values: &[Vec<u8>], step: usize) -> Vec<u8> {
        crate::queue::testing::drain(&mut s.out, values, step)
    }

    #[test]
    fn values_held_by_reference_are_sent_in_place() {
        let big = Options { limits: Limits::up_to(1 << 20), ..Options::default() };
        let known = *Schema::builtin().known();
        let (pong, state) = (u32::from(known.pong), u32::from(known.pong_state));
        for req_len in [0usize, 70_000] {
            for state_len in [1usize, 100, 122, 65_000, 65_530, 70_000] {
                for step in [7usize, 777, 1 << 20] {
                    let mut s = Session::new(Schema::builtin(), big);
                    let values: Vec<Vec<u8>> = (0..2).map(|i| vec![b'a' + i as u8; state_len]).collect();
                    for (seq, v) in values.iter().enumerate() {
                        s.feed(&ping_req(seq as i64 + 1, &vec![b'q'; req_len]));
                        assert!(matches!(s.step(), Step::Command { .. }));
                        s.reply_begin();
                        s.encoder().open(pong).unwrap();
                        s.encoder().put_bytes_ref(state, seq as u32, v.len()).unwrap();
                        s.encoder().close().unwrap();
                        s.reply_finish().unwrap();
                    }
                    s.feed(&client_frame(true, 9, b"hi", M));
                    assert!(matches!(s.step(), Step::NeedMore));
                    let out = frames(&drain_held(&mut s, &values, step));
                    assert_eq!(out.len(), 3, "request {req_len}, state {state_len}, step {step}");
                    for (i, v) in values.iter().enumerate() {
                        let resp = proto::PubSubResp::decode(&out[i].1[..]).unwrap();
                        assert_eq!(resp.sequence, i as i64 + 1);
                        match resp.resp {
                            Some(proto::pub_sub_resp::Resp::PongResp(p)) => assert!(p.state == *v),
                            other => panic!("{other:?}"),
                        }
                    }
                    assert_eq!(out[2], (10, b"hi".to_vec()));
                }
            }
        }
    }

    #[test]
    fn pings_are_answered_here_as_the_default_handler_would() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.set_echo_ping(true);
        // state absent; state given twice (the last one counts, as in a parameter table) with an
        // unknown field between; a ping cut into two fragments; a command that is handed out.
        let mut twice = Vec::new();
        for (number, v) in [(1u64, &b"first"[..]), (9, b"unknown"), (1, b"second")] {
            crate::wire::put_tag(&mut twice, number as u32, crate::wire::WireType::Len);
            crate::wire::put_varint(&mut twice, v.len() as u64);
            twice.extend_from_slice(v);
        }
        let mut req = Vec::new();
        crate::wire::put_tag(&mut req, 1, crate::wire::WireType::Varint);
        crate::wire::put_varint(&mut req, 2);
        crate::wire::put_tag(&mut req, 32, crate::wire::WireType::Len);
        crate::wire::put_varint(&mut req, twice.len() as u64);
        req.extend_from_slice(&twice);
        let fetch = proto::PubSubReq {
            sequence: 4,
            req: Some(proto::pub_sub_req::Req::CmdKafkaFetch(proto::CmdKafkaFetch { topic: "t".into(), partition: 0, offset: 0 })),
        }
        .encode_to_vec();
        let split = ping_req(3, &[b'z'; 300]);
        let mut input = ping_req(1, b"");
        input.extend(client_frame(true, 2, &req, M));
        input.extend(client_frame(false, 2, &proto_of(&split)[..100], M));
        input.extend(client_frame(true, 0, &proto_of(&split)[100..], M));
        input.extend(client_frame(true, 2, &fetch, M));
        input.extend(ping_req(5, b"after"));
        s.feed(&input);
        match s.step() {
            Step::Command { sequence, command, .. } => assert_eq!((sequence, Schema::builtin().field_name(command.id)), (4, "cmd_kafka_fetch")),
            other => panic!("{other:?}"),
        }
        s.reply_error(b"no kafka here");
        assert!(matches!(s.step(), Step::NeedMore));
        let got: Vec<(i64, String)> = drain(&mut s)
            .iter()
            .map(|f| {
                let r = proto::PubSubResp::decode(&f.1[..]).unwrap();
                let what = match r.resp {
                    Some(proto::pub_sub_resp::Resp::PongResp(p)) => String::from_utf8(p.state).unwrap(),
                    Some(proto::pub_sub_resp::Resp::ErrorResp(e)) => format!("error {}", e.message),
                    other => format!("{other:?}"),
                };
                (r.sequence, what)
            })
            .collect();
        let want: Vec<(i64, String)> = vec![
            (1, String::new()),
            (2, "second".into()),
            (3, "z".repeat(300)),
            (4, "error no kafka here".into()),
            (5, "after".into()),
        ];
        assert_eq!(got, want);

        s.feed(&ping_req(6, &[b'm'; ECHO_BELOW]));
        assert!(matches!(s.step(), Step::Command { sequence: 6, .. }), "a mid-sized state goes to Lua");
        s.reply_error(b"");
        let mut big = Session::new(Schema::builtin(), Options { limits: Limits::up_to(1 << 20), ..Options::default() });
        big.set_echo_ping(true);
        big.feed(&ping_req(7, &vec![b'b'; ECHO_FROM]));
        assert!(matches!(big.step(), Step::NeedMore), "a large state is answered here");
        assert_eq!(drain(&mut big).len(), 1);
        s.set_echo_ping(false);
        s.feed(&ping_req(8, b"x"));
        assert!(matches!(s.step(), Step::Command { sequence: 8, .. }), "a handler of its own gets the ping");
    }

    #[test]
    fn writes_are_sized_by_the_batch_or_the_largest_reply() {
        let limits = Limits::up_to(1 << 20);
        let mut s = Session::new(Schema::builtin(), Options { limits, ..Options::default() });
        s.set_echo_ping(true);
        assert_eq!(s.write_size(), WRITE_BATCH);
        s.feed(&ping_req(1, &[b'a'; 100]));
        assert!(matches!(s.step(), Step::NeedMore));
        assert_eq!(s.write_size(), WRITE_BATCH, "small replies: the batch");
        s.consume(s.pending());
        s.feed(&ping_req(2, &vec![b'b'; 6000]));
        let Step::Command { .. } = s.step() else { panic!("a mid-sized ping goes to its handler") };
        s.reply_begin();
        s.encoder().put_pong(&[b'b'; 6000]);
        s.reply_finish().unwrap();
        assert!(s.pending() > WRITE_BATCH);
        assert_eq!(s.write_size(), s.pending(), "a larger reply goes out whole");
        s.consume(s.pending());
        s.feed(&ping_req(3, &vec![b'c'; ECHO_FROM]));
        assert!(matches!(s.step(), Step::NeedMore));
        assert_eq!(s.write_size(), WRITE_MAX, "up to WRITE_MAX");
    }

    #[test]
    fn a_first_write_waits_for_a_small_frame_on_its_way() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.set_echo_ping(true);
        let frame = ping_req(1, &[b'p'; 1000]);
        let stream: Vec<u8> = std::iter::repeat(frame.clone()).take(12).flatten().collect();
        // Three frames and a half: three replies, less than a write's worth, and the rest of the
        // fourth frame on its way: nothing is due.
        let cut = 3 * frame.len() + frame.len() / 2;
        s.feed(&stream[..cut]);
        assert!(matches!(s.step(), Step::NeedMore));
        assert!(s.pending() > 0 && s.pending() < s.write_size());
        assert_eq!(s.write_due(), 0);
        // Four more and a half: whole writes only.
        let cut2 = cut + 4 * frame.len();
        s.feed(&stream[cut..cut2]);
        assert!(matches!(s.step(), Step::NeedMore));
        assert!(s.pending() > s.write_size());
        assert_eq!(s.write_due(), s.write_size());
        assert_eq!(s.whole_writes(), s.write_due(), "the same rule as between replies");
        s.consume(s.write_due());
        assert_eq!(s.whole_writes(), 0, "less than a write's worth left");
        // Once something was written, all of it is due.
        assert_eq!(s.write_due(), s.pending());
        // A fresh connection whose client sends whole frames writes at once.
        let mut t = Session::new(Schema::builtin(), Options::default());
        t.set_echo_ping(true);
        t.feed(&stream[..3 * frame.len()]);
        assert!(matches!(t.step(), Step::NeedMore));
        assert_eq!(t.write_due(), t.pending());
        // And so does one whose partial frame is large: its rest may be slow to come.
        let mut u = Session::new(Schema::builtin(), Options { limits: Limits::up_to(1 << 20), ..Options::default() });
        u.set_echo_ping(true);
        let big = ping_req(2, &vec![b'q'; 100_000]);
        let mut two = frame.clone();
        two.extend_from_slice(&big[..1000]);
        u.feed(&two);
        assert!(matches!(u.step(), Step::NeedMore));
        assert!(u.pending() > 0);
        assert_eq!(u.write_due(), u.pending());
    }

    /// The PubSubReq inside a frame made by `ping_req`.
    fn proto_of(frame: &[u8]) -> Vec<u8> {
        let (len, hdr) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        let mask = [frame[hdr], frame[hdr + 1], frame[hdr + 2], frame[hdr + 3]];
        frame[hdr + 4..hdr + 4 + len].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect()
    }

    #[test]
    fn encoder_writes_outside_a_reply_never_reach_the_queue() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&ping_req(1, b"a"));
        assert!(matches!(s.step(), Step::Command { .. }));
        pong_state(&mut s, b"a");
        let before = s.pending();
        // A stray write after the reply was finished, as a buggy caller could make.
        let _ = s.encoder().put_bytes(0, b"garbage");
        assert_eq!(s.pending(), before);
        s.feed(&client_frame(true, 9, b"", M));
        assert!(matches!(s.step(), Step::NeedMore));
        let out = drain(&mut s);
        assert_eq!(out.iter().map(|f| f.0).collect::<Vec<_>>(), [2, 10]);
    }

    #[test]
    fn nothing_follows_a_close_frame() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&ping_req(1, b"a"));
        assert!(matches!(s.step(), Step::Command { .. }));
        s.reply_begin();
        s.close(1001, "");
        s.reply_finish().unwrap();
        s.reply_error(b"late");
        assert!(matches!(s.step(), Step::Ended));
        assert_eq!(drain(&mut s), [(8, 1001u16.to_be_bytes().to_vec())]);
    }

    #[test]
    fn replies_can_be_fragmented() {
        let mut s = Session::new(Schema::builtin(), Options { fragment: Some(4), ..Options::default() });
        s.feed(&ping_req(1, b"0123456789"));
        assert!(matches!(s.step(), Step::Command { .. }));
        s.reply_error(b"0123456789");
        let out = drain(&mut s);
        assert!(out.len() > 2);
        assert_eq!(out[0].0, 2);
        assert!(out[1..].iter().all(|f| f.0 == 0));
    }

    fn pong_of(frame: &(u8, Vec<u8>)) -> (i64, Vec<u8>) {
        let r = proto::PubSubResp::decode(&frame.1[..]).unwrap();
        match r.resp {
            Some(proto::pub_sub_resp::Resp::PongResp(p)) => (r.sequence, p.state),
            other => panic!("{other:?}"),
        }
    }

    fn push_pong(s: &mut Session, seq: i64, state: &[u8]) -> Result<(), PushFailure> {
        s.push_begin(seq);
        s.encoder().put_pong(state);
        s.push_finish()
    }

    #[test]
    fn pushes_go_out_in_the_order_they_and_replies_were_queued() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.feed(&ping_req(1, b"a"));
        s.feed(&ping_req(2, b"b"));
        push_pong(&mut s, -1, b"before any step").unwrap();
        assert!(matches!(s.step(), Step::Command { sequence: 1, .. }));
        push_pong(&mut s, -2, b"during the handler").unwrap();
        pong_state(&mut s, b"a");
        assert!(matches!(s.step(), Step::Command { sequence: 2, .. }));
        pong_state(&mut s, b"b");
        push_pong(&mut s, -3, b"after").unwrap();
        assert_eq!(s.unsent_pushes(), 3);
        let out = peek(&s, usize::MAX);
        s.consume(out.len());
        assert_eq!(s.unsent_pushes(), 3, "taken, not yet written");
        s.written(out.len());
        let got: Vec<i64> = frames(&out).iter().map(|f| pong_of(f).0).collect();
        assert_eq!(got, [-1, -2, 1, 2, -3]);
        assert_eq!(s.unsent_pushes(), 0);
    }

    #[test]
    fn the_queue_limit_refuses_pushes_never_replies() {
        let limit = 300;
        let mut s = Session::new(Schema::builtin(), Options { max_queue_bytes: Some(limit), ..Options::default() });
        let mut accepted = 0;
        while push_pong(&mut s, 5, &[b'x'; 50]).is_ok() {
            accepted += 1;
        }
        assert_eq!(push_pong(&mut s, 5, &[b'x'; 50]), Err(PushFailure::Queue(PushError::QueueFull)));
        assert!(s.pending() <= limit && s.pending() + 56 > limit, "{} of {limit} queued", s.pending());
        assert_eq!(s.pending() % accepted, 0, "every push is one frame of the same size");
        // A push larger than the limit can never be queued; a refused push leaves the queue as it was.
        let before = s.pending();
        assert_eq!(push_pong(&mut s, 6, &[b'y'; 400]), Err(PushFailure::Queue(PushError::QueueFull)));
        assert_eq!(s.pending(), before);
        // Replies go past the limit.
        s.feed(&ping_req(1, &[b'r'; 500]));
        assert!(matches!(s.step(), Step::Command { .. }));
        pong_state(&mut s, &[b'r'; 500]);
        assert!(s.pending() > limit);
        let frames = drain(&mut s);
        assert_eq!(frames.len(), accepted + 1);
        // Drained, the queue takes pushes again; once closed, it takes none.
        push_pong(&mut s, 7, b"again").unwrap();
        s.close(1000, "");
        assert_eq!(push_pong(&mut s, 8, b"late"), Err(PushFailure::Queue(PushError::Closed)));
        assert_eq!(s.push_message(b"\x08\x01", None), Err(PushError::Closed));
    }

    #[test]
    fn a_message_encoded_once_is_held_by_reference_or_copied_to_fragment() {
        let mut e = ReplyEncoder::new(Schema::builtin());
        e.begin(9);
        e.put_pong(&[b'm'; 1000]);
        let payload = e.finish().unwrap().to_vec();
        let values = vec![payload.clone()];
        let mut held = Session::new(Schema::builtin(), Options::default());
        held.push_message(&payload, Some(0)).unwrap();
        assert!(matches!(held.chunk(usize::MAX), Some(Chunk::Bytes(b)) if b.len() == 4), "only the header is queued");
        let out = frames(&drain_held(&mut held, &values, 333));
        assert_eq!(out, [(2, payload.clone())]);
        let mut cut = Session::new(Schema::builtin(), Options { fragment: Some(300), ..Options::default() });
        cut.push_message(&payload, Some(0)).unwrap();
        let out = frames(&drain_held(&mut cut, &[], 1 << 20));
        assert_eq!(out.len(), 4);
        assert_eq!(out.iter().flat_map(|f| f.1.clone()).collect::<Vec<u8>>(), payload);
        let mut small = Session::new(Schema::builtin(), Options { max_queue_bytes: Some(500), ..Options::default() });
        assert_eq!(small.push_message(&payload, Some(0)), Err(PushError::QueueFull));
        assert_eq!(small.pending(), 0);
    }

    #[test]
    fn a_push_that_does_not_encode_queues_nothing() {
        let mut s = Session::new(Schema::builtin(), Options::default());
        s.push_begin(1);
        s.encoder().open(u32::from(Schema::builtin().known().pong)).unwrap();
        assert_eq!(s.push_finish(), Err(PushFailure::Encode(EncodeError::Unbalanced)));
        assert_eq!(s.pending(), 0);
        s.push_begin(2);
        s.abandon();
        assert_eq!(s.pending(), 0);
        push_pong(&mut s, 3, b"fine").unwrap();
        assert_eq!(drain(&mut s).len(), 1);
    }
}
