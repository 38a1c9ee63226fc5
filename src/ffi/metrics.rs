//! The worker's metrics as Lua reads and feeds them: the samples only Lua sees (connections made
//! and ended, error replies decided in Lua, pushes refused there), and the figures as bytes (for
//! a shared dict), as the Prometheus exposition and as a Lua table.

use std::cell::RefCell;
use std::ffi::c_int;

use super::schema::{schema_of, SchemaHandle};
use super::{bytes, guard};
use crate::metrics::{end_reason, error_kind, slot, Figures, WORKER};

thread_local! {
    /// What the last snapshot or render made, for Lua to copy right after the call.
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Hands `made` to Lua through [`OUT`]: a pointer valid until the next call, `*len` its length.
fn hand_out(made: Vec<u8>, len: &mut usize) -> *const u8 {
    OUT.with(|o| {
        let mut o = o.borrow_mut();
        *o = made;
        *len = o.len();
        o.as_ptr()
    })
}

/// The Lua tables of the numbers Lua passes to these functions, for `apisix_pubsub_rs.ffi`:
/// `metrics_end` (end reasons), `metrics_error` (error kinds), `metrics_slot` (the figures a test
/// may set), each named as its label value in upper case.
pub fn lua_constants() -> String {
    let table = |name: &str, entries: &mut dyn Iterator<Item = (String, usize)>| {
        let body: Vec<String> = entries.map(|(k, v)| format!("{k} = {v}")).collect();
        format!("local {name} = {{ {} }}\n", body.join(", "))
    };
    let upper = |names: &'static [&'static str]| names.iter().enumerate().map(|(i, n)| (n.to_uppercase(), i));
    let slots = [("REPLIES", slot::REPLIES), ("ACCEPTED", slot::ACCEPTED), ("QUEUE_HIGH_WATER", slot::QUEUE_HIGH_WATER)];
    table("metrics_end", &mut upper(&end_reason::NAMES))
        + &table("metrics_error", &mut upper(&error_kind::NAMES))
        + &table("metrics_slot", &mut slots.into_iter().map(|(k, v)| (k.to_string(), v)))
}

/// 1 when this build samples (the `metrics` feature), else 0.
pub extern "C" fn metrics_enabled() -> c_int {
    c_int::from(crate::metrics::ENABLED)
}

/// A connection was made.
pub extern "C" fn metrics_accepted() {
    guard((), || WORKER.accepted())
}

/// A connection ended for `reason` (`metrics_end`); `code`: the peer's close code.
pub extern "C" fn metrics_ended(reason: c_int, code: c_int) {
    guard((), || WORKER.ended(reason as usize, code as u16))
}

/// An error reply of `kind` (`metrics_error`) was decided in Lua (the reply itself is counted
/// when queued).
pub extern "C" fn metrics_error(kind: c_int) {
    guard((), || WORKER.error_reply(kind as usize))
}

/// A push was refused in Lua: the connection had ended.
pub extern "C" fn metrics_push_closed() {
    guard((), || WORKER.push_refused(false))
}

/// Sets figure `slot` (`metrics_slot`) to `value`: for tests of overflow and sums.
pub extern "C" fn metrics_set(slot: c_int, value: u64) {
    guard((), || WORKER.set(slot as usize, value))
}

/// This worker's figures as bytes, for another worker's [`metrics_render`]; `*len` their length
/// (the pointer is valid until the next call of this file's functions).
///
/// # Safety
/// `len` is null or points to a writable `size_t`.
pub unsafe extern "C" fn metrics_snapshot(len: *mut usize) -> *const u8 {
    // SAFETY: the caller's promise.
    let Some(len) = (unsafe { len.as_mut() }) else { return std::ptr::null() };
    guard(std::ptr::null(), || hand_out(WORKER.snapshot().to_bytes(), len))
}

/// Renders this worker's figures plus those in `others` (`others_len` bytes: snapshots one after
/// another; any of another layout is skipped), commands named by `schema`: as the Prometheus text
/// exposition (`lua_table` 0) or as a Lua chunk returning a table (non-zero). `*len` is the
/// length of what is returned (valid until the next call of this file's functions); null on a
/// null schema or an internal error.
///
/// # Safety
/// `schema` is null or a live handle; `others` points to `others_len` bytes; `len` is null or
/// points to a writable `size_t`.
pub unsafe extern "C" fn metrics_render(
    schema: *const SchemaHandle,
    others: *const u8,
    others_len: usize,
    lua_table: c_int,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's promise, for all three.
    let (Some(schema), Some(len)) = (unsafe { schema_of(schema) }, unsafe { len.as_mut() }) else { return std::ptr::null() };
    // SAFETY: the caller's Lua string, alive during the call.
    let others = unsafe { bytes(others, others_len) };
    guard(std::ptr::null(), || {
        let mut sum = WORKER.snapshot();
        let size = Figures::default().to_bytes().len();
        let mut workers = 1;
        for f in others.chunks_exact(size).filter_map(Figures::from_bytes) {
            sum.merge(&f);
            workers += 1;
        }
        let text = if lua_table != 0 { sum.lua_table(&schema) } else { sum.prometheus(&schema, workers) };
        hand_out(text.into_bytes(), len)
    })
}
