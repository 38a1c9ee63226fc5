//! The reply encoder Lua writes through, field by field: a session's or the codec's.
//!
//! Every call returns a [`status`](super::contract::status): 0, or `FAILED` with the words of the
//! error kept for [`encode_error`] (the `thiserror` message of [`EncodeError`]), or `INTERNAL`.

use std::cell::Cell;
use std::ffi::c_int;
use std::ptr;

use super::contract::status as code;
use super::{bytes, guard};
use crate::message::{EncodeError, ReplyEncoder};

thread_local! {
    /// The last encoder error of this thread (an nginx worker): Lua asks for its words right after
    /// the failing call, before anything can yield.
    static LAST_ERROR: Cell<Option<EncodeError>> = const { Cell::new(None) };
    /// Where [`encode_error`] writes those words.
    static WORDS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The status of `r`, keeping an error for [`encode_error`].
pub(crate) fn status(r: Result<(), EncodeError>) -> c_int {
    match r {
        Ok(()) => code::OK,
        Err(e) => {
            LAST_ERROR.with(|l| l.set(Some(e)));
            code::FAILED
        }
    }
}

/// Runs `f` on the encoder behind `e`: `INTERNAL` for null or a panic.
///
/// # Safety
/// `e` is null or a live encoder (of a live session or codec), not used elsewhere meanwhile.
unsafe fn with(e: *mut ReplyEncoder, f: impl FnOnce(&mut ReplyEncoder) -> Result<(), EncodeError>) -> c_int {
    // SAFETY: the caller's promise.
    match unsafe { e.as_mut() } {
        Some(e) => guard(code::INTERNAL, || status(f(e))),
        None => code::INTERNAL,
    }
}

/// The words of the last failure (`FAILED`), e.g. "has a value out of range for a int32 field";
/// `*len` their length. Valid until the next call.
///
/// # Safety
/// `len` points to a writable `size_t`.
pub unsafe extern "C" fn encode_error(len: *mut usize) -> *const u8 {
    // SAFETY: the caller's promise.
    let Some(len) = (unsafe { len.as_mut() }) else { return ptr::null() };
    guard(ptr::null(), || {
        WORDS.with(|w| {
            let mut w = w.borrow_mut();
            w.clear();
            if let Some(e) = LAST_ERROR.with(Cell::get) {
                use std::fmt::Write as _;
                let _ = write!(w, "{e}");
            }
            *len = w.len();
            w.as_ptr()
        })
    })
}

/// Starts a reply with this sequence in the encoder's own buffer (the codec's encoder).
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_begin(e: *mut ReplyEncoder, sequence: i64) {
    // SAFETY: the caller's promise.
    let _ = unsafe {
        with(e, |e| {
            e.begin(sequence);
            Ok(())
        })
    };
}

/// Writes a Lua number into field `field`.
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_number(e: *mut ReplyEncoder, field: u32, v: f64) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_number(field, v)) }
}

/// Writes a signed 64-bit integer (int64 cdata).
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_int(e: *mut ReplyEncoder, field: u32, v: i64) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_int(field, v)) }
}

/// Writes an unsigned 64-bit integer (uint64 cdata).
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_uint(e: *mut ReplyEncoder, field: u32, v: u64) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_uint(field, v)) }
}

/// Writes an integer given as text (`"30"`, `"#-5"`).
///
/// # Safety
/// `e` is null or a live encoder; `p` points to `len` bytes.
pub unsafe extern "C" fn enc_int_text(e: *mut ReplyEncoder, field: u32, p: *const u8, len: usize) -> c_int {
    // SAFETY: the caller's Lua string, alive during the call.
    let text = unsafe { bytes(p, len) };
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_int_text(field, text)) }
}

/// Writes a boolean (non-zero: true).
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_bool(e: *mut ReplyEncoder, field: u32, v: c_int) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_bool(field, v != 0)) }
}

/// Writes a string or bytes value, copied.
///
/// # Safety
/// `e` is null or a live encoder; `p` points to `len` bytes.
pub unsafe extern "C" fn enc_bytes(e: *mut ReplyEncoder, field: u32, p: *const u8, len: usize) -> c_int {
    // SAFETY: the caller's Lua string, alive during the call.
    let v = unsafe { bytes(p, len) };
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_bytes(field, v)) }
}

/// Writes a string or bytes value of `len` bytes that the caller keeps as value `id` and sends itself.
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_bytes_ref(e: *mut ReplyEncoder, field: u32, id: u32, len: usize) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.put_bytes_ref(field, id, len)) }
}

/// Opens a nested message or a packed array.
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_open(e: *mut ReplyEncoder, field: u32) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, |e| e.open(field)) }
}

/// Closes the innermost open message or array.
///
/// # Safety
/// `e` is null or a live encoder.
pub unsafe extern "C" fn enc_close(e: *mut ReplyEncoder) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with(e, ReplyEncoder::close) }
}

/// The finished message of the codec's encoder, `*len` its length; null if unfinished.
///
/// # Safety
/// `e` is null or a live encoder; `len` points to a writable `size_t`. The bytes stay valid until
/// the encoder's next call.
pub unsafe extern "C" fn enc_result(e: *mut ReplyEncoder, len: *mut usize) -> *const u8 {
    // SAFETY: the caller's promise, for both.
    let (Some(e), Some(len)) = (unsafe { e.as_ref() }, unsafe { len.as_mut() }) else { return ptr::null() };
    guard(ptr::null(), || match e.finish() {
        Ok(b) => {
            *len = b.len();
            b.as_ptr()
        }
        Err(err) => {
            status(Err(err));
            ptr::null()
        }
    })
}

/// Parses a sequence given as text (`"30"`, `"#-5"`) into `*out`: 1 if it is an int64, else 0.
///
/// # Safety
/// `p` points to `len` bytes; `out` points to a writable `int64_t`.
pub unsafe extern "C" fn parse_int64(p: *const u8, len: usize, out: *mut i64) -> c_int {
    // SAFETY: the caller's promise.
    let Some(out) = (unsafe { out.as_mut() }) else { return 0 };
    // SAFETY: the caller's Lua string, alive during the call.
    let text = unsafe { bytes(p, len) };
    guard(0, || {
        let digits = text.strip_prefix(b"#").unwrap_or(text);
        match std::str::from_utf8(digits).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(v) if !digits.starts_with(b"+") => {
                *out = v;
                1
            }
            _ => 0,
        }
    })
}
