//! The codec object Lua holds for `decode_req` / `encode_resp`: the codec without a connection.

use std::ffi::c_int;
use std::ptr;

use super::contract::{kind, Event};
use super::schema::{schema_of, SchemaHandle};
use super::{bytes, guard};
use crate::message::{ReplyEncoder, RequestDecoder};

/// A decoder and an encoder of one schema, and the words of the last decode error.
#[derive(Debug)]
pub struct Codec {
    decoder: RequestDecoder,
    encoder: ReplyEncoder,
    note: String,
}

/// A codec of `schema`; null for a null schema or on an internal error. Free it with [`codec_free`].
///
/// # Safety
/// `schema` is null or a live handle.
pub unsafe extern "C" fn codec_new(schema: *const SchemaHandle) -> *mut Codec {
    // SAFETY: the caller's promise.
    let Some(schema) = (unsafe { schema_of(schema) }) else { return ptr::null_mut() };
    guard(ptr::null_mut(), || {
        let codec = Codec { decoder: RequestDecoder::new(schema.clone()), encoder: ReplyEncoder::new(schema), note: String::new() };
        Box::into_raw(Box::new(codec))
    })
}

/// Frees a codec.
///
/// # Safety
/// `c` is null or a codec from [`codec_new`] not freed yet; it is not used afterwards.
pub unsafe extern "C" fn codec_free(c: *mut Codec) {
    if !c.is_null() {
        // SAFETY: made by Box::into_raw in codec_new, freed once (by the ffi.gc finalizer).
        guard((), || drop(unsafe { Box::from_raw(c) }));
    }
}

/// The codec's encoder (valid as long as the codec); null for null.
///
/// # Safety
/// `c` is null or a live codec.
pub unsafe extern "C" fn codec_encoder(c: *mut Codec) -> *mut ReplyEncoder {
    // SAFETY: the caller's promise.
    match unsafe { c.as_mut() } {
        Some(c) => &mut c.encoder as *mut ReplyEncoder,
        None => ptr::null_mut(),
    }
}

/// Decodes a `PubSubReq` into `ev`: kind `COMMAND`, `EMPTY` or `UNDECODABLE` (with its words).
///
/// # Safety
/// `c` is null or a live codec; `p` points to `len` bytes that stay valid while `ev` is read
/// (`ev.payload` is `p`); `ev` is null or points to a writable event.
pub unsafe extern "C" fn codec_decode(c: *mut Codec, p: *const u8, len: usize, ev: *mut Event) -> c_int {
    // SAFETY: the caller's promise, for both.
    let (Some(codec), Some(ev)) = (unsafe { c.as_mut() }, unsafe { ev.as_mut() }) else { return kind::INTERNAL };
    // SAFETY: the caller's Lua string.
    let payload = unsafe { bytes(p, len) };
    guard(kind::INTERNAL, || {
        let Codec { decoder, note, .. } = codec;
        let k = match decoder.decode(payload) {
            Ok(req) => {
                ev.sequence = req.sequence;
                ev.nops = req.ops.len();
                ev.ops = req.ops.as_ptr();
                ev.payload = p;
                ev.text = req.text.as_ptr();
                match req.command {
                    Some(cmd) => {
                        ev.command = i32::from(cmd.id);
                        kind::COMMAND
                    }
                    None => kind::EMPTY,
                }
            }
            Err(e) => {
                *note = e.named(decoder.schema()).to_string();
                kind::UNDECODABLE
            }
        };
        ev.note = note.as_ptr();
        ev.note_len = note.len();
        ev.kind = k;
        k
    })
}
