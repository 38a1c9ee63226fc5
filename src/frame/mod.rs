//! The server side of RFC 6455 framing, without I/O.
//!
//! [`Decoder::feed`] takes bytes as they arrive, in chunks of any size; [`Decoder::poll`] hands back
//! the next complete message or control frame, or says how many more bytes it needs at least.
//! Client frames must be masked; payloads are unmasked in place, eight bytes at a time. A message
//! sent in one frame is handed out as a slice of the input buffer, without a copy; only fragmented
//! messages are copied, into one reassembly buffer that is reused.
//!
//! Every violation is a [`ProtocolError`] that says which close code to answer with. After an error
//! the decoder keeps returning it: the connection is to be failed.

use crate::deflate::{InflateError, Inflater};
use crate::pool;

mod encode;
pub mod header;

pub use encode::{binary_frame_payload, client_frame, encode_client_frame, encode_close, encode_frame, encode_header, encode_message, header_len, put_header, unmask, write_header};
pub use header::{Header, Opcode};
use header::{Parsed, Rules};

/// Close status codes this module answers with.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (worker shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data inconsistent with the message type (invalid UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation (used when a peer stalls mid-frame).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A violation of RFC 6455 by the peer, or of this decoder's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// RSV1-3 set, but no extension was negotiated.
    #[error("bad RSV1, RSV2, or RSV3 bits")]
    ReservedBits,
    /// Opcodes 0x3-0x7.
    #[error("reserved non-control frames (opcode {0:#x})")]
    ReservedDataOpcode(u8),
    /// Opcodes 0xB-0xF.
    #[error("reserved control frames (opcode {0:#x})")]
    ReservedControlOpcode(u8),
    /// A client frame without a mask.
    #[error("frame unmasked")]
    Unmasked,
    /// A control frame with a payload over 125 bytes.
    #[error("too long payload for control frame")]
    ControlTooLong,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A 64-bit payload length with the most significant bit set.
    #[error("payload len too large")]
    LengthTopBit,
    /// A frame payload over the configured maximum (announced in the header, refused before it arrives).
    #[error("exceeding max payload len ({len} > {max})")]
    PayloadTooBig {
        /// The announced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A fragmented message growing over the configured maximum.
    #[error("exceeding max message len ({len} > {max})")]
    MessageTooBig {
        /// The length the message would reach.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is unfinished.
    #[error("new data frame inside an unfinished fragmented message")]
    UnfinishedMessage,
    /// A close frame with a 1-byte payload.
    #[error("close frame with a body must carry a 2-byte status code")]
    CloseOneByte,
    /// A close status code outside the ranges a peer may send.
    #[error("invalid close status code {0}")]
    BadCloseCode(u16),
    /// A close reason that is not UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidText,
    /// RSV1 (compressed) on a control frame (RFC 7692 §6.1).
    #[error("RSV1 set on a control frame")]
    CompressedControl,
    /// RSV1 on a continuation frame: only a message's first frame says it is compressed.
    #[error("RSV1 set on a continuation frame")]
    CompressedContinuation,
    /// A compressed message inflating to more than the message limit (found while inflating).
    #[error("exceeding max message len ({max}) when inflated")]
    InflatedTooBig {
        /// The limit.
        max: u64,
    },
    /// A compressed message that is not a valid DEFLATE stream.
    #[error("invalid compressed data")]
    BadCompressedData,
}

impl From<InflateError> for ProtocolError {
    fn from(e: InflateError) -> ProtocolError {
        match e {
            InflateError::TooBig { max } => ProtocolError::InflatedTooBig { max: max as u64 },
            InflateError::Corrupt => ProtocolError::BadCompressedData,
        }
    }
}

impl ProtocolError {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::PayloadTooBig { .. } | ProtocolError::MessageTooBig { .. } | ProtocolError::InflatedTooBig { .. } => close_code::TOO_BIG,
            ProtocolError::InvalidCloseReason | ProtocolError::InvalidText | ProtocolError::BadCompressedData => close_code::INVALID_DATA,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// True for the status codes a peer may put in a close frame: 1000-1003, 1007-1014, 3000-4999.
/// 1004-1006 and 1015 are reserved for local use and never sent; 1016-2999 are unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Size limits of a [`Decoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload accepted (a frame of exactly this size is accepted).
    pub max_payload_len: u64,
    /// Largest message accepted, after reassembly of its fragments.
    pub max_message_len: u64,
}

impl Limits {
    /// Frames and messages both up to `n` bytes.
    pub fn up_to(n: u64) -> Limits {
        Limits { max_payload_len: n, max_message_len: n }
    }
}

impl Default for Limits {
    /// 65535 for both, as lua-resty-websocket's default `max_payload_len`.
    fn default() -> Self {
        Limits { max_payload_len: 65535, max_message_len: 65535 }
    }
}

/// What [`Decoder::poll`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, valid UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the payload must come back in a pong.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame, with its status code and reason when it carries them.
    Close(Option<(u16, &'a str)>),
}

/// The result of [`Decoder::poll`].
#[derive(Debug, PartialEq, Eq)]
pub enum Poll<'a> {
    /// An event, borrowed from the decoder until the next call.
    Event(Event<'a>),
    /// No complete frame yet: at least this many more bytes are needed.
    NeedMore(usize),
}

/// What the decoder waits for, as lua-resty-websocket words it in its read errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// The first two bytes of a frame (nothing of a frame buffered).
    FirstTwoBytes,
    /// The 16-bit extended payload length.
    ShortLength,
    /// The 64-bit extended payload length.
    LongLength,
    /// The mask and payload.
    MaskAndPayload,
}

impl Waiting {
    /// The words lua-resty-websocket uses: "failed to receive {this}: {err}".
    pub fn describe(self) -> &'static str {
        match self {
            Waiting::FirstTwoBytes => "the first 2 bytes",
            Waiting::ShortLength => "the 2 byte payload length",
            Waiting::LongLength => "the 8 byte payload length",
            Waiting::MaskAndPayload => "masking-len and payload",
        }
    }
}

/// Most bytes the decoder sets aside for a frame whose header has come and payload not yet.
const RESERVE_AHEAD: usize = 4 << 20;
/// Most room kept beyond a frame for the read that ends it (see `Decoder::read_size`).
const MAX_READ_SLACK: usize = 64 * 1024;

/// A partial frame of at most this size (what has come plus what is missing) waits for the rest in
/// a small buffer of its own, and the read buffer goes back to the pool: an idle pipelining
/// connection then holds about one small frame, not a read buffer.
const PARK_MAX: usize = 4096;

/// The frame decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Received bytes; those before `start` are done with. Given back to [`pool`] when empty.
    buf: Vec<u8>,
    start: usize,
    /// Bytes after `start` that belong to the event handed out last.
    consumed: usize,
    /// Bytes still needed before anything can be decoded, as of the last [`Poll::NeedMore`] and the
    /// feeds since.
    need: usize,
    /// The largest feed so far (up to `MAX_READ_SLACK`): about what one read brings.
    read_size: usize,
    /// A small partial frame set aside while `buf` is back in the pool (`buf` is then empty).
    parked: Vec<u8>,
    /// Where the data event handed out last lives, until the next feed or poll.
    last: Option<Found>,
    /// Reassembly buffer of a fragmented message.
    message: Vec<u8>,
    /// The opcode of the fragmented message being reassembled.
    fragmented: Option<Opcode>,
    /// The RSV bits the negotiated extensions allow (none without one).
    allowed_rsv: u8,
    /// permessage-deflate, when negotiated: messages whose first frame has RSV1 are inflated
    /// into the reassembly buffer as their frames arrive.
    inflater: Option<Box<Inflater>>,
    /// Compressed bytes received of the compressed fragmented message being inflated (what the
    /// message limit counts while it arrives; the inflater counts what they inflate to).
    compressed_len: Option<u64>,
    /// The reassembled message was handed out: clear it on the next call.
    message_done: bool,
    /// How much of a fragmented text message is known to be valid UTF-8 (checked per fragment, so
    /// invalid text fails at once, not when the message completes).
    text_checked: usize,
    failed: Option<ProtocolError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            buf: Vec::new(),
            start: 0,
            consumed: 0,
            need: 0,
            read_size: 0,
            parked: Vec::new(),
            last: None,
            message: Vec::new(),
            fragmented: None,
            allowed_rsv: 0,
            inflater: None,
            compressed_len: None,
            message_done: false,
            text_checked: 0,
            failed: None,
        }
    }

    /// Allows frames with these RSV bits set (`0x40` RSV1, `0x20` RSV2, `0x10` RSV3), for an
    /// extension negotiated by the layer above, which then reads them from the frames. None are
    /// allowed by default: a frame with one set fails with [`ProtocolError::ReservedBits`].
    pub fn allow_rsv(&mut self, bits: u8) {
        self.allowed_rsv = bits & 0x70;
    }

    /// Turns on permessage-deflate (RFC 7692) for what the client sends: RSV1 is allowed on a
    /// message's first frame, and such a message is inflated as its frames arrive, never past
    /// `max_message_len` (then [`ProtocolError::InflatedTooBig`]). RSV1 on a control or
    /// continuation frame fails the connection with 1002, a corrupt stream with 1007.
    pub fn set_inflater(&mut self, inflater: Inflater) {
        self.allowed_rsv |= 0x40;
        self.inflater = Some(Box::new(inflater));
    }

    /// The inflater, when permessage-deflate is on (for memory accounting and tests).
    pub fn inflater(&self) -> Option<&Inflater> {
        self.inflater.as_deref()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends received bytes.
    ///
    /// Returns how many more bytes are needed at least before [`Decoder::poll`] can make progress:
    /// while it is not 0, a caller can go on reading without polling.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        self.need = self.need.saturating_sub(data.len());
        self.read_size = self.read_size.max(data.len().min(MAX_READ_SLACK));
        if data.is_empty() {
            return self.need;
        }
        self.release();
        self.unpark();
        pool::refill(&mut self.buf);
        self.make_room(data.len());
        self.buf.extend_from_slice(data);
        self.need
    }

    /// Sets a small partial frame aside and gives the read buffer back to the pool.
    fn park(&mut self) {
        let unread = self.buf.len() - self.start;
        if unread > 0 && unread + self.need <= PARK_MAX && self.buf.capacity() > PARK_MAX {
            // Exactly as large as the partial frame: it is what an idle connection keeps.
            self.parked = self.buf[self.start..].to_vec();
            self.start = 0;
            pool::release(&mut self.buf);
        }
    }

    /// Puts a parked partial frame back at the front of the read buffer.
    fn unpark(&mut self) {
        if !self.parked.is_empty() {
            pool::refill(&mut self.buf);
            self.buf.extend_from_slice(&self.parked);
            self.parked = Vec::new();
        }
    }

    /// Makes room for `n` more bytes: by moving the unread bytes to the front, over those done
    /// with, when these are at least as many (so each byte moves at most about once), else by
    /// growing. The buffer so stays within about twice what is unread plus what comes, however
    /// long a pipelining peer keeps it from emptying.
    fn make_room(&mut self, n: usize) {
        if self.compact_for(n) {
            self.buf.reserve(n);
        }
    }

    /// Like [`Decoder::make_room`], but grows to exactly `n` more bytes: for a frame whose length
    /// is known, where doubling would leave an idle pipelining connection holding twice its frame.
    fn make_room_exact(&mut self, n: usize) {
        if self.compact_for(n) {
            self.buf.reserve_exact(n);
        }
    }

    /// Compacts when that is cheap and there is no room for `n` more bytes; true if there still
    /// is none.
    fn compact_for(&mut self, n: usize) -> bool {
        if self.buf.capacity() - self.buf.len() >= n {
            return false;
        }
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.capacity() - self.buf.len() < n
    }

    /// The payload of the event handed out last (empty once the next feed or poll has begun).
    pub fn last_payload(&self) -> &[u8] {
        match self.last {
            Some(Found::Frame { start, end, .. }) => &self.unread()[start..end],
            Some(Found::Message(_)) => &self.message,
            None => &[],
        }
    }

    /// Received bytes not yet done with.
    fn unread(&self) -> &[u8] {
        if self.parked.is_empty() {
            &self.buf[self.start..]
        } else {
            &self.parked
        }
    }

    /// Bytes still needed at least before the frame being received can be complete (0 when no
    /// frame is partly received, or when it is not known yet).
    pub fn need(&self) -> usize {
        self.need
    }

    /// True when part of a frame or of a fragmented message is buffered: the peer is mid-message.
    pub fn is_mid_message(&self) -> bool {
        self.unread().len() > self.consumed || self.fragmented.is_some()
    }

    /// Bytes received and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.unread().len() - self.consumed + if self.message_done { 0 } else { self.message.len() }
    }

    /// What the decoder is waiting for, to word a read error.
    pub fn waiting(&self) -> Waiting {
        let u = self.unread();
        let b = &u[self.consumed.min(u.len())..];
        match b {
            [] | [_] => Waiting::FirstTwoBytes,
            [_, l, ..] if l & 0x7f == 126 && b.len() < 4 => Waiting::ShortLength,
            [_, l, ..] if l & 0x7f == 127 && b.len() < 10 => Waiting::LongLength,
            _ => Waiting::MaskAndPayload,
        }
    }

    /// Drops what the previous event borrowed.
    fn release(&mut self) {
        self.last = None;
        self.start += self.consumed;
        self.consumed = 0;
        if self.start == self.buf.len() {
            // Nothing pending: no buffer either until bytes arrive.
            self.start = 0;
            pool::release(&mut self.buf);
        }
        if self.message_done {
            pool::release(&mut self.message);
            self.message_done = false;
            self.text_checked = 0;
        }
    }

    /// The header at the front of the unread bytes, checked against the limits and the message
    /// being reassembled, and against the RSV bits the negotiated extensions allow.
    fn header(&self) -> Result<Parsed, ProtocolError> {
        let rules = Rules {
            max_payload_len: self.limits.max_payload_len,
            max_message_len: self.limits.max_message_len,
            message_len: self.compressed_len.unwrap_or(self.message.len() as u64),
            fragmented: self.fragmented,
        };
        let parsed = header::parse(self.unread(), &rules)?;
        if let Parsed::Complete(h) = parsed {
            if h.rsv & !self.allowed_rsv != 0 {
                return Err(ProtocolError::ReservedBits);
            }
            if h.rsv1() && self.inflater.is_some() {
                if h.opcode.is_control() {
                    return Err(ProtocolError::CompressedControl);
                }
                if h.opcode == Opcode::Continuation {
                    return Err(ProtocolError::CompressedContinuation);
                }
            }
        }
        Ok(parsed)
    }

    /// The next event, or how many more bytes are needed.
    pub fn poll(&mut self) -> Result<Poll<'_>, ProtocolError> {
        self.poll_data(|_| false)
    }

    /// Like [`Decoder::poll`], but pings and pongs go to `on_control` first: when it returns true the
    /// frame is taken care of and decoding goes on with the next frame, so a caller can answer pings
    /// without a round trip per frame.
    pub fn poll_data(&mut self, mut on_control: impl FnMut(&Event<'_>) -> bool) -> Result<Poll<'_>, ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.unpark();
        loop {
            self.release();
            let found = match self.next_frame() {
                Ok(Next::Found(found)) => found,
                Ok(Next::NeedMore(need)) => {
                    self.need = need;
                    self.park();
                    return Ok(Poll::NeedMore(need));
                }
                Err(e) => {
                    self.failed = Some(e);
                    return Err(e);
                }
            };
            match self.event(found) {
                Err(e) => {
                    self.failed = Some(e);
                    return Err(e);
                }
                Ok(ev @ (Event::Ping(_) | Event::Pong(_))) if on_control(&ev) => continue,
                Ok(_) => {
                    self.last = Some(found);
                    break Ok(Poll::Event(self.event(found)?));
                }
            }
        }
    }

    /// Reads frames until one completes an event; fragments are appended to the reassembly buffer.
    fn next_frame(&mut self) -> Result<Next, ProtocolError> {
        loop {
            let h = match self.header()? {
                Parsed::Complete(h) => h,
                Parsed::Partial { need } => return Ok(Next::NeedMore(need)),
            };
            let end = h.len + h.payload_len;
            let have = self.unread().len();
            if have < end {
                // Room for the whole frame now, rather than growing (and copying) as it arrives,
                // and for one more read, which may bring the start of the next frame with its
                // end; up to a bound, so a header alone cannot claim much memory.
                self.make_room_exact((end - have).min(RESERVE_AHEAD) + self.read_size);
                return Ok(Next::NeedMore(end - have));
            }
            let s = self.start;
            unmask(&mut self.buf[s + h.len..s + end], h.mask);
            crate::metrics::WORKER.frame_in();
            // A compressed message's frames (control frames between them are not its own).
            if (h.rsv1() && self.inflater.is_some()) || (self.compressed_len.is_some() && h.opcode == Opcode::Continuation) {
                if let Some(found) = self.inflate_frame(&h, end)? {
                    return Ok(Next::Found(found));
                }
                continue;
            }
            match h.opcode {
                Opcode::Text | Opcode::Binary if h.fin => {
                    self.consumed = end;
                    return Ok(Next::Found(Found::Frame { opcode: h.opcode, start: h.len, end }));
                }
                Opcode::Text | Opcode::Binary => {
                    self.fragmented = Some(h.opcode);
                    pool::refill(&mut self.message);
                    self.message.extend_from_slice(&self.buf[s + h.len..s + end]);
                    self.start += end;
                    self.check_text_so_far()?;
                }
                Opcode::Continuation => {
                    self.message.extend_from_slice(&self.buf[s + h.len..s + end]);
                    self.start += end;
                    self.check_text_so_far()?;
                    if h.fin {
                        let opcode = self.fragmented.take().expect("checked by header()");
                        self.message_done = true;
                        return Ok(Next::Found(Found::Message(opcode)));
                    }
                }
                _ => {
                    self.consumed = end;
                    return Ok(Next::Found(Found::Frame { opcode: h.opcode, start: h.len, end }));
                }
            }
        }
    }

    /// Inflates the frame at the front (`end` bytes, header `h`) of a compressed message into the
    /// reassembly buffer; the message when this frame ends it.
    #[inline(never)]
    fn inflate_frame(&mut self, h: &Header, end: usize) -> Result<Option<Found>, ProtocolError> {
        let s = self.start;
        let Some(inflater) = self.inflater.as_mut() else { unreachable!("called only with an inflater") };
        if h.opcode != Opcode::Continuation {
            self.fragmented = Some(h.opcode);
            self.compressed_len = Some(0);
            pool::refill(&mut self.message);
        }
        self.compressed_len = self.compressed_len.map(|n| n + h.payload_len as u64);
        let max = usize::try_from(self.limits.max_message_len).unwrap_or(usize::MAX);
        inflater.inflate(&self.buf[s + h.len..s + end], h.fin, &mut self.message, max)?;
        self.start += end;
        self.check_text_so_far()?;
        if !h.fin {
            return Ok(None);
        }
        let opcode = self.fragmented.take().expect("set by the first frame");
        self.compressed_len = None;
        self.message_done = true;
        Ok(Some(Found::Message(opcode)))
    }

    /// Fails a fragmented text message as soon as it holds a byte sequence that no continuation
    /// can make valid UTF-8.
    fn check_text_so_far(&mut self) -> Result<(), ProtocolError> {
        if self.fragmented != Some(Opcode::Text) {
            return Ok(());
        }
        match std::str::from_utf8(&self.message[self.text_checked..]) {
            Ok(_) => self.text_checked = self.message.len(),
            Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidText),
            Err(e) => self.text_checked += e.valid_up_to(),
        }
        Ok(())
    }

    fn event(&self, found: Found) -> Result<Event<'_>, ProtocolError> {
        let (opcode, payload) = match found {
            Found::Frame { opcode, start, end } => (opcode, &self.unread()[start..end]),
            Found::Message(op) => (op, &self.message[..]),
        };
        Ok(match opcode {
            Opcode::Binary => Event::Binary(payload),
            Opcode::Text => Event::Text(std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidText)?),
            Opcode::Ping => Event::Ping(payload),
            Opcode::Pong => Event::Pong(payload),
            Opcode::Close => Event::Close(parse_close(payload)?),
            Opcode::Continuation => unreachable!("continuations complete a message"),
        })
    }
}

/// Where the event found by [`Decoder::next_frame`] lives.
#[derive(Clone, Copy, Debug)]
enum Found {
    /// A frame's payload, `unread()[start..end]`.
    Frame {
        /// The frame's opcode.
        opcode: Opcode,
        /// Where its payload starts in the unread bytes.
        start: usize,
        /// Where it ends.
        end: usize,
    },
    /// The reassembled message.
    Message(Opcode),
}

/// What [`Decoder::next_frame`] came to.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// An event.
    Found(Found),
    /// At least this many more bytes are needed.
    NeedMore(usize),
}

/// Validates a close frame's payload: empty, or a valid status code and a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseOneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn a_whole_binary_frame_gives_its_payload_and_nothing_else_does() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![7u8; len];
            let mut f = Vec::new();
            encode_frame(&mut f, Opcode::Binary, &payload);
            assert_eq!(binary_frame_payload(&f), Some(&payload[..]), "length {len}");
            assert_eq!(binary_frame_payload(&f[..f.len() - 1]), None, "cut, length {len}");
            let mut longer = f.clone();
            longer.push(0);
            assert_eq!(binary_frame_payload(&longer), None, "a byte past it, length {len}");
        }
        let mut text = Vec::new();
        encode_frame(&mut text, Opcode::Text, b"x");
        assert_eq!(binary_frame_payload(&text), None);
        let mut cont = Vec::new();
        encode_header(&mut cont, false, Opcode::Binary, 1);
        cont.push(1);
        assert_eq!(binary_frame_payload(&cont), None, "FIN unset");
        // A longer header than the length needs, and a masked frame: not as this module writes them.
        assert_eq!(binary_frame_payload(&[0x82, 126, 0, 1, 9]), None);
        assert_eq!(binary_frame_payload(&[0x82, 0x81, 0, 0, 0, 0, 9]), None);
        assert_eq!(binary_frame_payload(&[]), None);
    }

    fn decoder() -> Decoder {
        Decoder::new(Limits::default())
    }

    fn one(bytes: &[u8]) -> Result<Poll<'static>, ProtocolError> {
        // Leaked so the event can outlive the call; tests only.
        let d: &'static mut Decoder = Box::leak(Box::new(decoder()));
        d.feed(bytes);
        d.poll()
    }

    fn err_of(bytes: &[u8]) -> ProtocolError {
        one(bytes).expect_err("a protocol error")
    }

    #[test]
    fn all_three_length_forms() {
        for len in [0usize, 1, 125, 126, 127, 65535] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut d = decoder();
            d.feed(&client_frame(true, 2, &payload, M));
            assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(&payload))), "len {len}");
        }
        let payload = vec![7u8; 70000];
        let mut d = Decoder::new(Limits { max_payload_len: 70000, max_message_len: 70000 });
        d.feed(&client_frame(true, 2, &payload, M));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(&payload))));
    }

    #[test]
    fn says_how_much_more_it_needs() {
        let frame = client_frame(true, 2, b"hello", M);
        let mut d = decoder();
        assert_eq!(d.poll(), Ok(Poll::NeedMore(2)));
        d.feed(&frame[..1]);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(1)));
        d.feed(&frame[1..2]);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(4)));
        d.feed(&frame[2..6]);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(5)));
        d.feed(&frame[6..]);
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(b"hello"))));
        assert_eq!(d.poll(), Ok(Poll::NeedMore(2)));
        assert!(!d.is_mid_message());
    }

    #[test]
    fn waiting_words_what_is_missing() {
        let mut d = decoder();
        assert_eq!(d.waiting().describe(), "the first 2 bytes");
        d.feed(&[0x82, 0x80 | 126]);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(2)));
        assert_eq!(d.waiting(), Waiting::ShortLength);
        let mut d = decoder();
        d.feed(&[0x82, 0x80 | 127, 0]);
        assert_eq!(d.waiting(), Waiting::LongLength);
        let mut d = decoder();
        d.feed(&[0x82, 0x85, 1]);
        assert_eq!(d.waiting(), Waiting::MaskAndPayload);
        assert!(d.is_mid_message());
    }

    #[test]
    fn rejects_top_bit_in_64_bit_length() {
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(err_of(&f), ProtocolError::LengthTopBit);
        assert_eq!(ProtocolError::LengthTopBit.close_code(), 1002);
    }

    #[test]
    fn requires_mask() {
        assert_eq!(err_of(&[0x82, 0x01, b'x']), ProtocolError::Unmasked);
    }

    #[test]
    fn rejects_rsv_bits_and_reserved_opcodes() {
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(err_of(&[0x82 | rsv, 0x80, 0, 0, 0, 0]), ProtocolError::ReservedBits);
        }
        for op in 3..=7u8 {
            assert_eq!(err_of(&client_frame(true, op, b"", M)), ProtocolError::ReservedDataOpcode(op));
        }
        for op in 0xB..=0xFu8 {
            assert_eq!(err_of(&client_frame(true, op, b"", M)), ProtocolError::ReservedControlOpcode(op));
        }
    }

    #[test]
    fn rsv_bits_pass_only_where_an_extension_allows_them() {
        let mut d = decoder();
        d.allow_rsv(0x40);
        d.feed(&[0xc2, 0x80, 0, 0, 0, 0]);
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(b""))));
        let mut d = decoder();
        d.allow_rsv(0x40);
        d.feed(&[0xa2, 0x80, 0, 0, 0, 0]);
        assert_eq!(d.poll(), Err(ProtocolError::ReservedBits), "RSV2 stays refused");
    }

    /// A decoder with permessage-deflate on (no context takeover, 15-bit windows).
    fn inflating(limits: Limits) -> Decoder {
        let params = crate::deflate::Params {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut d = Decoder::new(limits);
        d.set_inflater(Inflater::new(&params));
        d
    }

    /// A client frame with RSV1 set.
    fn rsv1_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = client_frame(fin, opcode, payload, mask);
        f[0] |= 0x40;
        f
    }

    /// `message` deflated as a client sends it: raw, sync-flushed, the tail removed.
    fn deflated(message: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut out = Vec::with_capacity(message.len() + 64);
        c.compress_vec(message, &mut out, flate2::FlushCompress::Sync).unwrap();
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_are_inflated_whole_or_in_fragments_with_control_frames_between() {
        let text = "compressed text, compressed text, compressed text".repeat(20);
        let z = deflated(text.as_bytes());
        let mut d = inflating(Limits::default());
        let mut input = rsv1_frame(true, 0x1, &z, M);
        input.extend(rsv1_frame(false, 0x2, &z[..3], M));
        input.extend(client_frame(true, 9, b"between", M));
        input.extend(client_frame(false, 0, &z[3..10], M));
        input.extend(client_frame(true, 0, &z[10..], M));
        input.extend(client_frame(true, 2, b"plain", M));
        d.feed(&input);
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Text(&text))));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Ping(b"between"))));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(text.as_bytes()))));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(b"plain"))));
        assert!(d.inflater().is_some_and(|i| !i.holds_state()), "no state kept between messages");
    }

    #[test]
    fn compressed_input_errors_and_their_close_codes() {
        let z = deflated(&[b'a'; 1000]);
        let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
            (rsv1_frame(true, 0x9, b"p", M), ProtocolError::CompressedControl, 1002),
            ([rsv1_frame(false, 0x2, &z[..2], M), rsv1_frame(true, 0x0, &z[2..], M)].concat(), ProtocolError::CompressedContinuation, 1002),
            (rsv1_frame(true, 0x2, &[0xff, 0xff], M), ProtocolError::BadCompressedData, 1007),
            (rsv1_frame(true, 0x1, &deflated(b"\xff\xfe"), M), ProtocolError::InvalidText, 1007),
            (rsv1_frame(true, 0x2, &z, M), ProtocolError::InflatedTooBig { max: 999 }, 1009),
        ];
        for (input, want, code) in cases {
            let mut d = inflating(Limits { max_payload_len: 999, max_message_len: 999 });
            d.feed(&input);
            assert_eq!(d.poll(), Err(want));
            assert_eq!(want.close_code(), code, "{want}");
        }
        // Exactly the limit inflated is accepted.
        let mut d = inflating(Limits::up_to(1000));
        d.feed(&rsv1_frame(true, 0x2, &z, M));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(&[b'a'; 1000]))));
    }

    #[test]
    fn rejects_long_or_fragmented_control_frames() {
        assert_eq!(err_of(&client_frame(true, 9, &[0; 126], M)), ProtocolError::ControlTooLong);
        assert_eq!(err_of(&client_frame(false, 9, b"x", M)), ProtocolError::FragmentedControl);
        assert_eq!(err_of(&client_frame(false, 8, b"", M)), ProtocolError::FragmentedControl);
        // 125 is the largest control payload.
        let mut d = decoder();
        d.feed(&client_frame(true, 9, &[1; 125], M));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Ping(&[1; 125]))));
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(err_of(&client_frame(true, 0, b"x", M)), ProtocolError::UnexpectedContinuation);
        let mut s = client_frame(false, 2, b"a", M);
        s.extend(client_frame(true, 1, b"b", M));
        assert_eq!(err_of(&s), ProtocolError::UnfinishedMessage);
    }

    #[test]
    fn reassembles_with_control_frames_between_fragments() {
        let mut s = client_frame(false, 1, "héllo ".as_bytes(), M);
        s.extend(client_frame(true, 9, b"p1", M));
        s.extend(client_frame(false, 0, b"wor", M));
        s.extend(client_frame(true, 10, b"", M));
        s.extend(client_frame(true, 0, b"ld", M));
        s.extend(client_frame(true, 2, b"next", M));
        let mut d = decoder();
        d.feed(&s);
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Ping(b"p1"))));
        assert!(d.is_mid_message());
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Pong(b""))));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Text("héllo world"))));
        assert_eq!(d.poll(), Ok(Poll::Event(Event::Binary(b"next"))));
        assert_eq!(d.poll(), Ok(Poll::NeedMore(2)));
    }

    #[test]
    fn enforces_payload_limit_before_payload_arrives() {
        let limits = Limits { max_payload_len: 10, max_message_len: 15 };
        let mut d = Decoder::new(limits);
        let f = client_frame(true, 2, &[0; 10], M);
        d.feed(&f);
        assert!(matches!(d.poll(), Ok(Poll::Event(Event::Binary(_)))));
        let mut d = Decoder::new(limits);
        // Only the header of an 11-byte frame: refused at once.
        d.feed(&client_frame(true, 2, &[0; 11], M)[..6]);
        let e = d.poll().unwrap_err();
        assert_eq!(e, ProtocolError::PayloadTooBig { len: 11, max: 10 });
        assert_eq!(e.close_code(), 1009);
        // The decoder stays failed.
        assert_eq!(d.poll().unwrap_err(), e);
        // The default is lua-resty-websocket's 65535, inclusive.
        assert_eq!(Limits::default().max_payload_len, 65535);
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&65536u64.to_be_bytes());
        assert!(matches!(err_of(&f), ProtocolError::PayloadTooBig { len: 65536, .. }));
    }

    #[test]
    fn enforces_message_limit() {
        let mut d = Decoder::new(Limits { max_payload_len: 10, max_message_len: 15 });
        let mut s = client_frame(false, 2, &[0; 10], M);
        s.extend(client_frame(true, 0, &[0; 6], M));
        d.feed(&s);
        let e = d.poll().unwrap_err();
        assert_eq!(e, ProtocolError::MessageTooBig { len: 16, max: 15 });
        assert_eq!(e.close_code(), 1009);
    }

    #[test]
    fn validates_close_frames() {
        assert_eq!(one(&client_frame(true, 8, b"", M)), Ok(Poll::Event(Event::Close(None))));
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        assert_eq!(one(&client_frame(true, 8, &p, M)), Ok(Poll::Event(Event::Close(Some((1000, "bye"))))));
        assert_eq!(err_of(&client_frame(true, 8, &[3], M)), ProtocolError::CloseOneByte);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(err_of(&client_frame(true, 8, &code.to_be_bytes(), M)), ProtocolError::BadCloseCode(code));
        }
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(one(&client_frame(true, 8, &code.to_be_bytes(), M)).is_ok(), "{code}");
        }
        let e = err_of(&client_frame(true, 8, &[0x03, 0xe8, 0xff, 0xfe], M));
        assert_eq!((e, e.close_code()), (ProtocolError::InvalidCloseReason, 1007));
    }

    #[test]
    fn rejects_invalid_utf8_text() {
        let e = err_of(&client_frame(true, 1, &[0xc3, 0x28], M));
        assert_eq!((e, e.close_code()), (ProtocolError::InvalidText, 1007));
        // Split inside a character across fragments is fine.
        let mut s = client_frame(false, 1, &[0xc3], M);
        s.extend(client_frame(true, 0, &[0xa9], M));
        assert_eq!(one(&s), Ok(Poll::Event(Event::Text("é"))));
    }

    #[test]
    fn a_pipelining_peer_cannot_grow_the_buffer() {
        // Frames of 1,000 bytes fed in pieces of 4,096: the buffer never empties, as a partial
        // frame is always pending, yet it must stay near the size of what is unread.
        let mut d = Decoder::default();
        let frame = client_frame(true, 2, &[5u8; 1000], [9, 8, 7, 6]);
        let stream: Vec<u8> = std::iter::repeat(frame).take(5000).flatten().collect();
        let mut frames = 0;
        for piece in stream.chunks(4096) {
            d.feed(piece);
            while let Ok(Poll::Event(Event::Binary(_))) = d.poll() {
                frames += 1;
            }
            assert!(d.buf.capacity() <= 4 * 4096, "buffer of {} bytes", d.buf.capacity());
        }
        assert_eq!(frames, 5000);
    }

    #[test]
    fn a_large_frame_gets_room_for_itself_and_one_read() {
        // Frames of 60,000 bytes in reads of 4,096: the buffer holds a frame and the read that
        // ends it, not twice that (which growing by doubling gives), whether it starts empty or
        // with a smaller buffer from the pool.
        for start in [0, 50_000] {
            let mut d = Decoder { buf: Vec::with_capacity(start), ..Decoder::default() };
            let frame = client_frame(true, 2, &[6u8; 60_000], [1, 3, 5, 7]);
            let stream: Vec<u8> = std::iter::repeat(frame.clone()).take(40).flatten().collect();
            let mut frames = 0;
            for piece in stream.chunks(4096) {
                d.feed(piece);
                while let Ok(Poll::Event(Event::Binary(p))) = d.poll() {
                    assert_eq!(p.len(), 60_000);
                    frames += 1;
                }
                assert!(d.buf.capacity() <= frame.len() + 2 * 4096, "buffer of {} bytes", d.buf.capacity());
            }
            assert_eq!(frames, 40);
        }
    }

    #[test]
    fn a_small_partial_frame_waits_without_the_read_buffer() {
        let mut d = Decoder::default();
        let frame = client_frame(true, 2, &[3u8; 1000], [1, 1, 2, 2]);
        let mut stream: Vec<u8> = std::iter::repeat(frame.clone()).take(20).flatten().collect();
        // 10.5 frames in one read: ten are served, half a frame waits.
        let first = 10 * frame.len() + 500;
        d.buf = Vec::with_capacity(64 * 1024);
        d.feed(&stream[..first]);
        for _ in 0..10 {
            assert!(matches!(d.poll(), Ok(Poll::Event(Event::Binary(_)))));
        }
        assert_eq!(d.poll(), Ok(Poll::NeedMore(frame.len() - 500)));
        assert_eq!(d.buf.capacity(), 0, "the read buffer went back to the pool");
        assert_eq!(d.parked.len(), 500);
        assert_eq!(d.parked.capacity(), 500, "the parked frame holds no more than itself");
        assert!(d.is_mid_message());
        assert_eq!(d.buffered(), 500);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(frame.len() - 500)), "polling again changes nothing");
        d.feed(&stream.split_off(first));
        assert_eq!(d.parked.capacity(), 0, "back in the read buffer, the parked copy is freed");
        for _ in 0..10 {
            assert!(matches!(d.poll(), Ok(Poll::Event(Event::Binary(p))) if p == [3u8; 1000]));
        }
        assert_eq!(d.poll(), Ok(Poll::NeedMore(2)));
        assert!(!d.is_mid_message());
    }

    #[test]
    fn feed_tells_how_many_bytes_are_missing_at_least() {
        let mut d = Decoder::default();
        let f = client_frame(true, 2, &[7u8; 300], [1, 2, 3, 4]);
        assert_eq!(d.feed(&f[..1]), 0, "nothing known yet: poll");
        assert_eq!(d.poll(), Ok(Poll::NeedMore(1)));
        assert_eq!(d.feed(&f[1..3]), 0);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(1)), "the rest of the extended length");
        assert_eq!(d.feed(&f[3..4]), 0);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(4)), "the mask");
        assert_eq!(d.feed(&f[4..6]), 2);
        assert_eq!(d.feed(&f[6..8]), 0);
        assert_eq!(d.poll(), Ok(Poll::NeedMore(300)));
        assert_eq!(d.feed(&f[8..108]), 200);
        assert_eq!(d.feed(&f[108..307]), 1);
        assert_eq!(d.feed(&f[307..]), 0);
        assert!(matches!(d.poll(), Ok(Poll::Event(Event::Binary(p))) if p == [7u8; 300]));
    }

    #[test]
    fn unmask_matches_bytewise_xor_at_every_length() {
        for len in 0..80 {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, M);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ M[i % 4]).collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn encodes_server_frames() {
        for (len, hdr) in [(0usize, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            encode_frame(&mut out, Opcode::Binary, &vec![1; len]);
            assert_eq!(out.len(), hdr + len);
            assert_eq!(header_len(len), hdr);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0, "server frames are unmasked");
        }
        let mut out = Vec::new();
        encode_message(&mut out, Opcode::Binary, b"abcdefg", Some(3));
        assert_eq!(out, [0x02, 3, b'a', b'b', b'c', 0x00, 3, b'd', b'e', b'f', 0x80, 1, b'g']);
        let mut out = Vec::new();
        encode_close(&mut out, 1002, "");
        assert_eq!(out, [0x88, 2, 0x03, 0xea]);
        let mut out = Vec::new();
        encode_close(&mut out, 1000, &"é".repeat(100));
        assert!(out.len() <= 127 && std::str::from_utf8(&out[4..]).is_ok());
    }
}
