//! Where Rust meets Lua. Nothing else in the crate knows about Lua.
//!
//! `luaopen_apisix_pubsub_rs` registers the embedded Lua face (`lua/apisix_pubsub_rs/*.lua`) in
//! `package.preload`, with `apisix_pubsub_rs.ffi` generated from [`contract`], and hands that module
//! a table of plain C function pointers, which the Lua side calls through LuaJIT's FFI: a call
//! costs nanoseconds, is compiled by the JIT, and needs no Lua state. Only `luaopen` itself touches
//! the Lua C API, through `mlua::ffi`, and it keeps no pointer to the state it was given. That is
//! deliberate: mlua's module entry point (`#[mlua::lua_module]`) remembers the coroutine that first
//! required the module, and when that was a request's coroutine, a later error path reads the freed
//! state and the worker dies. With no `mlua::Lua` handle anywhere, `require` is safe from any phase
//! or coroutine.
//!
//! One file per object Lua holds: [`schema`], [`session`], [`encoder`] (of a session or of the
//! codec), [`codec`], [`resp`] (the Redis protocol), [`fanout`] (a channel's
//! delivery loop). Rules at the boundary: no function raises a Lua error or lets a panic out
//! (each body runs under [`guard`] and reports failure as a return value); a null pointer is
//! refused, never dereferenced; pointers passed in come from the functions of these files and are
//! owned by the Lua side through `ffi.gc`.

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::ffi as lua;

pub mod codec;
pub mod contract;
pub mod encoder;
pub mod fanout;
pub mod metrics;
pub mod schema;
pub mod session;
pub mod socket;
pub mod resp;

/// The embedded Lua modules, `(name, source)`, listed by `build.rs` from `lua/apisix_pubsub_rs/`.
const LUA_MODULES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/lua_modules.rs"));

/// Registers the modules and returns the public one. Called with the function pointers, the
/// modules and the generated `apisix_pubsub_rs.ffi` source.
const BOOTSTRAP: &str = r#"
local pointers, modules, ffi_source = ...
local preload, loaded = package.preload, package.loaded
local function register(name, source)
    local chunk = assert(loadstring(source, "=" .. name))
    preload[name] = function(...) return chunk(..., pointers) end
    loaded[name] = nil
end
for name, source in pairs(modules) do
    register(name, source)
end
register("apisix_pubsub_rs.ffi", ffi_source)
return require("apisix_pubsub_rs.connection")
"#;

/// Runs `f`, turning a panic into `fallback`.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The bytes at `p`, or none when `p` is null or `len` 0.
///
/// # Safety
/// Unless null, `p` points to `len` readable bytes that stay valid and unchanged for `'a` (a Lua
/// string the caller holds during the call).
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || p.is_null() {
        &[]
    } else {
        // SAFETY: non-null, and the caller promises `len` valid bytes for 'a.
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

/// Pushes `s` as a Lua string.
///
/// # Safety
/// `l` is a valid Lua state with room for one more stack slot.
unsafe fn push_str(l: *mut lua::lua_State, s: &str) {
    // SAFETY: the caller's state; the bytes are copied by Lua.
    unsafe { lua::lua_pushlstring(l, s.as_ptr().cast(), s.len()) };
}

/// The module entry point `require("apisix_pubsub_rs")` calls.
///
/// # Safety
/// Called by Lua's package loader with a valid state.
#[no_mangle]
pub unsafe extern "C-unwind" fn luaopen_apisix_pubsub_rs(l: *mut lua::lua_State) -> c_int {
    let Ok((exports, ffi_source)) = catch_unwind(|| (contract::exports(), contract::lua_source())) else {
        return 0;
    };
    // SAFETY: plain Lua C API calls on the state we were given, each within the stack room Lua
    // guarantees a C function (LUA_MINSTACK = 20 slots; at most 5 are used at once). An error
    // raised by the bootstrap unwinds through this "C-unwind" frame, whose locals need no drop
    // beyond what Rust's unwinding does for the owned strings above.
    unsafe {
        if lua::luaL_loadbuffer(l, BOOTSTRAP.as_ptr().cast(), BOOTSTRAP.len(), c"=apisix_pubsub_rs".as_ptr()) != 0 {
            lua::lua_error(l);
        }
        lua::lua_createtable(l, 0, exports.len() as c_int + 1);
        for (name, _, f) in &exports {
            lua::lua_pushlightuserdata(l, *f);
            let name = std::ffi::CString::new(*name).expect("export names have no NUL");
            lua::lua_setfield(l, -2, name.as_ptr() as *const c_char);
        }
        lua::lua_pushlightuserdata(l, concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *mut _);
        lua::lua_setfield(l, -2, c"version".as_ptr());
        lua::lua_createtable(l, 0, LUA_MODULES.len() as c_int);
        for (name, source) in LUA_MODULES {
            push_str(l, source);
            let name = std::ffi::CString::new(*name).expect("module names have no NUL");
            lua::lua_setfield(l, -2, name.as_ptr());
        }
        push_str(l, &ffi_source);
        lua::lua_call(l, 3, 1);
    }
    1
}

/// `require("apisix_pubsub_rs.<name>")` of a bundled module before the main one: Lua's loader
/// finds this library by the part before the dot and calls `luaopen_apisix_pubsub_rs_<name>`,
/// which opens the library (registering the modules) and runs the module from `package.preload`.
///
/// # Safety
/// Called by Lua's package loader with a valid state.
unsafe fn open_bundled(l: *mut lua::lua_State, name: &std::ffi::CStr) -> c_int {
    // SAFETY: luaopen's contract is ours; then plain Lua C API calls within LUA_MINSTACK (at most
    // 3 slots at once); an error raised by the module unwinds through this "C-unwind" caller.
    unsafe {
        if luaopen_apisix_pubsub_rs(l) == 0 {
            return 0;
        }
        lua::lua_settop(l, -2);
        lua::lua_getglobal(l, c"package".as_ptr());
        lua::lua_getfield(l, -1, c"preload".as_ptr());
        lua::lua_getfield(l, -1, name.as_ptr());
        lua::lua_pushstring(l, name.as_ptr());
        lua::lua_call(l, 1, 1);
        lua::lua_replace(l, -3);
        lua::lua_settop(l, -2);
    }
    1
}

/// The entry point of `require("apisix_pubsub_rs.channels")`: see [`open_bundled`].
///
/// # Safety
/// Called by Lua's package loader with a valid state.
#[no_mangle]
pub unsafe extern "C-unwind" fn luaopen_apisix_pubsub_rs_channels(l: *mut lua::lua_State) -> c_int {
    // SAFETY: the loader's state, passed on.
    unsafe { open_bundled(l, c"apisix_pubsub_rs.channels") }
}

/// The entry point of `require("apisix_pubsub_rs.redis")`: see [`open_bundled`].
///
/// # Safety
/// Called by Lua's package loader with a valid state.
#[no_mangle]
pub unsafe extern "C-unwind" fn luaopen_apisix_pubsub_rs_redis(l: *mut lua::lua_State) -> c_int {
    // SAFETY: the loader's state, passed on.
    unsafe { open_bundled(l, c"apisix_pubsub_rs.redis") }
}
