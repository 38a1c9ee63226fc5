//! Replies: bytes in, complete replies out as a flat list of items.

use redis_protocol::resp2::{decode::decode_range as decode2, types::RangeFrame as Frame2};
use redis_protocol::resp3::{decode::complete::decode_range as decode3, types::RangeFrame as Frame3};

use super::scan::{Scan, Scanner};
use super::RespError;

/// What an [`Item`] is.
pub mod item {
    /// `+OK`: the bytes are the string.
    pub const SIMPLE: u32 = 1;
    /// `-ERR ...` (and RESP3's blob error): the bytes are the message.
    pub const ERROR: u32 = 2;
    /// `:42`: the value is `int`.
    pub const INTEGER: u32 = 3;
    /// `$5\r\nhello` (and RESP3's verbatim string, without its format): the bytes are the value.
    pub const BULK: u32 = 4;
    /// RESP2's `$-1` / `*-1`, RESP3's `_`.
    pub const NIL: u32 = 5;
    /// An array of `count` elements; they follow, each with its own elements before the next.
    pub const ARRAY: u32 = 6;
    /// A RESP3 map: `count` elements follow, key, value, key, value...
    pub const MAP: u32 = 7;
    /// A RESP3 set of `count` elements.
    pub const SET: u32 = 8;
    /// A RESP3 out-of-band push of `count` elements.
    pub const PUSH: u32 = 9;
    /// A RESP3 double: the value is `num`.
    pub const DOUBLE: u32 = 10;
    /// A RESP3 boolean: `int` is 1 or 0.
    pub const BOOLEAN: u32 = 11;
    /// A RESP3 big number: the bytes are its decimal digits.
    pub const BIG_NUMBER: u32 = 12;
}

/// One element of a reply, in the order of the wire (an aggregate before its elements). A
/// `#[repr(C)]` struct so the Lua side can read a reply through LuaJIT's FFI.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Item {
    /// An [`item`] code.
    pub kind: u32,
    /// Aggregates: how many elements follow (a map of n pairs has 2n).
    pub count: u32,
    /// Strings: where the bytes start in [`Reply::bytes`].
    pub offset: usize,
    /// Strings: how many bytes.
    pub len: usize,
    /// [`item::INTEGER`]'s value; [`item::BOOLEAN`]'s 1 or 0.
    pub int: i64,
    /// [`item::DOUBLE`]'s value.
    pub num: f64,
    /// Index of the item after this one and all of its elements: how to skip an aggregate.
    pub end: usize,
}

impl Item {
    fn new(kind: u32, at: usize) -> Item {
        Item { kind, count: 0, offset: 0, len: 0, int: 0, num: 0.0, end: at + 1 }
    }
}

/// A complete reply, borrowed from the decoder until its next call.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    /// The reply's bytes as they came; items' offsets point here.
    pub bytes: &'a [u8],
    /// Its elements, the reply itself first.
    pub items: &'a [Item],
}

impl<'a> Reply<'a> {
    /// The bytes of a string item.
    pub fn bytes_of(&self, item: &Item) -> &'a [u8] {
        &self.bytes[item.offset..item.offset + item.len]
    }

    /// True when the reply is an error (`-ERR ...`); [`Reply::bytes_of`] its first item is the message.
    pub fn is_error(&self) -> bool {
        self.items[0].kind == item::ERROR
    }
}

/// What [`ReplyDecoder::poll`] found.
#[derive(Debug)]
pub enum Poll<T> {
    /// A complete reply.
    Reply(T),
    /// No complete reply yet: at least this many more bytes are needed.
    NeedMore(usize),
}

/// The protocol the server speaks on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, what a connection speaks until `HELLO 3`.
    Resp2,
    /// RESP3, after a successful `HELLO 3`.
    Resp3,
}

/// Bounds on one reply. A reply passing one is an error found from its announced lengths and
/// counts, before its bytes are buffered: memory stays within about `max_reply_len` for the bytes
/// plus `max_elements` [`Item`]s (56 bytes each) and as many parse nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest reply, in bytes. Default 4 MiB: an `XREAD COUNT 100` over many channels of
    /// messages of some KiB fits; the channels layer picks its own from its message limit.
    pub max_reply_len: usize,
    /// Most elements in one reply, all levels counted. Default 262,144.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_reply_len: 4 << 20, max_elements: 1 << 18 }
    }
}

/// An idle decoder keeps at most this much buffer: more was for a large reply that is gone.
const IDLE_CAPACITY: usize = 16 << 10;

/// Replies of one connection: [`ReplyDecoder::feed`] the bytes read from the socket, then
/// [`ReplyDecoder::poll`] until it says [`Poll::NeedMore`]. Pipelined replies come out one per
/// poll, in order. A reply split at any byte decodes the same as in one piece.
///
/// The buffer holds the reply being received plus what was fed since the last poll: feed what
/// one read returned, poll until `NeedMore`, read again.
#[derive(Debug)]
pub struct ReplyDecoder {
    limits: Limits,
    protocol: Protocol,
    buf: Vec<u8>,
    /// Where the next reply starts in `buf`.
    start: usize,
    /// Length of the reply last handed out, released at the next call.
    handed_out: usize,
    scanner: Scanner,
    items: Vec<Item>,
    error: Option<RespError>,
}

impl ReplyDecoder {
    /// A decoder for a connection speaking `protocol`.
    pub fn new(limits: Limits, protocol: Protocol) -> ReplyDecoder {
        ReplyDecoder {
            limits,
            protocol,
            buf: Vec::new(),
            start: 0,
            handed_out: 0,
            scanner: Scanner::new(),
            items: Vec::new(),
            error: None,
        }
    }

    /// Switches the protocol for the replies not yet begun: call it before sending `HELLO 3`
    /// (its reply is RESP3), with no reply half-received.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
    }

    /// The protocol replies are read in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Bytes received and not yet handed out as a reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start - self.handed_out
    }

    /// Bytes the decoder holds allocated for its buffer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn release(&mut self) {
        self.start += self.handed_out;
        self.handed_out = 0;
        self.items.clear();
    }

    /// Appends bytes read from the socket. The reply handed out by the last poll is released.
    /// After an error the bytes are dropped.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return; // The stream lost its framing: nothing more is kept.
        }
        self.release();
        if self.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > IDLE_CAPACITY && data.len() <= IDLE_CAPACITY {
                self.buf.shrink_to(IDLE_CAPACITY);
            }
        } else if self.start > 0 {
            // What is left is part of one reply: poll ran until NeedMore before this read.
            self.buf.drain(..self.start);
        }
        self.start = 0;
        self.buf.extend_from_slice(data);
    }

    /// The next complete reply, or how many more bytes are needed at least.
    pub fn poll(&mut self) -> Result<Poll<Reply<'_>>, RespError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.release();
        let resp3 = self.protocol == Protocol::Resp3;
        let len = match self.scanner.scan(&self.buf[self.start..], &self.limits, resp3) {
            Ok(Scan::NeedMore(n)) => return Ok(Poll::NeedMore(n)),
            Ok(Scan::Complete(len)) => len,
            Err(e) => return Err(self.fail(e)),
        };
        self.scanner.reset();
        let bytes = &self.buf[self.start..self.start + len];
        let parsed = if resp3 {
            match decode3(bytes) {
                Ok(Some((frame, used))) if used == len => flatten3(&frame, &mut self.items),
                _ => Err(RespError::Malformed),
            }
        } else {
            match decode2(bytes) {
                Ok(Some((frame, used))) if used == len => flatten2(&frame, &mut self.items),
                _ => Err(RespError::Malformed),
            }
        };
        if let Err(e) = parsed {
            return Err(self.fail(e));
        }
        self.handed_out = len;
        Ok(Poll::Reply(Reply { bytes: &self.buf[self.start..self.start + len], items: &self.items }))
    }

    fn fail(&mut self, e: RespError) -> RespError {
        self.error = Some(e);
        self.items.clear();
        e
    }
}

fn string(items: &mut Vec<Item>, kind: u32, (start, end): (usize, usize)) {
    let mut it = Item::new(kind, items.len());
    it.offset = start;
    it.len = end - start;
    items.push(it);
}

fn number(items: &mut Vec<Item>, kind: u32, int: i64) {
    let mut it = Item::new(kind, items.len());
    it.int = int;
    items.push(it);
}

/// Pushes an aggregate's item, its elements through `each`, and sets its count and end.
fn aggregate<T>(
    items: &mut Vec<Item>,
    kind: u32,
    elements: impl ExactSizeIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<Item>, T) -> Result<(), RespError>,
) -> Result<(), RespError> {
    let at = items.len();
    let mut it = Item::new(kind, at);
    it.count = elements.len() as u32;
    items.push(it);
    for e in elements {
        each(items, e)?;
    }
    items[at].end = items.len();
    Ok(())
}

fn flatten2(frame: &Frame2, items: &mut Vec<Item>) -> Result<(), RespError> {
    match frame {
        Frame2::SimpleString(r) => string(items, item::SIMPLE, *r),
        Frame2::Error(r) => string(items, item::ERROR, *r),
        Frame2::BulkString(r) => string(items, item::BULK, *r),
        Frame2::Integer(v) => number(items, item::INTEGER, *v),
        Frame2::Null => items.push(Item::new(item::NIL, items.len())),
        Frame2::Array(a) => aggregate(items, item::ARRAY, a.iter(), |items, f| flatten2(f, items))?,
    }
    Ok(())
}

fn flatten3(frame: &Frame3, items: &mut Vec<Item>) -> Result<(), RespError> {
    match frame {
        Frame3::SimpleString { data, .. } => string(items, item::SIMPLE, *data),
        Frame3::SimpleError { data, .. } | Frame3::BlobError { data, .. } => string(items, item::ERROR, *data),
        Frame3::BlobString { data, .. } | Frame3::VerbatimString { data, .. } => string(items, item::BULK, *data),
        Frame3::BigNumber { data, .. } => string(items, item::BIG_NUMBER, *data),
        Frame3::Number { data, .. } => number(items, item::INTEGER, *data),
        Frame3::Boolean { data, .. } => number(items, item::BOOLEAN, i64::from(*data)),
        Frame3::Double { data, .. } => {
            let mut it = Item::new(item::DOUBLE, items.len());
            it.num = *data;
            items.push(it);
        }
        Frame3::Null => items.push(Item::new(item::NIL, items.len())),
        Frame3::Array { data, .. } => aggregate(items, item::ARRAY, data.iter(), |items, f| flatten3(f, items))?,
        Frame3::Push { data, .. } => aggregate(items, item::PUSH, data.iter(), |items, f| flatten3(f, items))?,
        Frame3::Set { data, .. } => aggregate(items, item::SET, data.iter(), |items, f| flatten3(f, items))?,
        Frame3::Map { data, .. } => {
            let at = items.len();
            // The crate builds its map from the last pair back: reversed, that is wire order.
            aggregate(items, item::MAP, data.iter().rev(), |items, (k, v)| {
                flatten3(k, items)?;
                flatten3(v, items)
            })?;
            items[at].count *= 2;
        }
        // Never produced by complete decoding of what the scanner lets through.
        Frame3::Hello { .. } | Frame3::ChunkedString(_) => return Err(RespError::Malformed),
    }
    Ok(())
}
