//! The schema object Lua holds: a shared [`Schema`], and the Lua tables derived from it.

use std::cell::RefCell;
use std::sync::Arc;

use super::{bytes, guard};
use crate::schema::Schema;

thread_local! {
    /// The words of the last [`schema_load`] that failed, for Lua to read right after it.
    static LOAD_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A schema as Lua holds it: the schema and its Lua tables' source.
#[derive(Debug)]
pub struct SchemaHandle {
    pub(crate) schema: Arc<Schema>,
    lua: String,
}

impl SchemaHandle {
    /// A handle of `schema`, boxed for Lua.
    pub(crate) fn boxed(schema: Arc<Schema>) -> *const SchemaHandle {
        let lua = schema.lua_source();
        Box::into_raw(Box::new(SchemaHandle { schema, lua }))
    }
}

/// The built-in schema (`proto/pubsub.proto`), or null on an internal error. Free it with
/// [`schema_free`].
pub extern "C" fn schema_builtin() -> *const SchemaHandle {
    guard(std::ptr::null(), || SchemaHandle::boxed(Schema::builtin()))
}

/// The built-in schema with the proto file at `path` (`len` bytes) laid over it
/// ([`Schema::load`]), or null: then `*err` points to the words of the error, `*err_len` their
/// length (valid until the next call). Free it with [`schema_free`].
///
/// # Safety
/// `path` points to `len` bytes; `err` and `err_len` point to a writable pointer and `size_t`.
pub unsafe extern "C" fn schema_load(path: *const u8, len: usize, err: *mut *const u8, err_len: *mut usize) -> *const SchemaHandle {
    // SAFETY: the caller's promise, for both.
    let (Some(err), Some(err_len)) = (unsafe { err.as_mut() }, unsafe { err_len.as_mut() }) else {
        return std::ptr::null();
    };
    // SAFETY: the caller's Lua string, alive during the call.
    let path = String::from_utf8_lossy(unsafe { bytes(path, len) }).into_owned();
    guard(std::ptr::null(), || match Schema::load(std::path::Path::new(&path)) {
        Ok(schema) => SchemaHandle::boxed(Arc::new(schema)),
        Err(e) => LOAD_ERROR.with(|w| {
            let mut w = w.borrow_mut();
            *w = e.to_string();
            *err = w.as_ptr();
            *err_len = w.len();
            std::ptr::null()
        }),
    })
}

/// Frees a schema handle (sessions and codecs made from it keep the schema alive).
///
/// # Safety
/// `h` is null or a handle from this file not freed yet; it is not used afterwards.
pub unsafe extern "C" fn schema_free(h: *const SchemaHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw here, freed once (by the ffi.gc finalizer).
        guard((), || drop(unsafe { Box::from_raw(h as *mut SchemaHandle) }));
    }
}

/// The Lua chunk of the schema's tables ([`Schema::lua_source`]); `*len` its length. Null for a
/// null handle.
///
/// # Safety
/// `h` is null or a live handle; `len` points to a writable `size_t`. The bytes live as long as `h`.
pub unsafe extern "C" fn schema_lua(h: *const SchemaHandle, len: *mut usize) -> *const u8 {
    if h.is_null() || len.is_null() {
        return std::ptr::null();
    }
    guard(std::ptr::null(), || {
        // SAFETY: a live handle, checked non-null.
        let lua = unsafe { &(*h).lua };
        // SAFETY: checked non-null; the caller's size_t.
        unsafe { *len = lua.len() };
        lua.as_ptr()
    })
}

/// The schema behind a handle, or `None` for null.
///
/// # Safety
/// `h` is null or a live handle.
pub(crate) unsafe fn schema_of(h: *const SchemaHandle) -> Option<Arc<Schema>> {
    // SAFETY: the caller's promise.
    unsafe { h.as_ref() }.map(|h| h.schema.clone())
}
