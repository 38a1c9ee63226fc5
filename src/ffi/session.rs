//! The session object Lua holds: one connection's [`Session`], and the words of its last event.

use std::ffi::c_int;
use std::ptr;

use super::contract::{kind, Event};
use super::schema::{schema_of, SchemaHandle};
use super::{bytes, guard};
use crate::frame::Limits;
use crate::message::ReplyEncoder;
use crate::queue::PushError;
use crate::session::{Chunk, Options, PushFailure, Session, Step, WRITE_MAX};
use super::contract::push_status;
use super::contract::DeflateConfig;
use crate::deflate;
use super::socket::{Socket, Wrote};
use std::ffi::c_void;
use std::io::IoSlice;

/// A session as Lua holds it: the session plus the words of its last protocol error (the other
/// events' words live in the session).
#[derive(Debug)]
pub struct LuaSession {
    session: Session,
    note: String,
    /// The connection's socket while `wait()` serves it, when pushes may be written at once.
    socket: Option<Socket>,
    /// Pushes are refused as closed from now on (`wait()` is ending: [`session_refuse_pushes`]).
    refusing: bool,
    /// How many fan-outs hold this session as a member ([`super::fanout`]): while any does, it is
    /// not freed.
    pins: u32,
    /// Lua let go of it while it was pinned: the last fan-out to let go frees it.
    orphaned: bool,
}

impl LuaSession {
    /// Whether a push now would be written at once, whole, unless the socket is full: its socket
    /// is attached and usable, and nothing is queued or being written.
    pub(super) fn writes_at_once(&self) -> bool {
        !self.refusing
            && self.socket.as_ref().is_some_and(Socket::usable)
            && self.session.pending() == 0
            && !self.session.writing()
            && !self.session.is_ended()
    }

    /// A fan-out holds this session from now on.
    pub(super) fn pin(&mut self) {
        self.pins += 1;
    }

    /// A fan-out lets go of `s`, freeing it when it was the last holder of a session Lua freed.
    ///
    /// # Safety
    /// `s` is a live session that the caller pinned.
    pub(super) unsafe fn unpin(s: *mut LuaSession) {
        // SAFETY: the caller's promise: live, pinned by it.
        let ls = unsafe { &mut *s };
        ls.pins -= 1;
        if ls.pins == 0 && ls.orphaned {
            // SAFETY: made by Box::into_raw in session_new; Lua's session_free left it to us.
            drop(unsafe { Box::from_raw(s) });
        }
    }
}

/// The session behind `s`, or `None` for null.
///
/// # Safety
/// `s` is null or a live session from [`session_new`], not used elsewhere during the borrow.
unsafe fn live<'a>(s: *mut LuaSession) -> Option<&'a mut LuaSession> {
    // SAFETY: the caller's promise.
    unsafe { s.as_mut() }
}

/// Like [`live`], shared.
///
/// # Safety
/// `s` is null or a live session from [`session_new`].
unsafe fn seen<'a>(s: *const LuaSession) -> Option<&'a LuaSession> {
    // SAFETY: the caller's promise.
    unsafe { s.as_ref() }
}

/// Points `ev`'s note at `note`.
fn set_note(ev: &mut Event, note: &str) {
    ev.note = note.as_ptr();
    ev.note_len = note.len();
}

/// A session of `schema` with these limits (`fragment` 0: replies in one frame each; `max_queue` 0:
/// no limit on pushes); null for a null schema or on an internal error. Free it with [`session_free`].
///
/// # Safety
/// `schema` is null or a live handle.
pub unsafe extern "C" fn session_new(
    schema: *const SchemaHandle,
    max_payload: u64,
    max_message: u64,
    fragment: u64,
    max_queue: u64,
) -> *mut LuaSession {
    // SAFETY: the caller's promise.
    let Some(schema) = (unsafe { schema_of(schema) }) else {
        return ptr::null_mut();
    };
    guard(ptr::null_mut(), || {
        let opts = Options {
            limits: Limits { max_payload_len: max_payload, max_message_len: max_message },
            fragment: (fragment > 0).then_some(fragment as usize),
            max_queue_bytes: (max_queue > 0).then_some(max_queue as usize),
        };
        Box::into_raw(Box::new(LuaSession {
            session: Session::new(schema, opts),
            note: String::new(),
            socket: None,
            refusing: false,
            pins: 0,
            orphaned: false,
        }))
    })
}

/// Frees a session, or, while a fan-out still holds it, leaves that to the fan-out's last
/// letting go (Lua's references to a session and to its fan-outs may be collected in any order).
///
/// # Safety
/// `s` is null or a session from [`session_new`] not freed yet; it is not used afterwards.
pub unsafe extern "C" fn session_free(s: *mut LuaSession) {
    if !s.is_null() {
        guard((), || {
            // SAFETY: live until freed here or by the last unpin; Lua frees it once (ffi.gc).
            let ls = unsafe { &mut *s };
            if ls.pins > 0 {
                ls.orphaned = true;
                ls.socket = None;
            } else {
                // SAFETY: made by Box::into_raw in session_new, not pinned: ours to free.
                drop(unsafe { Box::from_raw(s) });
            }
        });
    }
}

/// From now on every push is refused as closed (and counted so): `wait()` is ending.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_refuse_pushes(s: *mut LuaSession) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        ls.refusing = true;
    }
}

/// The encoder of the session's replies (valid as long as the session); null for null.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_encoder(s: *mut LuaSession) -> *mut ReplyEncoder {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return ptr::null_mut() };
    guard(ptr::null_mut(), || ls.session.encoder() as *mut ReplyEncoder)
}

/// Feeds read bytes: 1 when the frame being received still needs more bytes (reading on without a
/// step is fine), 0 when a step may make progress, -1 on a null session or an internal error.
///
/// # Safety
/// `s` is null or a live session; `data` points to `len` bytes (a Lua string).
pub unsafe extern "C" fn session_feed(s: *mut LuaSession, data: *const u8, len: usize) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return -1 };
    // SAFETY: the caller's Lua string, alive during the call.
    let data = unsafe { bytes(data, len) };
    guard(-1, || c_int::from(ls.session.feed(data) > 0))
}

/// Serves frames until a command needs its handler or more bytes are needed; fills `ev` and
/// returns its kind ([`kind`]).
///
/// # Safety
/// `s` is null or a live session; `ev` is null or points to a writable event. What `ev` points
/// into stays valid until the session's next call.
pub unsafe extern "C" fn session_step(s: *mut LuaSession, ev: *mut Event) -> c_int {
    // SAFETY: the caller's promise, for both.
    let (Some(ls), Some(ev)) = (unsafe { live(s) }, unsafe { ev.as_mut() }) else { return kind::INTERNAL };
    guard(kind::INTERNAL, || {
        let LuaSession { session, note, .. } = ls;
        // The words of an event point into the session (valid until its next call); only a
        // protocol error's are made here.
        let (k, words): (c_int, &str) = match session.step() {
            Step::NeedMore => (kind::NEED_MORE, ""),
            Step::Command { sequence, command, ops, payload, text } => {
                ev.sequence = sequence;
                ev.command = i32::from(command.id);
                ev.nops = ops.len();
                ev.ops = ops.as_ptr();
                ev.payload = payload.as_ptr();
                ev.text = text.as_ptr();
                (kind::COMMAND, "")
            }
            Step::Empty => (kind::EMPTY, ""),
            Step::Undecodable(e) => (kind::UNDECODABLE, e),
            Step::Text(preview) => (kind::TEXT, preview),
            Step::Closed(code) => {
                ev.code = i32::from(code);
                (kind::CLOSED, "")
            }
            Step::Failed(e) => {
                *note = e.to_string();
                ev.code = i32::from(e.close_code());
                (kind::FAILED, note.as_str())
            }
            Step::Ended => (kind::ENDED, ""),
        };
        set_note(ev, words);
        ev.kind = k;
        k
    })
}

/// Turns the `cmd_ping` echo on (non-zero) or off.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_echo_ping(s: *mut LuaSession, on: c_int) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.session.set_echo_ping(on != 0))
    }
}

/// 1 when the peer is in the middle of a frame or message, else 0.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_mid_message(s: *const LuaSession) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return 0 };
    guard(0, || c_int::from(ls.session.frames().is_mid_message()))
}

/// Words for what the decoder waits for (a static string); `*len` its length.
///
/// # Safety
/// `s` is null or a live session; `len` points to a writable `size_t`.
pub unsafe extern "C" fn session_waiting(s: *const LuaSession, len: *mut usize) -> *const u8 {
    // SAFETY: the caller's promise, for both.
    let (Some(ls), Some(len)) = (unsafe { seen(s) }, unsafe { len.as_mut() }) else { return ptr::null() };
    guard(ptr::null(), || {
        let what = ls.session.frames().waiting().describe();
        *len = what.len();
        what.as_ptr()
    })
}

/// The front of the output queue, at most `max` bytes: queued bytes (returned, `*held` = -1), or a
/// value held by reference (null returned, `*held` = its id, `len[1]` = the bytes of it already
/// consumed). `len[0]` is the length; 0 when nothing is queued.
///
/// # Safety
/// `s` is null or a live session; `len` points to two writable `size_t`, `held` to an `int64_t`.
/// The bytes returned stay valid until the session's next call.
pub unsafe extern "C" fn session_chunk(s: *mut LuaSession, max: usize, len: *mut usize, held: *mut i64) -> *const u8 {
    // SAFETY: the caller's promise, for all three.
    let (Some(ls), Some(held)) = (unsafe { live(s) }, unsafe { held.as_mut() }) else { return ptr::null() };
    if len.is_null() {
        return ptr::null();
    }
    // SAFETY: non-null, and the caller's two size_t.
    let len = unsafe { std::slice::from_raw_parts_mut(len, 2) };
    guard(ptr::null(), || {
        *held = -1;
        match ls.session.chunk(max) {
            Some(Chunk::Bytes(b)) => {
                len[0] = b.len();
                b.as_ptr()
            }
            Some(Chunk::Held { id, offset, len: n }) => {
                *held = i64::from(id);
                len[0] = n;
                len[1] = offset;
                ptr::null()
            }
            None => {
                len[0] = 0;
                ptr::null()
            }
        }
    })
}

/// Drops `n` sent bytes from the front of the output queue.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_consume(s: *mut LuaSession, n: usize) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.session.consume(n))
    }
}

/// Queued output bytes.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_pending(s: *const LuaSession) -> usize {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return 0 };
    guard(0, || ls.session.pending())
}

/// The size of one write (see `Session::write_size`).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_write_size(s: *const LuaSession) -> usize {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return WRITE_MAX };
    guard(WRITE_MAX, || ls.session.write_size())
}

/// How many queued bytes to write before reading more (see `Session::write_due`).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_write_due(s: *const LuaSession) -> usize {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return 0 };
    guard(usize::MAX, || ls.session.write_due())
}

/// Queued bytes that fill whole writes (see `Session::whole_writes`).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_whole_writes(s: *const LuaSession) -> usize {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return 0 };
    guard(usize::MAX, || ls.session.whole_writes())
}

/// Queues a close frame with this code and reason, ending the session.
///
/// # Safety
/// `s` is null or a live session; `reason` points to `len` bytes.
pub unsafe extern "C" fn session_close(s: *mut LuaSession, code: c_int, reason: *const u8, len: usize) {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return };
    // SAFETY: the caller's Lua string.
    let reason = String::from_utf8_lossy(unsafe { bytes(reason, len) });
    guard((), || ls.session.close(code as u16, &reason))
}

/// Starts the reply to the command handed out last.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_reply_begin(s: *mut LuaSession) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.session.reply_begin())
    }
}

/// Queues the reply built since `session_reply_begin`: 0, or a status whose words
/// `encode_error` gives.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_reply_finish(s: *mut LuaSession) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return super::contract::status::INTERNAL };
    guard(super::contract::status::INTERNAL, || super::encoder::status(ls.session.reply_finish()))
}

/// Queues `error_resp {code = 0, message}` as the reply to the command handed out last.
///
/// # Safety
/// `s` is null or a live session; `msg` points to `len` bytes.
pub unsafe extern "C" fn session_reply_error(s: *mut LuaSession, msg: *const u8, len: usize) {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return };
    // SAFETY: the caller's Lua string.
    let msg = unsafe { bytes(msg, len) };
    guard((), || ls.session.reply_error(msg))
}

/// The status of a push: `OK`, or why it was not queued ([`push_status`]).
fn push_code(r: Result<(), PushFailure>) -> c_int {
    match r {
        Ok(()) => push_status::OK,
        Err(PushFailure::Encode(e)) => {
            super::encoder::status(Err(e));
            push_status::FAILED
        }
        Err(PushFailure::Queue(PushError::QueueFull)) => push_status::QUEUE_FULL,
        Err(PushFailure::Queue(PushError::Closed)) => push_status::CLOSED,
    }
}

/// Starts a push with this sequence; fill it through the session's encoder.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_push_begin(s: *mut LuaSession, sequence: i64) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.session.push_begin(sequence))
    }
}

/// Queues the push built since `session_push_begin`, or drops it: a [`push_status`].
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_push_finish(s: *mut LuaSession) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return push_status::INTERNAL };
    guard(push_status::INTERNAL, || push_then_write(ls, None, Session::push_finish))
}

/// Queues a push of an encoded `PubSubResp` (`payload`, `len` bytes), held by reference as the
/// caller's value `held` (or copied when `held` is negative): a [`push_status`].
///
/// # Safety
/// `s` is null or a live session; `payload` points to `len` bytes.
pub unsafe extern "C" fn session_push_message(s: *mut LuaSession, payload: *const u8, len: usize, held: i64) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return push_status::INTERNAL };
    // SAFETY: the caller's Lua string, alive during the call.
    let payload = unsafe { bytes(payload, len) };
    let held = u32::try_from(held).ok();
    guard(push_status::INTERNAL, || {
        push_then_write(ls, held.map(|id| (id, payload)), |s| Ok(s.push_message(payload, held)?))
    })
}

/// Queues a push that is one whole binary frame (`frame`, `len` bytes, header included, as
/// [`frame_header`] and the message make it), held by reference as the caller's value `held`: a
/// [`push_status`]. `INTERNAL` when `frame` is not such a frame, or the session fragments or
/// compresses its messages (those push the payload: [`session_push_message`]).
///
/// # Safety
/// `s` is null or a live session; `frame` points to `len` bytes (a Lua string).
pub unsafe extern "C" fn session_push_framed(s: *mut LuaSession, frame: *const u8, len: usize, held: i64) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return push_status::INTERNAL };
    // SAFETY: the caller's Lua string, alive during the call.
    let frame = unsafe { bytes(frame, len) };
    let Ok(held) = u32::try_from(held) else { return push_status::INTERNAL };
    guard(push_status::INTERNAL, || {
        if !ls.session.takes_framed() || crate::frame::binary_frame_payload(frame).is_none() {
            return push_status::INTERNAL;
        }
        push_then_write(ls, Some((held, frame)), |s| Ok(s.push_framed(len, held)?))
    })
}

/// Writes into `out` (room for 10 bytes) the header of a binary server frame of `len` payload
/// bytes, FIN set: a message's frame, made once for every connection that sends it; returns the
/// header's length. Not counted as a frame sent (each connection counts its own).
///
/// # Safety
/// `out` points to at least 10 writable bytes.
pub unsafe extern "C" fn frame_header(len: usize, out: *mut u8) -> usize {
    // SAFETY: the caller's promise: 10 writable bytes.
    let dst = unsafe { std::slice::from_raw_parts_mut(out, 10) };
    guard(0, || crate::frame::put_header(dst, true, crate::frame::Opcode::Binary, len))
}

/// Pushes queued and not yet wholly sent.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_unsent_pushes(s: *const LuaSession) -> usize {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return 0 };
    guard(0, || ls.session.unsent_pushes())
}

/// 1 once the session has ended (a close received, sent or queued), else 0.
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_ended(s: *const LuaSession) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return 1 };
    guard(1, || c_int::from(ls.session.is_ended()))
}

/// Drops a reply or push begun and not finished (one whose table did not encode).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_abandon(s: *mut LuaSession) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.session.abandon())
    }
}

/// Notes that a write of `n` bytes taken from the queue succeeded (pushes in it count as sent).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_written(s: *mut LuaSession, n: usize) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.session.written(n))
    }
}

/// permessage-deflate: negotiates with the request's `Sec-WebSocket-Extensions` values
/// (`offers`, `len` bytes: every header line, joined by commas) under `cfg`. When an offer is
/// accepted, compression is on for the session and the response's value is returned (valid
/// until the next call on the session, `*out_len` bytes); null when every offer is declined
/// (or `cfg` is out of range): the connection is served uncompressed.
///
/// # Safety
/// `s` is null or a live session; `cfg` null or a live struct; `offers` points to `len` bytes;
/// `out_len` to a writable `size_t`.
pub unsafe extern "C" fn session_deflate(
    s: *mut LuaSession,
    cfg: *const DeflateConfig,
    offers: *const u8,
    len: usize,
    out_len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's promise.
    let (Some(ls), Some(cfg), Some(out_len)) = (unsafe { live(s) }, unsafe { cfg.as_ref() }, unsafe { out_len.as_mut() }) else {
        return ptr::null();
    };
    // SAFETY: the caller's Lua string, alive during the call.
    let offers = unsafe { bytes(offers, len) };
    guard(ptr::null(), || {
        let window = |v: u32| u8::try_from(v).unwrap_or(0);
        let config = deflate::Config {
            server_max_window_bits: window(cfg.server_max_window_bits),
            client_max_window_bits: window(cfg.client_max_window_bits),
            server_no_context_takeover: cfg.server_no_context_takeover != 0,
            client_no_context_takeover: cfg.client_no_context_takeover != 0,
            threshold: usize::try_from(cfg.threshold).unwrap_or(usize::MAX),
            level: cfg.level,
            large_level: cfg.large_level,
        };
        if config.validate().is_err() {
            return ptr::null();
        }
        let Some(params) = deflate::negotiate([offers], &config) else { return ptr::null() };
        ls.session.set_compression(params, config);
        ls.note = params.response();
        *out_len = ls.note.len();
        ls.note.as_ptr()
    })
}

/// The key under which a push of `len` bytes is compressed once for every connection that
/// shares it ([`deflate::SharedKey`] as a number), or -1: not compressed, or compressed by the
/// session itself (server context takeover).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_shared_key(s: *const LuaSession, len: usize) -> i64 {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { seen(s) }) else { return -1 };
    guard(-1, || {
        let key = ls.session.compression().and_then(|d| d.shared_key(len));
        key.map_or(-1, |k| i64::from(k.window_bits) << 8 | i64::from(k.level))
    })
}

/// Compresses `payload` (`len` bytes) once, with the worker's compressor of `key` (from
/// [`session_shared_key`]): the compressed payload (valid until the next call, `*out_len`
/// bytes), or null when it is no smaller (then it is sent as it is).
///
/// # Safety
/// `payload` points to `len` bytes; `out_len` to a writable `size_t`.
pub unsafe extern "C" fn deflate_shared(key: i64, payload: *const u8, len: usize, out_len: *mut usize) -> *const u8 {
    // SAFETY: the caller's promise.
    let Some(out_len) = (unsafe { out_len.as_mut() }) else { return ptr::null() };
    // SAFETY: the caller's Lua string, alive during the call.
    let payload = unsafe { bytes(payload, len) };
    let (Ok(window_bits), Ok(level)) = (u8::try_from(key >> 8), u32::try_from(key & 0xff)) else { return ptr::null() };
    if !(9..=15).contains(&window_bits) || level > 9 {
        return ptr::null();
    }
    guard(ptr::null(), || {
        thread_local! {
            static SHARED_OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let key = deflate::SharedKey { window_bits, level };
        SHARED_OUT.with(|out| {
            let mut out = out.borrow_mut();
            out.clear();
            deflate::with_shared(|c| c.deflate(key, payload, &mut out));
            if out.len() >= payload.len() {
                return ptr::null();
            }
            *out_len = out.len();
            out.as_ptr()
        })
    })
}

/// Queues a push compressed once by [`deflate_shared`] (`compressed` 1; RSV1 set) or, when it
/// did not compress smaller, as it is (`compressed` 0, no compression tried), held by
/// reference as the caller's value `held` (or copied when negative): a [`push_status`].
///
/// # Safety
/// `s` is null or a live session; `payload` points to `len` bytes.
pub unsafe extern "C" fn session_push_shared(s: *mut LuaSession, payload: *const u8, len: usize, held: i64, compressed: c_int) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return push_status::INTERNAL };
    // SAFETY: the caller's Lua string, alive during the call.
    let payload = unsafe { bytes(payload, len) };
    let held = u32::try_from(held).ok();
    guard(push_status::INTERNAL, || {
        push_then_write(ls, held.map(|id| (id, payload)), |s| Ok(s.push_deflated(payload, held, compressed != 0)?))
    })
}

/// Queues a push with `push`, then writes it at once where it may ([`write_through`]; `known`:
/// the push's own value held by reference): a [`push_status`]. A session whose request ended
/// under it, without `wait()` returning (see [`super::socket`]), or whose `wait()` is ending
/// ([`session_refuse_pushes`]), refuses it as closed, and counts it so; a push begun is dropped
/// then.
pub(super) fn push_then_write(
    ls: &mut LuaSession,
    known: Option<(u32, &[u8])>,
    push: impl FnOnce(&mut Session) -> Result<(), PushFailure>,
) -> c_int {
    if ls.refusing || ls.socket.as_ref().is_some_and(|sock| !sock.alive()) {
        ls.session.abandon();
        crate::metrics::WORKER.push_refused(false);
        return push_status::CLOSED;
    }
    let rc = push_code(push(&mut ls.session));
    write_through(ls, rc, known)
}

/// Pieces of one write made at once; a push is two or three (queued bytes, a value held by
/// reference, and whatever was queued before it).
const WRITE_PIECES: usize = 8;

/// After a push was queued (`rc` OK): writes the front of the queue at once when the session's
/// socket is attached and no write is under way (see [`super::socket`]), `known` being the push's
/// own value held by reference, if it is (its bytes are at hand during the call). Returns `SENT`
/// when nothing is left queued (the writer need not wake; a held value of the push, written, is
/// the caller's to release), else `rc`.
fn write_through(ls: &mut LuaSession, rc: c_int, known: Option<(u32, &[u8])>) -> c_int {
    let mut full = false;
    let r = write_front(ls, rc, known, &mut full);
    if full {
        // The socket is full, or the writer is waiting on it: the client is not keeping up.
        ls.session.backlogged();
    }
    match r {
        push_status::HELD => rc,
        r => r,
    }
}

/// [`write_through`], and `HELD` when a value held by the caller (that `known` is not) comes
/// before the end of what one gathered write would take: then nothing is written, and the caller
/// writes that front with the value, in one write (a frame header written alone would be a write
/// and a TCP segment of its own per message).
fn write_front(ls: &mut LuaSession, rc: c_int, known: Option<(u32, &[u8])>, full: &mut bool) -> c_int {
    if rc != push_status::OK {
        return rc;
    }
    let LuaSession { session, socket, .. } = ls;
    let Some(sock) = socket.as_mut().filter(|sock| sock.usable()) else { return rc };
    if session.is_ended() {
        return rc;
    }
    if session.writing() {
        *full = true;
        return rc;
    }
    loop {
        let mut pieces = [IoSlice::new(&[]); WRITE_PIECES];
        let mut n = 0;
        let total = session.pieces(
            WRITE_PIECES,
            |id| known.and_then(|(k, v)| (k == id).then_some(v)),
            |p| {
                pieces[n] = IoSlice::new(p);
                n += 1;
            },
        );
        if n < WRITE_PIECES && total < session.pending() {
            return push_status::HELD;
        }
        if total == 0 {
            break;
        }
        let Wrote::Bytes(w) = sock.write(&pieces[..n]) else { break };
        if w == 0 {
            *full = true;
            break;
        }
        crate::metrics::WORKER.direct_write();
        session.consume(w);
        session.written(w);
        if w < total {
            *full = true;
            break;
        }
    }
    if session.pending() == 0 {
        push_status::SENT
    } else {
        rc
    }
}

/// Writes the front of the queue at once, as a push's [`write_through`] does (for the reader, after
/// a read's replies are queued, and for the writer): `SENT` when nothing is left queued, `HELD`
/// when a value held by the caller comes within the next write (the caller writes that front and
/// the value; nothing was written), `OK` when the writer has
/// work otherwise (the socket is full, a write is under way, or no socket is attached).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_write_now(s: *mut LuaSession) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return push_status::INTERNAL };
    guard(push_status::INTERNAL, || write_front(ls, push_status::OK, None, &mut false))
}

/// Attaches the connection of request `r` to the session, so that pushes may be written at once
/// (see [`super::socket`]); `unix_send` and `cleanup_add` are nginx's `ngx_unix_send` and
/// `ngx_http_cleanup_add`. 1 when attached, 0 when the connection does not qualify (TLS, an
/// unexpected layout): its pushes then go through the writer thread only.
///
/// # Safety
/// `s` is null or a live session; `r` is the running request's `ngx_http_request_t *`, the
/// functions nginx's (or null); called from the worker's thread.
pub unsafe extern "C" fn session_attach_socket(s: *mut LuaSession, r: *mut c_void, unix_send: *mut c_void, cleanup_add: *mut c_void) -> c_int {
    // SAFETY: the caller's promise.
    let Some(ls) = (unsafe { live(s) }) else { return 0 };
    guard(0, || {
        // SAFETY: the caller's promise, passed on.
        match unsafe { Socket::attach(r, unix_send, cleanup_add) } {
            Ok(sock) => {
                ls.socket = Some(sock);
                1
            }
            Err(_) => 0,
        }
    })
}

/// Detaches the session's socket: from now on only the writer thread writes (as `wait()` ends).
///
/// # Safety
/// `s` is null or a live session.
pub unsafe extern "C" fn session_detach_socket(s: *mut LuaSession) {
    // SAFETY: the caller's promise.
    if let Some(ls) = unsafe { live(s) } {
        guard((), || ls.socket = None)
    }
}
