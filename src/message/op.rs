//! The ops a decoded request is handed to Lua as, and the rule for 64-bit integers in Lua.
//!
//! Each [`Op`] sets one key of the parameter table being built; it is a `#[repr(C)]` struct so the
//! Lua side reads it through LuaJIT's FFI without a Lua C API call. Byte values are not copied: an
//! op points into the request buffer by offset.

/// `t[name] = num`.
pub const NUMBER: u32 = 1;
/// `t[name] = (num ~= 0)`.
pub const BOOL: u32 = 2;
/// `t[name] = <len bytes at offset in the request buffer>`.
pub const BYTES: u32 = 3;
/// `t[name] = <len bytes at offset in the request's text buffer>` (64-bit integers as `"#<digits>"`).
pub const TEXT: u32 = 4;
/// `t[name] = t[name] or {}` (a new table gets the proto3 defaults); the following ops fill it.
pub const OPEN: u32 = 5;
/// Ends the table opened by the matching [`OPEN`].
pub const CLOSE: u32 = 6;
/// Flag: append the value to the array `t[name]` instead of setting it.
pub const REPEATED: u32 = 0x10;

/// Lua's view of a 64-bit integer (lua-protobuf's `int64_as_string`): a number when it lies in
/// [`NUMBER_MIN`, `NUMBER_MAX`] = [-2^31, 2^32-1], otherwise the string `"#<digits>"`.
pub const NUMBER_MIN: i64 = i32::MIN as i64;
/// See [`NUMBER_MIN`].
pub const NUMBER_MAX: i64 = u32::MAX as i64;

/// One step of building the parameter table of a command. See the module's constants for the codes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Op {
    /// An op code, possibly or-ed with [`REPEATED`].
    pub code: u32,
    /// The field's id in the schema.
    pub field: u32,
    /// The value of [`NUMBER`] and [`BOOL`].
    pub num: f64,
    /// Byte offset of the value of [`BYTES`] / [`TEXT`].
    pub offset: usize,
    /// Byte length of the value of [`BYTES`] / [`TEXT`].
    pub len: usize,
}

impl Op {
    /// An op without a value ([`OPEN`], [`CLOSE`]) or with a number.
    pub fn number(code: u32, field: u32, num: f64) -> Op {
        Op { code, field, num, offset: 0, len: 0 }
    }

    /// An op whose value is `len` bytes at `offset`.
    pub fn bytes(code: u32, field: u32, offset: usize, len: usize) -> Op {
        Op { code, field, num: 0.0, offset, len }
    }
}
