//! The fan-out object Lua holds per channel: the channel's subscribed sessions ([`Audience`]), and
//! the loop that pushes an entry to each of them, so that a delivery touches no Lua table.
//!
//! The loop queues and writes each push as `send` would (`push_then_write`: written at once where
//! the socket takes it). What Lua must see to is listed in the outcomes: a push queued and not
//! written (its writer is to be woken), refused (a full queue, an ended connection), or one Lua
//! sends itself (`LUA`: a member whose connection compresses, which shares one compressed copy per
//! key, and, by the [`fanout_mode`] Lua asks for, members whose queue is to hold a long message by
//! reference rather than a copy of their own: every member, or those with something queued).
//!
//! Lifetime: a member's session is pinned ([`LuaSession::pin`]) while it is a member, so it is
//! never freed under the fan-out whatever order Lua's collector finalizes the two in.

use std::ffi::c_int;
use std::ptr;

use super::contract::{fanout_mode, push_status, FanOutcome};
use super::session::{push_then_write, LuaSession};
use super::{bytes, guard};
use crate::fanout::{Audience, Payload, StreamId};

/// A member's session, and whether Lua sends to it itself.
#[derive(Debug)]
struct Seat {
    session: *mut LuaSession,
    lua: bool,
}

/// One channel's fan-out, as Lua holds it.
#[derive(Debug, Default)]
pub struct LuaFanOut {
    audience: Audience<Seat>,
    payload: Payload,
    outcomes: Vec<FanOutcome>,
}

impl Drop for LuaFanOut {
    fn drop(&mut self) {
        for seat in self.audience.keys() {
            // SAFETY: pinned when it joined, not unpinned since (it is still a member).
            unsafe { LuaSession::unpin(seat.session) };
        }
    }
}

/// A fan-out without members; free it with [`fanout_free`].
pub extern "C" fn fanout_new() -> *mut LuaFanOut {
    guard(ptr::null_mut(), || Box::into_raw(Box::<LuaFanOut>::default()))
}

/// Frees a fan-out, letting go of its members' sessions.
///
/// # Safety
/// `f` is null or a fan-out from [`fanout_new`] not freed yet; it is not used afterwards.
pub unsafe extern "C" fn fanout_free(f: *mut LuaFanOut) {
    if !f.is_null() {
        // SAFETY: made by Box::into_raw in fanout_new, freed once (by the ffi.gc finalizer).
        guard((), || drop(unsafe { Box::from_raw(f) }));
    }
}

/// Adds session `s` as a member whose pushes carry `sequence`; entries up to the stream id
/// `after` (`after_len` 0: none) are not for it; `lua` 1: Lua sends it every entry (outcome
/// `LUA`). Returns its slot, or -1 (null pointers, a bad id).
///
/// # Safety
/// `f` and `s` are null or live; `after` points to `after_len` bytes.
pub unsafe extern "C" fn fanout_join(f: *mut LuaFanOut, s: *mut LuaSession, sequence: i64, after: *const u8, after_len: usize, lua: c_int) -> i64 {
    // SAFETY: the caller's promise.
    let (Some(fo), Some(ls)) = (unsafe { f.as_mut() }, unsafe { s.as_mut() }) else { return -1 };
    // SAFETY: the caller's Lua string, alive during the call.
    let after = unsafe { bytes(after, after_len) };
    guard(-1, || {
        let after = match after {
            [] => None,
            id => match StreamId::parse(id) {
                Some(id) => Some(id),
                None => return -1,
            },
        };
        ls.pin();
        i64::from(fo.audience.join(Seat { session: s, lua: lua != 0 }, sequence, after))
    })
}

/// Removes the member of `slot`: 1, or 0 when there is none.
///
/// # Safety
/// `f` is null or live.
pub unsafe extern "C" fn fanout_leave(f: *mut LuaFanOut, slot: u32) -> c_int {
    // SAFETY: the caller's promise.
    let Some(fo) = (unsafe { f.as_mut() }) else { return 0 };
    guard(0, || match fo.audience.leave(slot) {
        Some(seat) => {
            // SAFETY: pinned when it joined; it has just left.
            unsafe { LuaSession::unpin(seat.session) };
            1
        }
        None => 0,
    })
}

/// How many members.
///
/// # Safety
/// `f` is null or live.
pub unsafe extern "C" fn fanout_len(f: *const LuaFanOut) -> usize {
    // SAFETY: the caller's promise.
    unsafe { f.as_ref() }.map_or(0, |fo| fo.audience.len())
}

/// Pushes stream entry `id` to every member that takes it: `body` is its `PubSubResp` encoded with
/// sequence 0, sent to each member with its own sequence, as `mode` ([`fanout_mode`]) says.
/// Returns the outcomes (`*n` of them; valid until the next call on `f`) of the members not simply
/// sent to: `OK` (queued: wake the writer), `QUEUE_FULL`, `CLOSED`, `LUA` (not pushed: Lua sends
/// it), or `INTERNAL`. Null with `*n` 0 for a bad id or a null pointer.
///
/// # Safety
/// `f` is null or live; `id`, `body` point to `id_len`, `body_len` bytes; `n` is writable.
pub unsafe extern "C" fn fanout_send(
    f: *mut LuaFanOut,
    id: *const u8,
    id_len: usize,
    body: *const u8,
    body_len: usize,
    mode: c_int,
    n: *mut usize,
) -> *const FanOutcome {
    // SAFETY: the caller's promise.
    let (Some(fo), Some(n)) = (unsafe { f.as_mut() }, unsafe { n.as_mut() }) else { return ptr::null() };
    *n = 0;
    // SAFETY: the caller's Lua strings, alive during the call.
    let (id, body) = unsafe { (bytes(id, id_len), bytes(body, body_len)) };
    guard(ptr::null(), || {
        let Some(id) = StreamId::parse(id) else { return ptr::null() };
        let LuaFanOut { audience, payload, outcomes } = fo;
        outcomes.clear();
        payload.reset();
        audience.deliver(id, |seat, t| {
            // SAFETY: pinned while a member: live; nothing else borrows it during the call (Lua
            // waits for it, and no other member is the same session: one subscription per
            // channel and connection).
            let ls = unsafe { &mut *seat.session };
            let code = if seat.lua
                || mode == fanout_mode::LUA
                || (mode == fanout_mode::COPY_IF_IDLE && !ls.writes_at_once())
            {
                push_status::LUA
            } else {
                let message = payload.for_sequence(t.sequence, body);
                push_then_write(ls, None, |s| Ok(s.push_message(message, None)?))
            };
            if code != push_status::SENT {
                outcomes.push(FanOutcome { slot: t.slot, code, first_past_after: u32::from(t.first_past_after) });
            }
        });
        *n = outcomes.len();
        outcomes.as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::schema::{schema_builtin, schema_free};
    use crate::ffi::session::{session_free, session_new, session_pending};
    use fanout_mode::{COPY, COPY_IF_IDLE};

    fn session() -> *mut LuaSession {
        let schema = schema_builtin();
        // SAFETY: a live schema handle, freed once; the session keeps the schema it needs. Limits
        // as a connection has them, a small push queue.
        unsafe {
            let s = session_new(schema, 65536, 65536, 0, 256);
            schema_free(schema);
            s
        }
    }

    fn send(f: *mut LuaFanOut, id: &str, body: &[u8], mode: c_int) -> Vec<(u32, i32, u32)> {
        let mut n = 0;
        // SAFETY: a live fan-out, strings alive during the call.
        let p = unsafe { fanout_send(f, id.as_ptr(), id.len(), body.as_ptr(), body.len(), mode, &mut n) };
        if p.is_null() {
            return vec![(u32::MAX, -9, 0)];
        }
        // SAFETY: `n` outcomes, valid until the next call.
        unsafe { std::slice::from_raw_parts(p, n) }.iter().map(|o| (o.slot, o.code, o.first_past_after)).collect()
    }

    #[test]
    fn pushes_are_queued_without_a_socket_and_refused_when_full() {
        let f = fanout_new();
        let (a, b) = (session(), session());
        // SAFETY: live objects; "5-0" is a valid id.
        let (sa, sb) = unsafe { (fanout_join(f, a, 7, ptr::null(), 0, 0), fanout_join(f, b, 0, b"5-0".as_ptr(), 3, 0)) };
        assert_eq!((sa, sb), (0, 1));
        // No socket attached: queued (OK), the writer would be woken.
        assert_eq!(send(f, "5-0", &[0x12, 0x00], COPY), vec![(0, push_status::OK, 0)]);
        assert_eq!(send(f, "6-0", &[0x12, 0x00], COPY), vec![(0, push_status::OK, 0), (1, push_status::OK, 1)]);
        // SAFETY: live sessions.
        let (qa, qb) = unsafe { (session_pending(a), session_pending(b)) };
        assert_eq!((qa, qb), (2 * (2 + 2 + 2), 2 + 2));
        // The queue limit refuses what does not fit; Lua sends to the member itself otherwise.
        let big = vec![0u8; 300];
        assert_eq!(send(f, "7-0", &big, COPY), vec![(0, push_status::QUEUE_FULL, 0), (1, push_status::QUEUE_FULL, 0)]);
        assert_eq!(send(f, "8-0", &big, fanout_mode::LUA), vec![(0, push_status::LUA, 0), (1, push_status::LUA, 0)]);
        assert_eq!(send(f, "8", &big, COPY), vec![(u32::MAX, -9, 0)], "a bad id");
        // Copied only to a connection that would write it at once: without a socket, none.
        assert_eq!(send(f, "9-0", &[0x12, 0x00], COPY_IF_IDLE), vec![(0, push_status::LUA, 0), (1, push_status::LUA, 0)]);
        // SAFETY: live objects; each freed once.
        unsafe {
            assert_eq!((fanout_leave(f, 0), fanout_leave(f, 0), fanout_len(f)), (1, 0, 1));
            session_free(a);
            session_free(b);
            fanout_free(f);
        }
    }

    #[test]
    fn a_session_freed_by_lua_while_a_member_lives_until_the_fan_out_lets_go() {
        let f = fanout_new();
        let a = session();
        // SAFETY: live objects; Lua frees the session first (its finalizer ran first), then
        // pushes still reach it (as closed) until the fan-out is freed.
        unsafe {
            assert_eq!(fanout_join(f, a, 0, ptr::null(), 0, 0), 0);
            session_free(a);
        }
        assert_eq!(send(f, "1-0", b"", COPY), vec![(0, push_status::OK, 0)]);
        // SAFETY: the fan-out frees the session now (miri / valgrind would see a double free).
        unsafe { fanout_free(f) };
    }

    #[test]
    fn a_session_refusing_pushes_is_reported_closed() {
        let f = fanout_new();
        let a = session();
        // SAFETY: live objects, each freed once.
        unsafe {
            fanout_join(f, a, 0, ptr::null(), 0, 0);
            super::super::session::session_refuse_pushes(a);
        }
        assert_eq!(send(f, "1-0", b"", COPY), vec![(0, push_status::CLOSED, 0)]);
        // SAFETY: as above.
        unsafe {
            fanout_free(f);
            session_free(a);
        }
    }
}
