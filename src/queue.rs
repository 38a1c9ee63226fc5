//! A connection's output queue: the bytes to send, in order, and how large each write should be.
//!
//! Everything a connection sends goes through one [`OutputQueue`]: replies, pushes, pongs and close
//! frames. The queue is one buffer, `buf[sent..queued]`, with values held by reference spliced in
//! at their positions ([`Chunk::Held`]): large strings the caller keeps and sends itself, so they
//! are never copied here. A reply is encoded straight after the queued frames: the queue lends its
//! buffer, with room left for the frame header, to the encoder ([`OutputQueue::lend`]) and frames
//! the message where it lies when it comes back ([`OutputQueue::seal`]). Only when the message's
//! size needs a header of another length does it move, once. A push to a queue with less than a
//! write's worth left under its limit is encoded apart and copied in if it fits, so that a queue
//! kept full by a client that does not read holds its limit and no more.
//!
//! The write-size policy lives here too ([`OutputQueue::write_size`]): nginx keeps, per connection,
//! a send buffer as large as the largest write so far, so writes are kept to a steady size.

use std::collections::VecDeque;

use crate::frame::{self, Opcode};
use crate::message::encode::Taken;
use crate::message::Ref;
use crate::pool;

/// Queued output goes out in writes of up to this many bytes (more when one message is larger):
/// about what the replies to one read of nginx's default 4 KiB socket buffer come to, so a
/// pipelining connection writes once per read. nginx copies each write into a send buffer that the
/// connection keeps and that grows with the largest write; one under a page comes from the
/// request's pool and stays there when outgrown. Writes of a steady size keep that to one buffer
/// per connection, where unbounded batches kept several, larger than APISIX's one write per reply.
pub const WRITE_BATCH: usize = 4096 + 128;
/// Writes carry at most this many queued bytes (and the held values among them): larger frames go
/// in pieces, so no Lua string the writes are made of reaches LuaJIT's 128 KiB mmap threshold.
pub const WRITE_MAX: usize = 64 * 1024;
/// A fresh buffer lent for a reply has room for about this many replies of the expected size (a
/// pipelining client's read holds about as many requests), at most [`WRITE_BATCH`].
const LEND_REPLIES: usize = 16;
/// A queue keeps an emptied buffer of at most this capacity instead of giving it to the pool.
const KEEP_SMALL: usize = 128;

/// Past a write's worth, a queue's buffer grows to at least this many bytes at once.
const LARGE_FIRST: usize = 64 * 1024;

/// The capacity a buffer of capacity `cap` grows to for `need` bytes of pushes under `limit`,
/// `over` the most bytes the caller may need past the limit (the room a push is encoded in, see
/// [`OutputQueue::lend_push`]).
///
/// Up to a write's worth it doubles, as a `Vec` does. Beyond, it takes large steps (64 KiB, then
/// four times as much) and goes no further than the limit and `over`: a queue behind a slow
/// client then reaches its final size in a step or two instead of five, and the blocks it leaves
/// behind are of the sizes other queues ask for next. With reallocations of every size in
/// between, a worker of 100 slow readers kept 13.1 MB of heap for 9.3 MB in use (9.0 for 8.8
/// with these steps).
fn push_capacity(cap: usize, need: usize, limit: usize, over: usize) -> usize {
    let most = limit.saturating_add(over + PUSH_HEADER_ROOM);
    let grown = if need <= WRITE_BATCH { cap * 2 } else { (cap * 4).max(LARGE_FIRST) };
    grown.min(most).max(need)
}

/// Bytes a push's frame header may need beside its payload under the limit.
const PUSH_HEADER_ROOM: usize = 16;

/// The front of the output queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Queued bytes.
    Bytes(&'a [u8]),
    /// A value held by reference: send the caller's value `id` from byte `offset` on.
    Held {
        /// The caller's name for the value.
        id: u32,
        /// Bytes of it already consumed.
        offset: usize,
        /// Bytes of it left.
        len: usize,
    },
}

/// A message lent out to be encoded after the queued output.
#[derive(Clone, Copy, Debug)]
struct Lent {
    /// Where its frame header goes (the end of the queued output).
    at: usize,
    /// Bytes left for the header; the message starts at `at + room`.
    room: usize,
    /// Encoded apart, in a spare buffer, at `at` 0: a push to a nearly full queue (see
    /// [`OutputQueue::lend_push`]), moved in only if it fits.
    apart: bool,
    /// How far the message moved since it was encoded: its held values' positions are as far off.
    moved: usize,
}

/// One connection's output, in the order it goes out.
#[derive(Debug)]
pub struct OutputQueue {
    buf: Vec<u8>,
    sent: usize,
    queued: usize,
    held: VecDeque<Ref>,
    /// Bytes of the front held value already consumed, and of all held values left.
    held_sent: usize,
    held_pending: usize,
    lent: Option<Lent>,
    /// A message's payload while it is cut into fragments (the `fragment` option only).
    scratch: Vec<u8>,
    /// Split messages into frames of at most this many payload bytes.
    fragment: Option<usize>,
    /// The largest message queued so far, frame header included.
    largest: usize,
    /// Whether anything was consumed (written) yet.
    wrote: bool,
    /// Bytes ever queued, and ever written (as the writer confirms them, see
    /// [`OutputQueue::written`]): positions in the whole output, so that a push's end stays put
    /// while the buffer is reused.
    total_queued: u64,
    total_written: u64,
    /// Where each push still (partly) queued ends, in `total_*` positions, oldest first.
    pushes: PushEnds,
}

/// Where each push still (partly) queued ends, in the queue's `total_*` positions, oldest first:
/// the first in full, the later ones as runs of equal distances from the push before, each run a
/// varint of its distance (shifted left, the low bit saying whether a count follows) and, for a
/// run of more than one, a varint of its length. A queue of small pushes spends a byte or two on
/// each (8 bytes, a `u64` each, was 40 % of a queue of 16-byte pushes beside its limit); pushes of
/// one size, as a producer's of fixed-size records are, take a few bytes in all (two each were
/// 0.2 % of a full 64 KiB queue of 1 KiB pushes, past its limit).
#[derive(Debug, Default)]
struct PushEnds {
    count: usize,
    front: u64,
    back: u64,
    /// The distances of the pushes after the front: the run being read, the encoded runs, then
    /// the newest run, not encoded until a push of another distance ends it.
    head: Run,
    runs: VecDeque<u8>,
    tail: Run,
}

/// `n` pushes, each ending `gap` bytes after the one before.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    gap: u64,
    n: u64,
}

impl PushEnds {
    /// A push ending at `end`, no earlier than the last one.
    fn push(&mut self, end: u64) {
        if self.count == 0 {
            self.front = end;
        } else {
            let gap = end - self.back;
            if self.tail.n > 0 && self.tail.gap == gap {
                self.tail.n += 1;
            } else {
                if self.tail.n > 0 {
                    self.encode(self.tail);
                }
                self.tail = Run { gap, n: 1 };
            }
        }
        self.back = end;
        self.count += 1;
    }

    fn encode(&mut self, run: Run) {
        self.put_varint(run.gap << 1 | u64::from(run.n > 1));
        if run.n > 1 {
            self.put_varint(run.n);
        }
    }

    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.runs.push_back(v as u8 | 0x80);
            v >>= 7;
        }
        self.runs.push_back(v as u8);
    }

    fn take_varint(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = self.runs.pop_front()?;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
    }

    /// The oldest encoded run, taken off.
    fn decode(&mut self) -> Option<Run> {
        let word = self.take_varint()?;
        let n = if word & 1 == 1 { self.take_varint().unwrap_or(1) } else { 1 };
        Some(Run { gap: word >> 1, n })
    }

    /// Forgets the pushes that end at or before `written`.
    fn written(&mut self, written: u64) {
        while self.count > 0 && self.front <= written {
            self.count -= 1;
            if self.count == 0 {
                self.runs.clear();
                self.head = Run::default();
                self.tail = Run::default();
                break;
            }
            if self.head.n == 0 {
                self.head = match self.decode() {
                    Some(run) => run,
                    None => std::mem::take(&mut self.tail),
                };
            }
            self.head.n -= 1;
            self.front += self.head.gap;
        }
    }
}

/// Why a push was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queued bytes and the push together would pass the connection's limit.
    #[error("queue full")]
    QueueFull,
    /// The connection has ended (or its close frame is queued): nothing may follow.
    #[error("closed")]
    Closed,
}

impl OutputQueue {
    /// An empty queue; `fragment` splits messages into frames of at most that many payload bytes.
    pub fn new(fragment: Option<usize>) -> OutputQueue {
        OutputQueue {
            buf: Vec::new(),
            sent: 0,
            queued: 0,
            held: VecDeque::new(),
            held_sent: 0,
            held_pending: 0,
            lent: None,
            scratch: Vec::new(),
            fragment,
            largest: 0,
            wrote: false,
            total_queued: 0,
            total_written: 0,
            pushes: PushEnds::default(),
        }
    }

    /// Whether messages are cut into fragments.
    pub fn fragments(&self) -> bool {
        self.fragment.is_some_and(|n| n > 0)
    }

    /// Pushes queued and not yet wholly written.
    pub fn unsent_pushes(&self) -> usize {
        self.pushes.count
    }

    /// Notes that `n` more bytes taken from the queue reached the socket: a write succeeded. Bytes
    /// are taken ([`OutputQueue::consume`]) before the write that may fail; only written ones make
    /// a push sent.
    pub fn written(&mut self, n: usize) {
        self.total_written += n as u64;
        self.pushes.written(self.total_written);
    }

    /// Marks the frames queued last, up to the end of the queue, as a push.
    fn mark_push(&mut self) {
        self.pushes.push(self.total_queued);
    }

    /// Queues a message whose `PubSubResp` bytes are `payload`, copied, as a push; cut into
    /// fragments if the queue fragments. Refused when the queue would then hold more than `limit`.
    pub fn push_copy(&mut self, payload: &[u8], limit: usize) -> Result<(), PushError> {
        if self.pending() + frame::header_len(payload.len()) + payload.len() > limit {
            return Err(PushError::QueueFull);
        }
        let fragment = self.fragment;
        let size = frame::header_len(payload.len()) + payload.len();
        let cut = if self.fragments() { size / 8 } else { 0 };
        self.room_for_push(size + cut, limit, cut);
        self.largest = self.largest.max(size);
        self.push_frames(|b| frame::encode_message(b, Opcode::Binary, payload, fragment));
        self.mark_push();
        Ok(())
    }

    /// Queues, as a push, a message whose `len` bytes of `PubSubResp` the caller keeps as value
    /// `id` and sends itself: only its frame header is written here. Refused when the queue would
    /// then hold more than `limit`. Not for a queue that fragments (use [`OutputQueue::push_copy`]).
    pub fn push_held(&mut self, id: u32, len: usize, limit: usize) -> Result<(), PushError> {
        if self.pending() + frame::header_len(len) + len > limit {
            return Err(PushError::QueueFull);
        }
        self.largest = self.largest.max(frame::header_len(len) + len);
        self.room_for_push(frame::header_len(len), limit, 0);
        self.push_frames(|b| frame::encode_header(b, true, Opcode::Binary, len));
        self.hold_push(id, len);
        Ok(())
    }

    /// Queues the caller's value `id`, `len` bytes held by reference, at the end of the queue, as
    /// the end of a push.
    fn hold_push(&mut self, id: u32, len: usize) {
        self.held.push_back(Ref { at: self.queued, id, len });
        self.held_pending += len;
        self.total_queued += len as u64;
        self.mark_push();
    }

    /// Queues, as a push, a whole frame of `len` bytes (its header too) that the caller keeps as
    /// value `id` and sends itself: nothing is written here, so a push shared by many connections
    /// goes out of the one string in one piece. Refused when the queue would then hold more than
    /// `limit`. Not for a queue that fragments.
    pub fn push_framed(&mut self, id: u32, len: usize, limit: usize) -> Result<(), PushError> {
        if self.pending() + len > limit {
            return Err(PushError::QueueFull);
        }
        debug_assert!(self.lent.is_none(), "a frame queued while a message is lent out");
        self.largest = self.largest.max(len);
        self.hold_push(id, len);
        Ok(())
    }

    /// Like [`OutputQueue::seal`], for a push: refused (and dropped, the buffer taken back) when
    /// the queue would then hold more than `limit`.
    pub fn seal_push(&mut self, taken: Taken<'_>, limit: usize) -> Result<(), PushError> {
        let Some(lent) = self.lent else { return Err(PushError::Closed) };
        let len = taken.buf.len() - (lent.at + lent.room) + taken.held;
        if self.pending() + frame::header_len(len) + len > limit {
            drop(taken.refs);
            self.restore(taken.buf);
            return Err(PushError::QueueFull);
        }
        let taken = if lent.apart { self.move_in(taken, lent, limit) } else { taken };
        self.seal(taken);
        self.mark_push();
        Ok(())
    }

    /// Moves a push encoded apart to the end of the queued output, lent there as
    /// [`OutputQueue::lend`] lends, to be sealed; the spare buffer goes back to the pool.
    fn move_in<'a>(&mut self, taken: Taken<'a>, lent: Lent, limit: usize) -> Taken<'a> {
        let Taken { buf: apart, base, held, refs } = taken;
        self.lent = None;
        let cut = if self.fragments() { apart.len() / 8 } else { 0 };
        self.room_for_push(apart.len() + cut, limit, cut);
        let mut buf = std::mem::take(&mut self.buf);
        let at = buf.len();
        buf.extend_from_slice(&apart);
        pool::give(apart);
        self.lent = Some(Lent { at, room: lent.room, apart: false, moved: at });
        Taken { buf, base: base + at, held, refs }
    }

    /// Queued bytes, held values included.
    pub fn pending(&self) -> usize {
        self.queued - self.sent + self.held_pending
    }

    /// Whether anything was written (consumed) yet.
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// How many queued bytes one write should carry at most: [`WRITE_BATCH`], or the largest message
    /// so far if larger (a message goes out whole, as APISIX's one write per reply does), up to
    /// [`WRITE_MAX`]. Writing as soon as this much is queued keeps writes at a steady size.
    pub fn write_size(&self) -> usize {
        WRITE_BATCH.max(self.largest).min(WRITE_MAX)
    }

    /// The queued bytes that fill whole writes of [`OutputQueue::write_size`] (0 if less is
    /// queued): what to write while more replies may still join the last, partial one.
    pub fn whole_writes(&self) -> usize {
        let pending = self.pending();
        pending - pending % self.write_size()
    }

    /// The front of the queue: up to `max` queued bytes before the next held value, or that value.
    /// `None` when nothing is queued.
    pub fn chunk(&self, max: usize) -> Option<Chunk<'_>> {
        match self.held.front() {
            Some(r) if r.at == self.sent => Some(Chunk::Held { id: r.id, offset: self.held_sent, len: r.len - self.held_sent }),
            front => {
                let limit = front.map_or(self.queued, |r| r.at);
                let end = self.sent + max.min(limit - self.sent);
                (end > self.sent).then(|| Chunk::Bytes(&self.buf[self.sent..end]))
            }
        }
    }

    /// Bytes taken from the queue ([`OutputQueue::consume`]) whose write is not confirmed yet
    /// ([`OutputQueue::written`]): non-zero while a write is under way.
    pub fn in_flight(&self) -> u64 {
        self.total_queued - self.pending() as u64 - self.total_written
    }

    /// The queued output from the front, as the pieces of one gathered write: runs of queued bytes
    /// and, in their places, held values whose bytes `resolve` gives (the whole value; what was
    /// consumed of it already is left out here). Stops before a held value `resolve` does not know,
    /// or when `each` has had `max` pieces. Returns the bytes given to `each`.
    pub fn pieces<'a>(
        &'a self,
        max: usize,
        mut resolve: impl FnMut(u32) -> Option<&'a [u8]>,
        mut each: impl FnMut(&'a [u8]),
    ) -> usize {
        let (mut pos, mut given, mut total) = (self.sent, 0, 0);
        let mut skip = self.held_sent;
        for r in &self.held {
            if given == max {
                return total;
            }
            if r.at > pos {
                each(&self.buf[pos..r.at]);
                given += 1;
                total += r.at - pos;
                pos = r.at;
                if given == max {
                    return total;
                }
            }
            let Some(v) = resolve(r.id) else { return total };
            debug_assert_eq!(v.len(), r.len, "a held value resolved to another length");
            let v = &v[skip.min(v.len())..];
            skip = 0;
            if !v.is_empty() {
                each(v);
                given += 1;
                total += v.len();
            }
        }
        if given < max && self.queued > pos {
            each(&self.buf[pos..self.queued]);
            total += self.queued - pos;
        }
        total
    }

    /// Drops `n` bytes from the front of the queue (what a write sent), held values included.
    pub fn consume(&mut self, mut n: usize) {
        self.wrote |= n > 0;
        while n > 0 {
            match self.held.front() {
                Some(r) if r.at == self.sent => {
                    let m = n.min(r.len - self.held_sent);
                    self.held_sent += m;
                    self.held_pending -= m;
                    n -= m;
                    if self.held_sent == r.len {
                        self.held.pop_front();
                        self.held_sent = 0;
                    }
                }
                front => {
                    let limit = front.map_or(self.queued, |r| r.at);
                    let m = n.min(limit - self.sent);
                    if m == 0 {
                        break;
                    }
                    self.sent += m;
                    n -= m;
                }
            }
        }
        if self.sent == self.queued && self.held.is_empty() && self.lent.is_none() {
            // All sent: the buffer goes back to the pool until there is more to send, unless it is
            // as small as a push or two (a fan-out's subscriber would otherwise take a buffer
            // from the allocator and give it back for each push, the pool being with others).
            if self.buf.capacity() > KEEP_SMALL {
                pool::release(&mut self.buf);
            } else {
                self.buf.clear();
            }
            self.sent = 0;
            self.queued = 0;
        }
    }

    /// Drops the sent front of the buffer when it is at least as large as what is left to send
    /// (so each byte moves at most about once): a queue that never empties, behind a slow reader
    /// with pushes coming, then stays within about twice what it holds.
    fn compact(&mut self) {
        let sent = self.sent;
        if sent == 0 || self.lent.is_some() || sent < self.queued - sent {
            return;
        }
        self.drop_sent();
    }

    /// Moves the unsent bytes to the front of the buffer.
    fn drop_sent(&mut self) {
        let sent = self.sent;
        self.buf.drain(..sent);
        for r in self.held.iter_mut() {
            r.at -= sent;
        }
        self.queued -= sent;
        self.sent = 0;
    }

    /// Makes room for `n` more bytes of a push under `limit` (`over` of them may lie past it):
    /// compacts first (all of the sent front when the buffer would otherwise grow), then grows the
    /// buffer, never past what the limit can ever need ([`push_capacity`]), so that a queue kept
    /// full by a client that reads slowly or not at all holds about its limit, not twice it.
    fn room_for_push(&mut self, n: usize, limit: usize, over: usize) {
        self.compact();
        pool::refill(&mut self.buf);
        if self.buf.capacity() < self.buf.len() + n && self.sent > 0 && self.lent.is_none() {
            self.drop_sent();
        }
        let need = self.buf.len() + n;
        if self.buf.capacity() < need {
            let cap = push_capacity(self.buf.capacity(), need, limit, over);
            self.buf.reserve_exact(cap - self.buf.len());
        }
    }

    /// The socket took less than was queued, on a push (a client that does not keep up): a queue
    /// still in a small buffer moves at once into the large one it would grow to (at most the
    /// limit), and the small one goes back to the pool. When many queues stall together (a
    /// fan-out to clients that stopped reading), each small buffer is then reused by the next
    /// queue instead of growing into a large one a push later and leaving a hole between the
    /// others: 4 KiB of heap a connection that the allocator kept.
    pub fn backlogged(&mut self, limit: usize) {
        let want = LARGE_FIRST.min(limit.saturating_add(PUSH_HEADER_ROOM));
        if self.lent.is_some() || self.buf.capacity() >= want || self.queued - self.sent >= want {
            return;
        }
        if self.sent > 0 {
            self.drop_sent();
        }
        let mut large = Vec::with_capacity(want);
        large.extend_from_slice(&self.buf);
        pool::give(std::mem::replace(&mut self.buf, large));
    }

    /// Like [`OutputQueue::lend`], for a push under `limit`: with room for a message of a usual
    /// size made the way [`OutputQueue::room_for_push`] makes it.
    ///
    /// When the queue has less than that room left under its limit, the push is encoded apart
    /// instead, in a spare buffer, and copied in only if it fits ([`OutputQueue::seal_push`]): a
    /// queue kept full then holds no room for a push it will refuse, and refusing costs no copy.
    pub fn lend_push(&mut self, limit: usize) -> Vec<u8> {
        if self.pending().saturating_add(WRITE_BATCH) > limit {
            debug_assert!(self.lent.is_none(), "lent twice: restore or seal the first message");
            let room = 4;
            let mut buf = pool::take();
            buf.resize(room, 0);
            self.lent = Some(Lent { at: 0, room, apart: true, moved: 0 });
            return buf;
        }
        self.room_for_push(WRITE_BATCH, limit, 0);
        self.lend(0)
    }

    /// The buffer's capacity (for tests and memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends frames that `write` encodes (control frames, a close).
    pub fn push_frames(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        debug_assert!(self.lent.is_none(), "frames queued while a message is lent out");
        self.compact();
        pool::refill(&mut self.buf);
        let before = self.buf.len();
        write(&mut self.buf);
        self.queued = self.buf.len();
        self.total_queued += (self.queued - before) as u64;
    }

    /// Lends the buffer for a message to be encoded after the queued output, behind room for its
    /// frame header: 4 bytes (payloads up to 65535 bytes) unless `hint`, the expected size, is
    /// larger, then 10. Give it back with [`OutputQueue::seal`] or [`OutputQueue::restore`].
    pub fn lend(&mut self, hint: usize) -> Vec<u8> {
        debug_assert!(self.lent.is_none(), "lent twice: restore or seal the first message");
        self.compact();
        let room = if hint > 0xffff { 10 } else { 4 };
        let at = self.queued;
        let mut buf = std::mem::take(&mut self.buf);
        buf.truncate(at);
        pool::refill(&mut buf);
        let want = (hint + 32).saturating_mul(LEND_REPLIES).min(WRITE_BATCH);
        if at == 0 && buf.capacity() < want {
            // No spare buffer (the worker's few are with connections whose writers have not run
            // yet), or a small one: take room for a read's worth of replies of the expected size
            // at once, instead of growing through a reallocation every few bytes.
            buf.reserve(want);
        }
        buf.resize(at + room, 0);
        self.lent = Some(Lent { at, room, apart: false, moved: 0 });
        buf
    }

    /// Takes back a buffer lent by [`OutputQueue::lend`] without queueing the message in it.
    pub fn restore(&mut self, mut buf: Vec<u8>) {
        match self.lent.take() {
            Some(l) if l.apart => pool::give(buf),
            Some(l) => {
                buf.truncate(l.at);
                self.buf = buf;
            }
            None => {}
        }
    }

    /// Whether a buffer is lent out.
    pub fn is_lent(&self) -> bool {
        self.lent.is_some()
    }

    /// Queues the message encoded in the buffer lent by [`OutputQueue::lend`]: writes its frame
    /// header into the room left (moving the payload and the positions of held values when the
    /// header needs another length), or cuts it into fragments (not a message with held values,
    /// whose bytes are not here to cut). Returns the frame's length, or `None` if nothing was lent.
    pub fn seal(&mut self, taken: Taken<'_>) -> Option<usize> {
        let mut lent = self.lent?;
        let taken = if lent.apart {
            // (A push encoded apart is sealed by seal_push, under its limit; here, none.)
            let t = self.move_in(taken, lent, usize::MAX);
            lent = self.lent?;
            t
        } else {
            taken
        };
        self.lent = None;
        let Taken { mut buf, base, held, refs } = taken;
        let body = lent.at + lent.room;
        debug_assert_eq!(base, body);
        let len = buf.len() - body + held;
        let size = frame::header_len(len) + len;
        self.largest = self.largest.max(size);
        match self.fragment {
            Some(n) if n > 0 && len > n && held == 0 => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&buf[body..]);
                buf.truncate(lent.at);
                frame::encode_message(&mut buf, Opcode::Binary, &self.scratch, Some(n));
            }
            _ => {
                let h = frame::header_len(len);
                let end = buf.len();
                if h != lent.room {
                    if h > lent.room {
                        buf.resize(end + (h - lent.room), 0);
                    }
                    buf.copy_within(body..end, lent.at + h);
                    buf.truncate(lent.at + h + (end - body));
                }
                frame::write_header(&mut buf[lent.at..], true, Opcode::Binary, len);
                for mut r in refs {
                    r.at = r.at + lent.moved + h - lent.room;
                    self.held_pending += r.len;
                    self.held.push_back(r);
                }
            }
        }
        self.total_queued += (buf.len() - lent.at + held) as u64;
        self.buf = buf;
        self.queued = self.buf.len();
        Some(size)
    }
}

/// permessage-deflate: marking a queued message as compressed.
impl OutputQueue {
    /// Bytes ever queued: taken before a message is queued, it says where that message begins
    /// (see [`OutputQueue::flag_compressed`]), however the buffer moves meanwhile.
    pub fn total_queued(&self) -> u64 {
        self.total_queued
    }

    /// Sets RSV1 on the first frame of the message queued since `mark` ([`OutputQueue::total_queued`]
    /// before it was queued), whose payload is compressed; `held` is the length of the value it
    /// holds by reference (its frame header is then the last of the queued bytes).
    pub fn flag_compressed(&mut self, mark: u64, held: usize) {
        let added = (self.total_queued - mark) as usize - held;
        debug_assert!(added > 0, "nothing was queued since the mark");
        if added > 0 {
            let at = self.queued - added;
            self.buf[at] |= 0x40;
        }
    }
}

/// What the tests of the queue and of the session share.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Chunk, OutputQueue};

    /// Drains `q` up to `step` bytes at a time, as a writer would, putting held values
    /// (`values[id]`) in place; checks that each consume counts down exactly.
    pub fn drain(q: &mut OutputQueue, values: &[Vec<u8>], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = q.chunk(step) {
            let n = match c {
                Chunk::Bytes(b) => {
                    out.extend_from_slice(b);
                    b.len()
                }
                Chunk::Held { id, offset, len } => {
                    let v = &values[id as usize];
                    assert_eq!(v.len(), offset + len);
                    let n = len.min(step);
                    out.extend_from_slice(&v[offset..offset + n]);
                    n
                }
            };
            let before = q.pending();
            q.consume(n);
            assert_eq!(q.pending(), before - n);
        }
        assert_eq!(q.pending(), 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::drain;
    use super::*;
    use crate::message::testing::field_id;
    use crate::message::ReplyEncoder;
    use crate::schema::Schema;

    fn pong(q: &mut OutputQueue, e: &mut ReplyEncoder, seq: i64, state: &[u8], held: Option<u32>) {
        let buf = q.lend(0);
        e.begin_in(buf, seq);
        e.open(field_id("PubSubResp", "pong_resp")).unwrap();
        let id = field_id("PongResp", "state");
        match held {
            Some(r) => e.put_bytes_ref(id, r, state.len()).unwrap(),
            None => e.put_bytes(id, state).unwrap(),
        }
        e.close().unwrap();
        q.seal(e.take().unwrap()).unwrap();
    }

    #[test]
    fn push_ends_are_kept_in_a_byte_or_two_each() {
        let mut p = PushEnds::default();
        let ends: Vec<u64> = [3u64, 3, 130, 20_000, 20_001, 1 << 40, (1 << 40) + 127, (1 << 40) + 254].into();
        for &e in &ends {
            p.push(e);
        }
        assert_eq!(p.count, ends.len());
        // Distances 0, 127, 19870, 1, 2^40 - 20001 encoded (shifted: 1, 2, 3, 1 and 6 bytes); the
        // run of two 127s is the tail, not encoded yet.
        assert_eq!(p.runs.len(), 1 + 2 + 3 + 1 + 6);
        for (i, &w) in [2u64, 3, 129, 130, 19_999, 20_001, (1 << 40) - 1, (1 << 40) + 200, u64::MAX].iter().enumerate() {
            p.written(w);
            let left = ends.iter().filter(|&&e| e > w).count();
            assert_eq!(p.count, left, "written {w} (step {i})");
        }
        assert!(p.runs.is_empty());
        // Small pushes of sizes that change: a byte each.
        for i in 0..1000u64 {
            p.push(10 + 20 * i + i % 2);
        }
        assert_eq!(p.runs.len(), 998);
        p.written(u64::MAX);
        // Pushes of one size: one run, however many.
        for i in 0..100_000u64 {
            p.push(1_000_000 + 1040 * i);
        }
        assert!(p.runs.is_empty(), "the one run is the tail");
        p.push(1_000_000 + 1040 * 99_999 + 7);
        assert_eq!(p.runs.len(), 2 + 3, "the run of 1040s: its distance and its count");
        p.written(1_000_000 + 1040 * 50_000);
        assert_eq!(p.count, 49_999 + 1);
    }

    proptest::proptest! {
        #[test]
        fn push_ends_count_what_is_not_written(ops in proptest::collection::vec((0u8..4, 0u64..300), 0..400)) {
            let (mut p, mut model, mut end, mut written) = (PushEnds::default(), Vec::new(), 0u64, 0u64);
            for (op, n) in ops {
                if op == 0 {
                    written = (written + n * 3).min(end);
                    p.written(written);
                    model.retain(|&e| e > written);
                } else {
                    // Runs of equal sizes are common: op 1 repeats a size from a small set.
                    end += if op == 1 { n % 3 * 100 } else { n };
                    p.push(end);
                    model.push(end);
                }
                proptest::prop_assert_eq!(p.count, model.len());
                if let Some(&first) = model.first() {
                    proptest::prop_assert_eq!(p.front, first, "the oldest push's end");
                }
            }
        }
    }

    #[test]
    fn a_backlogged_queue_moves_into_its_large_buffer_once() {
        // (The thread's spare buffers taken out first: a queue would start in one of them.)
        while pool::take().capacity() > 0 {}
        let mut q = OutputQueue::new(None);
        q.push_copy(&[1; 100], 65_536).unwrap();
        q.push_held(0, 3000, 65_536).unwrap();
        q.push_copy(&[2; 50], 65_536).unwrap();
        q.consume(60);
        q.written(60);
        let small = q.capacity();
        assert!(small < LARGE_FIRST, "capacity {small}");
        let values = [vec![9u8; 3000]];
        let mut want = OutputQueue::new(None);
        want.push_copy(&[1; 100], 65_536).unwrap();
        want.push_held(0, 3000, 65_536).unwrap();
        want.push_copy(&[2; 50], 65_536).unwrap();
        let whole = drain(&mut want, &values, 1 << 20);
        q.backlogged(65_536);
        assert_eq!(q.capacity(), LARGE_FIRST);
        q.backlogged(65_536);
        assert_eq!(q.capacity(), LARGE_FIRST, "once");
        assert_eq!(drain(&mut q, &values, 777), whole[60..], "the same bytes, the held value in its place");
        // Under a small limit, no further than the limit.
        while pool::take().capacity() > 0 {}
        let mut q = OutputQueue::new(None);
        q.push_copy(&[1; 100], 2000).unwrap();
        q.backlogged(2000);
        assert_eq!(q.capacity(), 2000 + PUSH_HEADER_ROOM);
    }

    #[test]
    fn an_abandoned_message_leaves_the_queue_as_it_was() {
        let mut q = OutputQueue::new(None);
        let mut e = ReplyEncoder::new(Schema::builtin());
        q.push_frames(|b| frame::encode_frame(b, Opcode::Pong, b"p"));
        let before = q.pending();
        let buf = q.lend(0);
        e.begin_in(buf, 1);
        e.open(field_id("PubSubResp", "pong_resp")).unwrap();
        q.restore(e.abandon());
        assert!(!q.is_lent());
        assert_eq!(q.pending(), before);
        assert_eq!(drain(&mut q, &[], 100), [0x8a, 1, b'p']);
    }

    #[test]
    fn order_and_held_values_survive_any_write_size() {
        let values = vec![vec![b'h'; 70_000], vec![b'i'; 5000]];
        for step in [1usize, 7, 4096, WRITE_MAX] {
            let mut q = OutputQueue::new(None);
            let mut e = ReplyEncoder::new(Schema::builtin());
            pong(&mut q, &mut e, 1, b"a", None);
            pong(&mut q, &mut e, 2, &values[0], Some(0));
            q.push_frames(|b| frame::encode_frame(b, Opcode::Pong, b"x"));
            pong(&mut q, &mut e, 3, &values[1], Some(1));
            let want_len = q.pending();
            let out = drain(&mut q, &values, step);
            assert_eq!(out.len(), want_len);
            assert_eq!(q.pending(), 0);
            // The frames, in order: three binary replies with a pong between the second and third.
            let mut pos = 0;
            let mut ops = Vec::new();
            while pos < out.len() {
                let (len, hdr) = match out[pos + 1] {
                    126 => (u16::from_be_bytes([out[pos + 2], out[pos + 3]]) as usize, 4),
                    127 => (u64::from_be_bytes(out[pos + 2..pos + 10].try_into().unwrap()) as usize, 10),
                    n => (n as usize, 2),
                };
                ops.push(out[pos] & 0x0f);
                pos += hdr + len;
            }
            assert_eq!(ops, [2, 2, 10, 2], "step {step}");
        }
    }

    #[test]
    fn write_size_follows_the_largest_message() {
        let mut q = OutputQueue::new(None);
        let mut e = ReplyEncoder::new(Schema::builtin());
        assert_eq!(q.write_size(), WRITE_BATCH);
        pong(&mut q, &mut e, 1, &[b'a'; 6000], None);
        assert_eq!(q.write_size(), q.pending());
        assert_eq!(q.whole_writes(), q.pending());
        pong(&mut q, &mut e, 1, &vec![b'a'; 200_000], None);
        assert_eq!(q.write_size(), WRITE_MAX);
    }

    proptest::proptest! {
        /// Any mix of replies, copied, held and encoded pushes (in place, or apart when the queue is
        /// nearly full), partial writes and backlogs: every byte goes out once, in the order queued; a push
        /// is taken only within the limit, and the count of pushes not yet sent is exact.
        #[test]
        fn order_limit_and_push_count_hold_for_any_mix(
            ops in proptest::collection::vec((0u8..8, 1usize..3000, 1usize..5000), 1..40),
            limit in 100usize..20_000,
        ) {
            let mut q = OutputQueue::new(None);
            let mut e = ReplyEncoder::new(Schema::builtin());
            let mut values: Vec<Vec<u8>> = Vec::new();
            let mut expected: Vec<u8> = Vec::new();
            let mut sent: Vec<u8> = Vec::new();
            let mut push_ends: Vec<usize> = Vec::new();
            for (i, &(kind, size, step)) in ops.iter().enumerate() {
                let state = vec![b'a' + (i % 26) as u8; size];
                let mut frame = Vec::new();
                e.begin(i as i64);
                e.put_pong(&state);
                let payload = e.finish().unwrap().to_vec();
                frame::encode_frame(&mut frame, Opcode::Binary, &payload);
                let before = q.pending();
                let queued = match kind {
                    0 => {
                        // A reply: never refused.
                        pong(&mut q, &mut e, i as i64, &state, None);
                        true
                    }
                    1 => q.push_copy(&payload, limit).is_ok(),
                    2 => {
                        values.push(payload.clone());
                        q.push_held(values.len() as u32 - 1, payload.len(), limit).is_ok()
                    }
                    4 | 5 => {
                        // Encoded where the queue lends it, its state copied or held by reference.
                        e.begin_in(q.lend_push(limit), i as i64);
                        e.open(field_id("PubSubResp", "pong_resp")).unwrap();
                        let id = field_id("PongResp", "state");
                        if kind == 5 {
                            values.push(state.clone());
                            e.put_bytes_ref(id, values.len() as u32 - 1, size).unwrap();
                        } else {
                            e.put_bytes(id, &state).unwrap();
                        }
                        e.close().unwrap();
                        q.seal_push(e.take().unwrap(), limit).is_ok()
                    }
                    6 => {
                        // The socket found full: the queue moves into its large buffer.
                        q.backlogged(limit);
                        false
                    }
                    7 => {
                        // A whole frame held by reference, its header in it.
                        values.push(frame.clone());
                        q.push_framed(values.len() as u32 - 1, frame.len(), limit).is_ok()
                    }
                    _ => {
                        // A write of up to `step` bytes.
                        let out = drain_some(&mut q, &values, step);
                        q.written(out.len());
                        sent.extend_from_slice(&out);
                        false
                    }
                };
                if matches!(kind, 1 | 2 | 4 | 5 | 7) {
                    proptest::prop_assert!(!q.is_lent());
                    proptest::prop_assert_eq!(queued, before + frame.len() <= limit);
                    if queued {
                        push_ends.push(expected.len() + frame.len());
                    }
                }
                if queued {
                    expected.extend_from_slice(&frame);
                }
                let unsent = push_ends.iter().filter(|&&end| end > sent.len()).count();
                proptest::prop_assert_eq!(q.unsent_pushes(), unsent);
            }
            let rest = drain(&mut q, &values, 777);
            proptest::prop_assert_eq!(q.unsent_pushes(), push_ends.iter().filter(|&&end| end > sent.len()).count(), "taken is not written");
            q.written(rest.len());
            sent.extend_from_slice(&rest);
            proptest::prop_assert!(sent == expected);
            proptest::prop_assert_eq!(q.unsent_pushes(), 0);
        }
    }

    proptest::proptest! {
        /// Gathered writes (the pieces a push written at once is made of), of any length, between
        /// the writer's: the same bytes in the same order as the writer alone sends; pieces stop
        /// before a held value they cannot resolve; what is taken counts as in flight until written.
        #[test]
        fn gathered_writes_keep_order_with_the_writers(
            ops in proptest::collection::vec((0u8..5, 1usize..3000, 1usize..9000), 1..40),
            unknown in 0u32..4,
        ) {
            let mut q = OutputQueue::new(None);
            let mut e = ReplyEncoder::new(Schema::builtin());
            let mut values: Vec<Vec<u8>> = Vec::new();
            let mut expected: Vec<u8> = Vec::new();
            let mut sent: Vec<u8> = Vec::new();
            for (i, &(kind, size, step)) in ops.iter().enumerate() {
                let state = vec![b'a' + (i % 26) as u8; size];
                e.begin(i as i64);
                e.put_pong(&state);
                let payload = e.finish().unwrap().to_vec();
                let mut frame = Vec::new();
                frame::encode_frame(&mut frame, Opcode::Binary, &payload);
                match kind {
                    0 => {
                        q.push_copy(&payload, usize::MAX).unwrap();
                        expected.extend_from_slice(&frame);
                    }
                    1 | 2 => {
                        values.push(payload.clone());
                        q.push_held(values.len() as u32 - 1, payload.len(), usize::MAX).unwrap();
                        expected.extend_from_slice(&frame);
                    }
                    3 => {
                        let out = drain_some(&mut q, &values, step);
                        proptest::prop_assert_eq!(q.in_flight(), out.len() as u64);
                        q.written(out.len());
                        sent.extend_from_slice(&out);
                    }
                    _ => {
                        // A gathered write that the socket takes `step` bytes of.
                        let mut out = Vec::new();
                        let total = q.pieces(
                            3,
                            |id| if unknown > 0 && id % 4 == unknown { None } else { Some(&values[id as usize][..]) },
                            |p| out.extend_from_slice(p),
                        );
                        proptest::prop_assert_eq!(total, out.len());
                        proptest::prop_assert!(total <= q.pending());
                        let n = step.min(total);
                        proptest::prop_assert_eq!(q.in_flight(), 0);
                        q.consume(n);
                        proptest::prop_assert_eq!(q.in_flight(), n as u64);
                        q.written(n);
                        sent.extend_from_slice(&out[..n]);
                    }
                }
                proptest::prop_assert_eq!(q.in_flight(), 0);
            }
            let rest = drain(&mut q, &values, 777);
            q.written(rest.len());
            sent.extend_from_slice(&rest);
            proptest::prop_assert!(sent == expected);
        }
    }

    #[test]
    fn pieces_put_held_values_in_their_places() {
        let values = [vec![b'h'; 300], vec![b'i'; 5]];
        let mut q = OutputQueue::new(None);
        q.push_copy(b"one", usize::MAX).unwrap();
        q.push_held(0, 300, usize::MAX).unwrap();
        q.push_held(1, 5, usize::MAX).unwrap();
        let mut lens = Vec::new();
        let total = q.pieces(16, |id| Some(&values[id as usize][..]), |p| lens.push(p.len()));
        // "one" and the two headers before the first held value, its 300 bytes, the second header, 5.
        assert_eq!(lens, [2 + 3 + 4, 300, 2, 5]);
        assert_eq!(total, q.pending());
        // Part of the first value consumed: it resumes where that ended.
        q.consume(9 + 100);
        let mut got = Vec::new();
        q.pieces(16, |id| Some(&values[id as usize][..]), |p| got.push(p.to_vec()));
        assert_eq!(got[0], vec![b'h'; 200]);
        // A value it cannot resolve stops it, with what comes before given.
        let mut n = 0;
        let total = q.pieces(16, |id| (id == 0).then_some(&values[0][..]), |_| n += 1);
        assert_eq!((n, total), (2, 200 + 2));
        // And so does the piece limit.
        assert_eq!(q.pieces(1, |id| Some(&values[id as usize][..]), |_| ()), 200);
    }

    /// One write of at most `max` bytes, as the writer makes it.
    fn drain_some(q: &mut OutputQueue, values: &[Vec<u8>], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < max {
            let n = match q.chunk(max - out.len()) {
                None => break,
                Some(Chunk::Bytes(b)) => {
                    out.extend_from_slice(b);
                    b.len()
                }
                Some(Chunk::Held { id, offset, len }) => {
                    let n = len.min(max - out.len());
                    out.extend_from_slice(&values[id as usize][offset..offset + n]);
                    n
                }
            };
            q.consume(n);
        }
        out
    }

    #[test]
    fn a_queue_that_never_empties_does_not_grow() {
        let mut q = OutputQueue::new(None);
        let mut e = ReplyEncoder::new(Schema::builtin());
        let values: Vec<Vec<u8>> = (0..2000).map(|i| vec![b'h'; 100 + i % 7]).collect();
        let mut peak = 0;
        for (i, v) in values.iter().enumerate() {
            // A push copied, a push held, a reply: and a write of a little less than came in.
            q.push_copy(&[b'c'; 90], usize::MAX).unwrap();
            q.push_held(i as u32, v.len(), usize::MAX).unwrap();
            pong(&mut q, &mut e, i as i64, b"r", None);
            let mut left = 200;
            while left > 0 {
                let n = match q.chunk(left) {
                    Some(Chunk::Bytes(b)) => b.len(),
                    Some(Chunk::Held { len, .. }) => len.min(left),
                    None => break,
                };
                q.consume(n);
                left -= n;
            }
            if i > 100 {
                peak = peak.max(q.capacity());
            }
        }
        let pending = q.pending();
        assert!(pending > 10_000, "the reader is slow: {pending} bytes wait");
        assert!(peak < 8 * 4096 + 2 * pending, "the buffer kept its sent front: {peak} bytes for {pending} pending");
        // Under a limit, the buffer stays within it however the writes fall.
        let limit = 20_000;
        let mut slow = OutputQueue::new(None);
        let mut slow_peak = 0;
        for i in 0..5000 {
            let _ = slow.push_copy(&[b'c'; 300], limit);
            if i % 3 == 0 {
                let n = match slow.chunk(700) {
                    Some(Chunk::Bytes(b)) => b.len(),
                    _ => 0,
                };
                slow.consume(n);
            }
            slow_peak = slow_peak.max(slow.capacity());
        }
        assert!(slow_peak <= limit + PUSH_HEADER_ROOM, "{slow_peak} bytes of buffer for a limit of {limit}");
        let all = drain(&mut q, &values, 1000);
        assert_eq!(all.len(), pending);
    }

    #[test]
    fn an_emptied_queue_keeps_a_small_buffer_and_gives_a_large_one_back() {
        let mut q = OutputQueue::new(None);
        q.push_copy(&[7; 20], usize::MAX).unwrap();
        let small = q.capacity();
        assert!(small > 0 && small <= KEEP_SMALL, "capacity {small}");
        drain(&mut q, &[], usize::MAX);
        assert_eq!(q.capacity(), small, "a fan-out's next push reuses it");
        q.push_copy(&[7; 2000], usize::MAX).unwrap();
        drain(&mut q, &[], usize::MAX);
        assert_eq!(q.capacity(), 0, "back to the pool");
        // A reply lent into a kept small buffer still gets room for a read's worth at once.
        q.push_copy(&[7; 20], usize::MAX).unwrap();
        drain(&mut q, &[], usize::MAX);
        let buf = q.lend(20);
        assert!(buf.capacity() >= 52 * LEND_REPLIES, "capacity {}", buf.capacity());
        q.restore(buf);
    }

    #[test]
    fn a_full_queue_that_never_sends_holds_about_its_limit() {
        let limit = 65_536;
        for held in [false, true] {
            let mut q = OutputQueue::new(None);
            let mut e = ReplyEncoder::new(Schema::builtin());
            let mut n = 0u32;
            loop {
                let ok = if held {
                    let buf = q.lend_push(limit);
                    e.begin_in(buf, 1);
                    e.put_pong(&[b'p'; 1000]);
                    q.seal_push(e.take().unwrap(), limit).is_ok()
                } else {
                    q.push_copy(&[b'c'; 1000], limit).is_ok()
                };
                if !ok {
                    break;
                }
                n += 1;
            }
            assert!(n >= 60, "{n} pushes fit");
            // (A push to a nearly full queue is encoded apart: the queue holds no room for it.)
            assert!(q.capacity() <= limit + PUSH_HEADER_ROOM, "capacity {} for a limit of {limit}", q.capacity());
        }
    }
}
