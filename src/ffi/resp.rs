//! The Redis protocol objects Lua holds (`lua/apisix_pubsub_rs/redis.lua`): a reply decoder per
//! connection and a command writer. The socket stays in Lua; these only turn bytes into replies
//! and commands into bytes ([`crate::resp`]).

use std::ffi::c_int;
use std::ptr;

use super::contract::{resp_mode, resp_status, EntryLayout, ItemLayout, RespReply};
use super::{bytes, guard};
use crate::resp::{encode_command, xrange_entries, xread_entries, Limits, Poll, Protocol, ReplyDecoder, RespError, StreamEntry};

/// A connection's decoder, the stream entries of its last reply, and the words of its last error.
#[derive(Debug)]
pub struct LuaRespDecoder {
    decoder: ReplyDecoder,
    entries: Vec<StreamEntry>,
    note: String,
}

/// Commands encoded and not yet taken by Lua.
#[derive(Debug, Default)]
pub struct RespWriter {
    buf: Vec<u8>,
}

/// A decoder of RESP2 replies within these limits (0: the default of [`Limits`]); null on an
/// internal error. Free it with [`resp_decoder_free`].
pub extern "C" fn resp_decoder_new(max_reply_len: usize, max_elements: usize) -> *mut LuaRespDecoder {
    guard(ptr::null_mut(), || {
        let d = Limits::default();
        let limits = Limits {
            max_reply_len: if max_reply_len == 0 { d.max_reply_len } else { max_reply_len },
            max_elements: if max_elements == 0 { d.max_elements } else { max_elements },
        };
        let dec = LuaRespDecoder { decoder: ReplyDecoder::new(limits, Protocol::Resp2), entries: Vec::new(), note: String::new() };
        Box::into_raw(Box::new(dec))
    })
}

/// Frees a decoder.
///
/// # Safety
/// `d` is null or a decoder from [`resp_decoder_new`] not freed yet; it is not used afterwards.
pub unsafe extern "C" fn resp_decoder_free(d: *mut LuaRespDecoder) {
    if !d.is_null() {
        // SAFETY: made by Box::into_raw in resp_decoder_new, freed once (by the ffi.gc finalizer).
        guard((), || drop(unsafe { Box::from_raw(d) }));
    }
}

/// Hands the decoder bytes read from the socket. The reply of the last poll is released.
///
/// # Safety
/// `d` is null or a live decoder; `p` points to `len` readable bytes (a Lua string).
pub unsafe extern "C" fn resp_feed(d: *mut LuaRespDecoder, p: *const u8, len: usize) {
    // SAFETY: the caller's promise, for both.
    let (Some(d), data) = (unsafe { d.as_mut() }, unsafe { bytes(p, len) }) else { return };
    guard((), || d.decoder.feed(data));
}

/// The next reply into `out`: `REPLY` (with, for `mode` `XREAD` / `XRANGE`, its stream entries),
/// `NEED_MORE` (`out.need` bytes at least), or `FAILED` (`out.note` says why; the connection is to
/// be closed). The reply stays valid until the next feed or poll.
///
/// # Safety
/// `d` is null or a live decoder; `out` is null or points to a writable reply.
pub unsafe extern "C" fn resp_poll(d: *mut LuaRespDecoder, mode: c_int, out: *mut RespReply) -> c_int {
    // SAFETY: the caller's promise, for both.
    let (Some(d), Some(out)) = (unsafe { d.as_mut() }, unsafe { out.as_mut() }) else { return resp_status::INTERNAL };
    guard(resp_status::INTERNAL, || {
        let LuaRespDecoder { decoder, entries, note } = d;
        entries.clear();
        out.nentries = 0;
        let failed = |note: &mut String, out: &mut RespReply, e: RespError| {
            *note = e.to_string();
            out.note = note.as_ptr();
            out.note_len = note.len();
            resp_status::FAILED
        };
        let reply = match decoder.poll() {
            Ok(Poll::NeedMore(n)) => {
                out.need = n;
                return resp_status::NEED_MORE;
            }
            Ok(Poll::Reply(r)) => r,
            Err(e) => return failed(note, out, e),
        };
        let found = match mode {
            resp_mode::XREAD => xread_entries(&reply, entries),
            resp_mode::XRANGE => xrange_entries(&reply, entries),
            _ => Ok(()),
        };
        match found {
            // An error reply is the reply: Lua reads its message from the first item.
            Ok(()) | Err(RespError::ErrorReply) => {}
            Err(e) => return failed(note, out, e),
        }
        out.bytes = reply.bytes.as_ptr();
        out.len = reply.bytes.len();
        out.items = reply.items.as_ptr().cast::<ItemLayout>();
        out.nitems = reply.items.len();
        out.entries = entries.as_ptr().cast::<EntryLayout>();
        out.nentries = entries.len();
        resp_status::REPLY
    })
}

/// A command writer; null on an internal error. Free it with [`resp_writer_free`].
pub extern "C" fn resp_writer_new() -> *mut RespWriter {
    guard(ptr::null_mut(), || Box::into_raw(Box::default()))
}

/// Frees a writer.
///
/// # Safety
/// `w` is null or a writer from [`resp_writer_new`] not freed yet; it is not used afterwards.
pub unsafe extern "C" fn resp_writer_free(w: *mut RespWriter) {
    if !w.is_null() {
        // SAFETY: made by Box::into_raw in resp_writer_new, freed once (by the ffi.gc finalizer).
        guard((), || drop(unsafe { Box::from_raw(w) }));
    }
}

/// Appends the command of `n` arguments (`args[i]`, `lens[i]` bytes each) to the writer: 0, or
/// -1 for a null pointer or a panic.
///
/// # Safety
/// `w` is null or a live writer; `args` and `lens` are null or point to `n` entries each, and
/// `args[i]` to `lens[i]` readable bytes (Lua strings the caller holds during the call).
pub unsafe extern "C" fn resp_command(w: *mut RespWriter, n: usize, args: *const *const u8, lens: *const usize) -> c_int {
    // SAFETY: the caller's promise.
    let Some(w) = (unsafe { w.as_mut() }) else { return -1 };
    if n == 0 || args.is_null() || lens.is_null() {
        return -1;
    }
    // SAFETY: n entries each, by the caller's promise.
    let (args, lens) = unsafe { (std::slice::from_raw_parts(args, n), std::slice::from_raw_parts(lens, n)) };
    guard(-1, || {
        // SAFETY: each argument is lens[i] bytes the caller holds.
        encode_command(&mut w.buf, args.iter().zip(lens).map(|(&p, &len)| unsafe { bytes(p, len) }));
        0
    })
}

/// The bytes of the commands written since the last [`resp_writer_clear`]; `*len` their length.
///
/// # Safety
/// `w` is null or a live writer; `len` points to a writable `size_t`.
pub unsafe extern "C" fn resp_written(w: *const RespWriter, len: *mut usize) -> *const u8 {
    // SAFETY: the caller's promise, for both.
    let (Some(w), Some(len)) = (unsafe { w.as_ref() }, unsafe { len.as_mut() }) else { return ptr::null() };
    *len = w.buf.len();
    w.buf.as_ptr()
}

/// Forgets the commands written (Lua has copied them into a string).
///
/// # Safety
/// `w` is null or a live writer.
pub unsafe extern "C" fn resp_writer_clear(w: *mut RespWriter) {
    // SAFETY: the caller's promise.
    if let Some(w) = unsafe { w.as_mut() } {
        w.buf.clear();
        if w.buf.capacity() > 64 << 10 {
            w.buf.shrink_to(64 << 10);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::item;

    fn poll(d: *mut LuaRespDecoder, mode: c_int) -> (c_int, RespReply) {
        let mut out = RespReply::empty();
        // SAFETY: a live decoder and a local reply.
        let rc = unsafe { resp_poll(d, mode, &mut out) };
        (rc, out)
    }

    #[test]
    fn a_reply_fed_in_pieces_comes_out_whole_with_its_entries() {
        let d = resp_decoder_new(0, 0);
        let wire = b"*1\r\n*2\r\n$2\r\nch\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nd\r\n$2\r\nhi\r\n";
        let (a, b) = wire.split_at(9);
        // SAFETY: a live decoder and local bytes.
        unsafe { resp_feed(d, a.as_ptr(), a.len()) };
        let (rc, out) = poll(d, resp_mode::XREAD);
        assert_eq!(rc, resp_status::NEED_MORE);
        assert!(out.need > 0);
        // SAFETY: as above.
        unsafe { resp_feed(d, b.as_ptr(), b.len()) };
        let (rc, out) = poll(d, resp_mode::XREAD);
        assert_eq!(rc, resp_status::REPLY);
        assert_eq!((out.len, out.nentries), (wire.len(), 1));
        // SAFETY: the reply is valid until the next call on the decoder.
        let (entry, first) = unsafe { (&*out.entries, &*out.items) };
        assert_eq!(first.kind, item::ARRAY);
        // SAFETY: offsets of the reply, within its bytes.
        let id = unsafe { std::slice::from_raw_parts(out.bytes.add(entry.id_offset), entry.id_len) };
        assert_eq!(id, b"1-1");
        assert_eq!(entry.pairs, 1);
        // SAFETY: freed once.
        unsafe { resp_decoder_free(d) };
    }

    #[test]
    fn an_error_reply_is_a_reply_and_a_bad_shape_a_failure() {
        let d = resp_decoder_new(0, 0);
        let wire = b"-ERR no\r\n:5\r\n";
        // SAFETY: a live decoder and local bytes.
        unsafe { resp_feed(d, wire.as_ptr(), wire.len()) };
        assert_eq!(poll(d, resp_mode::XRANGE).0, resp_status::REPLY);
        let (rc, out) = poll(d, resp_mode::XRANGE);
        assert_eq!(rc, resp_status::FAILED);
        // SAFETY: the note is valid until the next call.
        let note = unsafe { std::slice::from_raw_parts(out.note, out.note_len) };
        assert_eq!(note, b"unexpected redis reply shape");
        // SAFETY: freed once.
        unsafe { resp_decoder_free(d) };
        assert_eq!(poll(ptr::null_mut(), 0).0, resp_status::INTERNAL);
    }

    #[test]
    fn commands_are_written_back_to_back_until_cleared() {
        let w = resp_writer_new();
        let args = [b"GET".as_ptr(), b"k".as_ptr()];
        let lens = [3usize, 1];
        // SAFETY: a live writer, two arguments of the lengths given.
        unsafe {
            assert_eq!(resp_command(w, 2, args.as_ptr(), lens.as_ptr()), 0);
            assert_eq!(resp_command(w, 2, args.as_ptr(), lens.as_ptr()), 0);
            assert_eq!(resp_command(w, 0, args.as_ptr(), lens.as_ptr()), -1);
            let mut len = 0;
            let p = resp_written(w, &mut len);
            assert_eq!(std::slice::from_raw_parts(p, len), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
            resp_writer_clear(w);
            resp_written(w, &mut len);
            assert_eq!(len, 0);
            resp_writer_free(w);
        }
    }
}
