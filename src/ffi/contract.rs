//! The contract between Rust and Lua, written once.
//!
//! Each `#[repr(C)]` struct Lua reads, each function it calls and each constant it compares with
//! is declared here through a macro that makes both the Rust item and its C declaration for
//! LuaJIT's `ffi.cdef`. The Lua side gets [`lua_source`], a module generated from these
//! declarations: it never restates a layout, a signature or a number, so the two sides cannot
//! drift apart. The compiler checks each export's signature against the function it names, and
//! the generated module checks, when it loads, that LuaJIT lays the structs out as Rust does.

use std::fmt::Write as _;

/// The C spelling of a Rust type that crosses the boundary.
macro_rules! c_type {
    (()) => { "void" };
    (i32) => { "int32_t" };
    (u32) => { "uint32_t" };
    (i64) => { "int64_t" };
    (u64) => { "uint64_t" };
    (usize) => { "size_t" };
    (f64) => { "double" };
    (c_int) => { "int" };
    (*const u8) => { "const char *" };
    (*mut u8) => { "uint8_t *" };
    (*mut usize) => { "size_t *" };
    (*mut *const u8) => { "const char **" };
    (*mut i64) => { "int64_t *" };
    (*const Op) => { "const apisix_pubsub_rs_op *" };
    (*mut Event) => { "apisix_pubsub_rs_event *" };
    (*mut LuaSession) => { "apisix_pubsub_rs_session *" };
    (*const LuaSession) => { "const apisix_pubsub_rs_session *" };
    (*mut ReplyEncoder) => { "apisix_pubsub_rs_encoder *" };
    (*mut Codec) => { "apisix_pubsub_rs_codec *" };
    (*const SchemaHandle) => { "const apisix_pubsub_rs_schema *" };
    (*const usize) => { "const size_t *" };
    (*const *const u8) => { "const char **" };
    (*const ItemLayout) => { "const apisix_pubsub_rs_resp_item *" };
    (*const EntryLayout) => { "const apisix_pubsub_rs_stream_entry *" };
    (*mut RespReply) => { "apisix_pubsub_rs_resp_reply *" };
    (*mut LuaRespDecoder) => { "apisix_pubsub_rs_resp_decoder *" };
    (*mut RespWriter) => { "apisix_pubsub_rs_resp_writer *" };
    (*const RespWriter) => { "const apisix_pubsub_rs_resp_writer *" };
    (*const DeflateConfig) => { "const apisix_pubsub_rs_deflate *" };
    (*mut c_void) => { "void *" };
    (*mut LuaFanOut) => { "apisix_pubsub_rs_fanout *" };
    (*const LuaFanOut) => { "const apisix_pubsub_rs_fanout *" };
    (*const FanOutcome) => { "const apisix_pubsub_rs_fanout_outcome *" };
}

/// The C parameter list of a function: the types, comma-separated.
macro_rules! c_params {
    () => { "void" };
    ([$($t:tt)+]) => { c_type!($($t)+) };
    ([$($t:tt)+], $($rest:tt)+) => { concat!(c_type!($($t)+), ", ", c_params!($($rest)+)) };
}

/// A `#[repr(C)]` struct and its C declaration (`<Struct>::C_DECL`), fields in the same order.
macro_rules! c_struct {
    ($(#[$doc:meta])* pub struct $name:ident as $cname:literal { $($(#[$fdoc:meta])* $field:ident: [$($t:tt)+],)+ }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $($t)+,)+
        }

        impl $name {
            /// The C declaration LuaJIT is given.
            pub const C_DECL: &'static str =
                concat!("typedef struct ", $cname, " {\n", $("    ", c_type!($($t)+), " ", stringify!($field), ";\n",)+ "} ", $cname, ";\n");
            /// The C type name.
            pub const C_NAME: &'static str = $cname;
            /// `(field, offset)` of every field, for the layout check on the Lua side.
            pub fn offsets() -> Vec<(&'static str, usize)> {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field)),)+]
            }
        }
    };
}

/// The functions Lua calls: each entry names the function and its signature once. The signature
/// is checked by the compiler against the function (a coercion to that function-pointer type),
/// and becomes the C type LuaJIT casts the pointer to.
macro_rules! exports {
    ($($module:ident :: $name:ident ( $([$($p:tt)+]),* ) -> [$($r:tt)+];)+) => {
        /// `(name, C function-pointer type, pointer)` of every export.
        pub fn exports() -> Vec<(&'static str, &'static str, *mut std::ffi::c_void)> {
            vec![$({
                let f: unsafe extern "C" fn($($($p)+),*) -> $($r)+ = super::$module::$name;
                (stringify!($name), concat!(c_type!($($r)+), " (*)(", c_params!($([$($p)+]),*), ")"), f as *mut std::ffi::c_void)
            },)+]
        }
    };
}

/// Named integer constants, as Rust items of a module and as a Lua table of the same name.
macro_rules! c_consts {
    ($(#[$doc:meta])* pub mod $module:ident: $ty:ty { $($(#[$cdoc:meta])* $name:ident = $value:expr,)+ }) => {
        $(#[$doc])*
        pub mod $module {
            $($(#[$cdoc])* pub const $name: $ty = $value;)+
            /// `(name, value)` of every constant, for the Lua side.
            pub fn all() -> Vec<(&'static str, i64)> {
                vec![$((stringify!($name), i64::from($name)),)+]
            }
        }
    };
}


use super::codec::Codec;
use super::fanout::LuaFanOut;
use super::resp::{LuaRespDecoder, RespWriter};
use super::schema::SchemaHandle;
use super::session::LuaSession;
use crate::message::{op, Op, ReplyEncoder};
use std::ffi::{c_int, c_void};

c_struct! {
    /// What `session_step` and `codec_decode` fill in for Lua.
    pub struct Event as "apisix_pubsub_rs_event" {
        /// An [`kind`] constant.
        kind: [i32],
        /// The command's field id (kind `COMMAND`).
        command: [i32],
        /// A close code (kinds `CLOSED`, `FAILED`).
        code: [i32],
        /// Unused; keeps `sequence` aligned the same on every ABI.
        pad: [i32],
        /// The request's sequence.
        sequence: [i64],
        /// Number of ops.
        nops: [usize],
        /// The ops that build the parameter table.
        ops: [*const Op],
        /// The request bytes, where `BYTES` ops point.
        payload: [*const u8],
        /// Where `TEXT` ops point.
        text: [*const u8],
        /// Words for a log line (kinds `UNDECODABLE`, `TEXT`, `FAILED`).
        note: [*const u8],
        /// Length of `note`.
        note_len: [usize],
    }
}

c_struct! {
    /// One step of building a parameter table: [`crate::message::Op`] as Lua sees it.
    pub struct OpLayout as "apisix_pubsub_rs_op" {
        /// The op code.
        code: [u32],
        /// The field id.
        field: [u32],
        /// The number of `NUMBER` / `BOOL`.
        num: [f64],
        /// The offset of `BYTES` / `TEXT`.
        offset: [usize],
        /// The length of `BYTES` / `TEXT`.
        len: [usize],
    }
}

c_struct! {
    /// The `compression` option of `new(opts)` (permessage-deflate), as Lua checked it: see
    /// [`crate::deflate::Config`] for each value. Flags are 0 or 1.
    pub struct DeflateConfig as "apisix_pubsub_rs_deflate" {
        /// Messages shorter than this go uncompressed.
        threshold: [u64],
        /// Largest window the server compresses with, 9-15.
        server_max_window_bits: [u32],
        /// Window asked of clients that let the server choose it, 9-15.
        client_max_window_bits: [u32],
        /// Compress each message on its own.
        server_no_context_takeover: [u32],
        /// Ask clients to compress each message on its own.
        client_no_context_takeover: [u32],
        /// zlib level under 16 KiB.
        level: [u32],
        /// zlib level from 16 KiB on.
        large_level: [u32],
    }
}

c_consts! {
    /// What `compression = true` means, value by value ([`crate::deflate::Config::default`];
    /// a test holds the two equal).
    pub mod deflate_default: i64 {
        /// See [`crate::deflate::Config::threshold`].
        THRESHOLD = 64,
        /// See [`crate::deflate::Config::server_max_window_bits`].
        SERVER_MAX_WINDOW_BITS = 15,
        /// See [`crate::deflate::Config::client_max_window_bits`].
        CLIENT_MAX_WINDOW_BITS = 15,
        /// See [`crate::deflate::Config::server_no_context_takeover`] (1: true).
        SERVER_NO_CONTEXT_TAKEOVER = 1,
        /// See [`crate::deflate::Config::client_no_context_takeover`] (1: true).
        CLIENT_NO_CONTEXT_TAKEOVER = 1,
        /// See [`crate::deflate::Config::level`].
        LEVEL = 1,
        /// See [`crate::deflate::Config::large_level`].
        LARGE_LEVEL = 1,
    }
}

c_consts! {
    /// Event kinds of [`Event::kind`].
    pub mod kind: i32 {
        /// Every complete frame is served.
        NEED_MORE = 0,
        /// A command for its handler.
        COMMAND = 1,
        /// A request without a command.
        EMPTY = 2,
        /// Bytes that are not a `PubSubReq`.
        UNDECODABLE = 3,
        /// A text message.
        TEXT = 4,
        /// The peer closed.
        CLOSED = 5,
        /// The peer broke the protocol.
        FAILED = 6,
        /// The session was over already.
        ENDED = 7,
        /// A panic was caught.
        INTERNAL = -1,
    }
}

c_consts! {
    /// Op codes of [`Op::code`] (the values of [`crate::message::op`]).
    pub mod op_code: u32 {
        /// See [`op::NUMBER`].
        NUMBER = super::op::NUMBER,
        /// See [`op::BOOL`].
        BOOL = super::op::BOOL,
        /// See [`op::BYTES`].
        BYTES = super::op::BYTES,
        /// See [`op::TEXT`].
        TEXT = super::op::TEXT,
        /// See [`op::OPEN`].
        OPEN = super::op::OPEN,
        /// See [`op::CLOSE`].
        CLOSE = super::op::CLOSE,
        /// See [`op::REPEATED`].
        REPEATED = super::op::REPEATED,
    }
}

c_consts! {
    /// Lua's view of 64-bit integers: numbers within these bounds, `"#<digits>"` strings outside.
    pub mod int64_rule: i64 {
        /// See [`op::NUMBER_MIN`].
        NUMBER_MIN = super::op::NUMBER_MIN,
        /// See [`op::NUMBER_MAX`].
        NUMBER_MAX = super::op::NUMBER_MAX,
    }
}

c_consts! {
    /// What the encoder calls return: 0, a failure whose words `encode_error` gives, or `INTERNAL`.
    pub mod status: i32 {
        /// Success.
        OK = 0,
        /// A failure: `encode_error` has its words.
        FAILED = 1,
        /// A panic was caught.
        INTERNAL = -1,
    }
}

c_consts! {
    /// What the push calls return.
    pub mod push_status: i32 {
        /// Queued.
        OK = 0,
        /// It did not encode: `encode_error` has the words.
        FAILED = 1,
        /// The queue limit refused it.
        QUEUE_FULL = 2,
        /// The connection has ended.
        CLOSED = 3,
        /// Queued and written at once: nothing is left queued (a held value of the push is the
        /// caller's to release; the writer need not wake).
        SENT = 4,
        /// (`session_write_now` only) Written up to a value the caller holds: the caller writes it.
        HELD = 5,
        /// (`fanout_send` only) Not pushed: Lua sends this member the message itself.
        LUA = 6,
        /// A panic was caught.
        INTERNAL = -1,
    }
}

c_consts! {
    /// How `fanout_send` pushes an entry (Lua picks by the message's length).
    pub mod fanout_mode: i32 {
        /// Lua sends it to every member (outcome `LUA`): a long message, which each queue holds by
        /// reference to one Lua string.
        LUA = 0,
        /// Copied into each member's queue and written at once where the socket takes it.
        COPY = 1,
        /// Copied and written at once to a member whose connection has nothing queued (the copy
        /// is then gone as soon as written); Lua sends it, by reference, to the others.
        COPY_IF_IDLE = 2,
    }
}

c_struct! {
    /// What `fanout_send` reports of one member it did not simply send to.
    pub struct FanOutcome as "apisix_pubsub_rs_fanout_outcome" {
        /// The member's slot (`fanout_join`).
        slot: [u32],
        /// A [`push_status`]: `OK` (queued, not written: wake the writer), `QUEUE_FULL`,
        /// `CLOSED`, `LUA` or `INTERNAL`.
        code: [i32],
        /// 1 when this is the first entry the member takes since it joined after an id: what it
        /// had before is that id, not the channel's previous entry.
        first_past_after: [u32],
    }
}

c_struct! {
    /// One element of a Redis reply: [`crate::resp::Item`] as Lua sees it.
    pub struct ItemLayout as "apisix_pubsub_rs_resp_item" {
        /// A [`crate::resp::item`] code.
        kind: [u32],
        /// Aggregates: how many elements follow.
        count: [u32],
        /// Strings: where the bytes start in the reply.
        offset: [usize],
        /// Strings: how many bytes.
        len: [usize],
        /// Integers and booleans (`int` in Rust, a C keyword).
        integer: [i64],
        /// Doubles.
        num: [f64],
        /// Index of the item after this one and its elements.
        end: [usize],
    }
}

c_struct! {
    /// One stream entry of an `XREAD` / `XRANGE` reply: [`crate::resp::StreamEntry`] as Lua sees it.
    pub struct EntryLayout as "apisix_pubsub_rs_stream_entry" {
        /// Where the stream's key starts in the reply (`XREAD`).
        key_offset: [usize],
        /// Its length (0 for `XRANGE`).
        key_len: [usize],
        /// Where the entry id starts.
        id_offset: [usize],
        /// Its length.
        id_len: [usize],
        /// Index of the first field name among the items.
        fields: [usize],
        /// How many field-value pairs.
        pairs: [usize],
    }
}

c_struct! {
    /// What `resp_poll` fills in for Lua.
    pub struct RespReply as "apisix_pubsub_rs_resp_reply" {
        /// The reply's bytes, where items and entries point.
        bytes: [*const u8],
        /// Their length.
        len: [usize],
        /// The items, the reply itself first.
        items: [*const ItemLayout],
        /// How many.
        nitems: [usize],
        /// The stream entries (poll modes `XREAD`, `XRANGE`).
        entries: [*const EntryLayout],
        /// How many.
        nentries: [usize],
        /// `NEED_MORE`: bytes needed at least.
        need: [usize],
        /// `FAILED`: why.
        note: [*const u8],
        /// Length of `note`.
        note_len: [usize],
    }
}

#[cfg(test)]
impl RespReply {
    /// A reply with nothing in it, for `resp_poll` to fill.
    pub fn empty() -> RespReply {
        RespReply {
            bytes: std::ptr::null(),
            len: 0,
            items: std::ptr::null(),
            nitems: 0,
            entries: std::ptr::null(),
            nentries: 0,
            need: 0,
            note: std::ptr::null(),
            note_len: 0,
        }
    }
}

c_consts! {
    /// What `resp_poll` returns.
    pub mod resp_status: i32 {
        /// No complete reply yet.
        NEED_MORE = 0,
        /// A reply.
        REPLY = 1,
        /// The bytes are no Redis reply, or not of the shape asked for: close the connection.
        FAILED = 2,
        /// A null pointer or a panic.
        INTERNAL = -1,
    }
}

c_consts! {
    /// How `resp_poll` reads the reply it finds, by the command it answers.
    pub mod resp_mode: i32 {
        /// Items only.
        PLAIN = 0,
        /// An `XREAD` reply: its stream entries too.
        XREAD = 1,
        /// An `XRANGE` reply: its entries too.
        XRANGE = 2,
    }
}

exports! {
    schema::schema_builtin() -> [*const SchemaHandle];
    schema::schema_load([*const u8], [usize], [*mut *const u8], [*mut usize]) -> [*const SchemaHandle];
    schema::schema_free([*const SchemaHandle]) -> [()];
    schema::schema_lua([*const SchemaHandle], [*mut usize]) -> [*const u8];
    session::session_new([*const SchemaHandle], [u64], [u64], [u64], [u64]) -> [*mut LuaSession];
    session::session_free([*mut LuaSession]) -> [()];
    session::session_encoder([*mut LuaSession]) -> [*mut ReplyEncoder];
    session::session_feed([*mut LuaSession], [*const u8], [usize]) -> [c_int];
    session::session_step([*mut LuaSession], [*mut Event]) -> [c_int];
    session::session_echo_ping([*mut LuaSession], [c_int]) -> [()];
    session::session_mid_message([*const LuaSession]) -> [c_int];
    session::session_waiting([*const LuaSession], [*mut usize]) -> [*const u8];
    session::session_chunk([*mut LuaSession], [usize], [*mut usize], [*mut i64]) -> [*const u8];
    session::session_consume([*mut LuaSession], [usize]) -> [()];
    session::session_pending([*const LuaSession]) -> [usize];
    session::session_write_size([*const LuaSession]) -> [usize];
    session::session_write_due([*const LuaSession]) -> [usize];
    session::session_whole_writes([*const LuaSession]) -> [usize];
    session::session_close([*mut LuaSession], [c_int], [*const u8], [usize]) -> [()];
    session::session_reply_begin([*mut LuaSession]) -> [()];
    session::session_reply_finish([*mut LuaSession]) -> [c_int];
    session::session_reply_error([*mut LuaSession], [*const u8], [usize]) -> [()];
    session::session_push_begin([*mut LuaSession], [i64]) -> [()];
    session::session_push_finish([*mut LuaSession]) -> [c_int];
    session::session_push_message([*mut LuaSession], [*const u8], [usize], [i64]) -> [c_int];
    session::session_push_framed([*mut LuaSession], [*const u8], [usize], [i64]) -> [c_int];
    session::frame_header([usize], [*mut u8]) -> [usize];
    session::session_unsent_pushes([*const LuaSession]) -> [usize];
    session::session_ended([*const LuaSession]) -> [c_int];
    session::session_abandon([*mut LuaSession]) -> [()];
    session::session_written([*mut LuaSession], [usize]) -> [()];
    session::session_deflate([*mut LuaSession], [*const DeflateConfig], [*const u8], [usize], [*mut usize]) -> [*const u8];
    session::session_shared_key([*const LuaSession], [usize]) -> [i64];
    session::session_push_shared([*mut LuaSession], [*const u8], [usize], [i64], [c_int]) -> [c_int];
    session::deflate_shared([i64], [*const u8], [usize], [*mut usize]) -> [*const u8];
    session::session_attach_socket([*mut LuaSession], [*mut c_void], [*mut c_void], [*mut c_void]) -> [c_int];
    session::session_detach_socket([*mut LuaSession]) -> [()];
    session::session_write_now([*mut LuaSession]) -> [c_int];
    encoder::enc_begin([*mut ReplyEncoder], [i64]) -> [()];
    encoder::enc_number([*mut ReplyEncoder], [u32], [f64]) -> [c_int];
    encoder::enc_int([*mut ReplyEncoder], [u32], [i64]) -> [c_int];
    encoder::enc_uint([*mut ReplyEncoder], [u32], [u64]) -> [c_int];
    encoder::enc_int_text([*mut ReplyEncoder], [u32], [*const u8], [usize]) -> [c_int];
    encoder::enc_bool([*mut ReplyEncoder], [u32], [c_int]) -> [c_int];
    encoder::enc_bytes([*mut ReplyEncoder], [u32], [*const u8], [usize]) -> [c_int];
    encoder::enc_bytes_ref([*mut ReplyEncoder], [u32], [u32], [usize]) -> [c_int];
    encoder::enc_open([*mut ReplyEncoder], [u32]) -> [c_int];
    encoder::enc_close([*mut ReplyEncoder]) -> [c_int];
    encoder::enc_result([*mut ReplyEncoder], [*mut usize]) -> [*const u8];
    encoder::encode_error([*mut usize]) -> [*const u8];
    encoder::parse_int64([*const u8], [usize], [*mut i64]) -> [c_int];
    codec::codec_new([*const SchemaHandle]) -> [*mut Codec];
    codec::codec_free([*mut Codec]) -> [()];
    codec::codec_encoder([*mut Codec]) -> [*mut ReplyEncoder];
    codec::codec_decode([*mut Codec], [*const u8], [usize], [*mut Event]) -> [c_int];
    metrics::metrics_enabled() -> [c_int];
    metrics::metrics_accepted() -> [()];
    metrics::metrics_ended([c_int], [c_int]) -> [()];
    metrics::metrics_error([c_int]) -> [()];
    metrics::metrics_push_closed() -> [()];
    metrics::metrics_set([c_int], [u64]) -> [()];
    metrics::metrics_snapshot([*mut usize]) -> [*const u8];
    metrics::metrics_render([*const SchemaHandle], [*const u8], [usize], [c_int], [*mut usize]) -> [*const u8];
    resp::resp_decoder_new([usize], [usize]) -> [*mut LuaRespDecoder];
    resp::resp_decoder_free([*mut LuaRespDecoder]) -> [()];
    resp::resp_feed([*mut LuaRespDecoder], [*const u8], [usize]) -> [()];
    resp::resp_poll([*mut LuaRespDecoder], [c_int], [*mut RespReply]) -> [c_int];
    resp::resp_writer_new() -> [*mut RespWriter];
    resp::resp_writer_free([*mut RespWriter]) -> [()];
    resp::resp_command([*mut RespWriter], [usize], [*const *const u8], [*const usize]) -> [c_int];
    resp::resp_written([*const RespWriter], [*mut usize]) -> [*const u8];
    resp::resp_writer_clear([*mut RespWriter]) -> [()];
    session::session_refuse_pushes([*mut LuaSession]) -> [()];
    fanout::fanout_new() -> [*mut LuaFanOut];
    fanout::fanout_free([*mut LuaFanOut]) -> [()];
    fanout::fanout_join([*mut LuaFanOut], [*mut LuaSession], [i64], [*const u8], [usize], [c_int]) -> [i64];
    fanout::fanout_leave([*mut LuaFanOut], [u32]) -> [c_int];
    fanout::fanout_len([*const LuaFanOut]) -> [usize];
    fanout::fanout_send([*mut LuaFanOut], [*const u8], [usize], [*const u8], [usize], [c_int], [*mut usize]) -> [*const FanOutcome];
}

/// The opaque types Lua holds pointers to.
const OPAQUE: &[&str] = &[
    "apisix_pubsub_rs_session",
    "apisix_pubsub_rs_encoder",
    "apisix_pubsub_rs_codec",
    "apisix_pubsub_rs_schema",
    "apisix_pubsub_rs_resp_decoder",
    "apisix_pubsub_rs_resp_writer",
    "apisix_pubsub_rs_fanout",
];

/// The generated Lua module `apisix_pubsub_rs.ffi`: the cdefs, the functions cast to their types
/// (`C`), the constants (`kind`, `op`, `int64`, `status`) and a check of the struct layouts. It
/// is called with the table of function pointers `luaopen` makes.
pub fn lua_source() -> String {
    let mut s = String::from("-- Generated from src/ffi/contract.rs when the library loads. Do not edit.\n");
    s.push_str("local pointers = select(2, ...)\nlocal ffi = require(\"ffi\")\n");
    s.push_str("-- A cdef is global to the LuaJIT VM: declare once, even if the module is loaded again.\n");
    s.push_str("if not pcall(ffi.typeof, \"apisix_pubsub_rs_event\") then\n    ffi.cdef [[\n");
    s.push_str(OpLayout::C_DECL);
    s.push_str(Event::C_DECL);
    s.push_str(ItemLayout::C_DECL);
    s.push_str(EntryLayout::C_DECL);
    s.push_str(RespReply::C_DECL);
    s.push_str(DeflateConfig::C_DECL);
    s.push_str(FanOutcome::C_DECL);
    for t in OPAQUE {
        let _ = writeln!(s, "typedef struct {t} {t};");
    }
    s.push_str("]]\nend\n\nlocal C = {}\n");
    for (name, ctype, _) in exports() {
        let _ = writeln!(s, "C.{name} = ffi.cast({ctype:?}, pointers.{name})");
    }
    let table = |s: &mut String, name: &str, all: Vec<(&str, i64)>| {
        let body: Vec<String> = all.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = writeln!(s, "local {name} = {{ {} }}", body.join(", "));
    };
    table(&mut s, "kind", kind::all());
    table(&mut s, "op", op_code::all());
    table(&mut s, "int64", int64_rule::all());
    table(&mut s, "status", status::all());
    table(&mut s, "push", push_status::all());
    s.push_str(&super::metrics::lua_constants());
    table(&mut s, "resp_status", resp_status::all());
    table(&mut s, "resp_mode", resp_mode::all());
    table(&mut s, "deflate_default", deflate_default::all());
    table(&mut s, "fanout_mode", fanout_mode::all());
    s.push_str("\n-- The layouts LuaJIT made must be the ones Rust made.\n");
    for (cname, size, offsets) in [
        (Event::C_NAME, std::mem::size_of::<Event>(), Event::offsets()),
        (OpLayout::C_NAME, std::mem::size_of::<Op>(), OpLayout::offsets()),
        (ItemLayout::C_NAME, std::mem::size_of::<crate::resp::Item>(), ItemLayout::offsets()),
        (EntryLayout::C_NAME, std::mem::size_of::<crate::resp::StreamEntry>(), EntryLayout::offsets()),
        (RespReply::C_NAME, std::mem::size_of::<RespReply>(), RespReply::offsets()),
        (DeflateConfig::C_NAME, std::mem::size_of::<DeflateConfig>(), DeflateConfig::offsets()),
        (FanOutcome::C_NAME, std::mem::size_of::<FanOutcome>(), FanOutcome::offsets()),
    ] {
        let _ = writeln!(s, "assert(ffi.sizeof({cname:?}) == {size}, \"apisix_pubsub_rs: {cname} has another size in Lua than in Rust\")");
        for (field, off) in offsets {
            let _ = writeln!(
                s,
                "assert(ffi.offsetof({cname:?}, {field:?}) == {off}, \"apisix_pubsub_rs: {cname}.{field} has another offset in Lua than in Rust\")"
            );
        }
    }
    s.push_str("\nreturn { C = C, kind = kind, op = op, int64 = int64, status = status, push = push, metrics_end = metrics_end, metrics_error = metrics_error, metrics_slot = metrics_slot, resp_status = resp_status, resp_mode = resp_mode, deflate_default = deflate_default, fanout_mode = fanout_mode, version = ffi.string(ffi.cast(\"const char *\", pointers.version)) }\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_op_layout_is_the_op() {
        assert_eq!(std::mem::size_of::<OpLayout>(), std::mem::size_of::<Op>());
        assert_eq!(OpLayout::offsets(), vec![
            ("code", std::mem::offset_of!(Op, code)),
            ("field", std::mem::offset_of!(Op, field)),
            ("num", std::mem::offset_of!(Op, num)),
            ("offset", std::mem::offset_of!(Op, offset)),
            ("len", std::mem::offset_of!(Op, len)),
        ]);
    }

    #[test]
    fn the_resp_layouts_are_the_resp_types() {
        use crate::resp::{Item, StreamEntry};
        assert_eq!(std::mem::size_of::<ItemLayout>(), std::mem::size_of::<Item>());
        assert_eq!(ItemLayout::offsets(), vec![
            ("kind", std::mem::offset_of!(Item, kind)),
            ("count", std::mem::offset_of!(Item, count)),
            ("offset", std::mem::offset_of!(Item, offset)),
            ("len", std::mem::offset_of!(Item, len)),
            ("integer", std::mem::offset_of!(Item, int)),
            ("num", std::mem::offset_of!(Item, num)),
            ("end", std::mem::offset_of!(Item, end)),
        ]);
        let span = std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<EntryLayout>(), std::mem::size_of::<StreamEntry>());
        assert_eq!(EntryLayout::offsets(), vec![
            ("key_offset", std::mem::offset_of!(StreamEntry, key)),
            ("key_len", std::mem::offset_of!(StreamEntry, key) + span),
            ("id_offset", std::mem::offset_of!(StreamEntry, id)),
            ("id_len", std::mem::offset_of!(StreamEntry, id) + span),
            ("fields", std::mem::offset_of!(StreamEntry, fields)),
            ("pairs", std::mem::offset_of!(StreamEntry, pairs)),
        ]);
    }

    #[test]
    fn the_compression_defaults_are_the_configs() {
        use deflate_default::*;
        let d = crate::deflate::Config::default();
        assert_eq!(
            [THRESHOLD, SERVER_MAX_WINDOW_BITS, CLIENT_MAX_WINDOW_BITS, SERVER_NO_CONTEXT_TAKEOVER, CLIENT_NO_CONTEXT_TAKEOVER, LEVEL, LARGE_LEVEL],
            [
                d.threshold as i64,
                i64::from(d.server_max_window_bits),
                i64::from(d.client_max_window_bits),
                i64::from(d.server_no_context_takeover),
                i64::from(d.client_no_context_takeover),
                i64::from(d.level),
                i64::from(d.large_level),
            ]
        );
    }

    #[test]
    fn the_lua_module_declares_every_export_and_constant() {
        let lua = lua_source();
        assert!(lua.contains("typedef struct apisix_pubsub_rs_event {\n    int32_t kind;\n    int32_t command;"), "{lua}");
        assert!(lua.contains("C.session_new = ffi.cast(\"apisix_pubsub_rs_session * (*)(const apisix_pubsub_rs_schema *, uint64_t, uint64_t, uint64_t, uint64_t)\", pointers.session_new)"));
        assert!(lua.contains("C.schema_builtin = ffi.cast(\"const apisix_pubsub_rs_schema * (*)(void)\""));
        assert!(lua.contains("local kind = { NEED_MORE = 0, COMMAND = 1"));
        assert!(lua.contains("REPEATED = 16"));
        assert!(lua.contains("NUMBER_MIN = -2147483648, NUMBER_MAX = 4294967295"));
        let names: Vec<_> = exports().into_iter().map(|e| e.0).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "an export listed twice");
    }
}
