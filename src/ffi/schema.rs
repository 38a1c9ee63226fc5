//! The schema object Lua holds: a shared [`Schema`], and the Lua tables derived from it.

use std::sync::Arc;

use super::guard;
use crate::schema::Schema;

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
