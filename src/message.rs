//! The PubSub message codec: `PubSubReq` bytes in, a flat list of [`Op`]s out; reply fields in,
//! `PubSubResp` bytes out.
//!
//! Both directions are driven by the tables of [`crate::schema`], not by generated structs, and both
//! follow what APISIX's `.t` suites observe from lua-protobuf:
//! - unknown fields are skipped;
//! - a tag varint cut off at the very end of a message ends that message quietly;
//! - everything else malformed is an error naming what and where (byte offset).
//!
//! The [`Op`] list is the bridge to Lua: each op sets one key of the parameter table, and it is a
//! `#[repr(C)]` struct so the Lua side can read it through LuaJIT's FFI without a Lua C API call.
//! Byte values are not copied: an op points into the request buffer by offset.

use std::fmt;

use crate::schema::{self, Field, Kind, Message};
use crate::wire::{self, VarintError, WireType};

/// Deepest message nesting accepted in a request (the request itself is depth 0).
pub const MAX_DEPTH: usize = 32;

/// What an [`Op`] does to the table being built. A value may be or-ed with [`op::REPEATED`].
pub mod op {
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
}

/// One step of building the parameter table of a command. See [`op`] for the codes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Op {
    /// An [`op`] code.
    pub code: u32,
    /// The field's id in [`schema::FIELDS`].
    pub field: u32,
    /// The value of [`op::NUMBER`] and [`op::BOOL`].
    pub num: f64,
    /// Byte offset of the value of [`op::BYTES`] / [`op::TEXT`].
    pub offset: usize,
    /// Byte length of the value of [`op::BYTES`] / [`op::TEXT`].
    pub len: usize,
}

/// A decoded `PubSubReq`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request's sequence, all 64 bits.
    pub sequence: i64,
    /// The command (a `oneof` member of `PubSubReq`), or `None` for a request without one.
    pub command: Option<&'static Field>,
    /// The ops that build the command's parameter table.
    pub ops: &'a [Op],
    /// Where [`op::TEXT`] values point.
    pub text: &'a [u8],
}

/// A request that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at offset {offset}")]
pub struct DecodeError {
    kind: DecodeErrorKind,
    offset: usize,
}

impl DecodeError {
    /// Byte offset in the request where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DecodeErrorKind {
    TruncatedVarint,
    OverlongVarint,
    BadWireType(u64),
    BadFieldNumber(u64),
    WrongWireType { message: &'static str, field: &'static str, expected: WireType, got: WireType },
    LengthPastEnd(u64),
    Truncated(WireType),
    TooDeep,
    UnexpectedEndGroup,
    UnterminatedGroup,
    BadPackedLength(&'static str),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match self {
            TruncatedVarint => write!(f, "truncated varint"),
            OverlongVarint => write!(f, "invalid varint (more than 10 bytes)"),
            BadWireType(t) => write!(f, "invalid wire type {t}"),
            BadFieldNumber(n) => write!(f, "invalid field number {n}"),
            WrongWireType { message, field, expected, got } => write!(
                f,
                "field '{field}' of {message} expects a {} value, got {}",
                expected.name(),
                got.name()
            ),
            LengthPastEnd(n) => write!(f, "length {n} runs past the end of the message"),
            Truncated(wt) => write!(f, "truncated {} value", wt.name()),
            TooDeep => write!(f, "messages nested deeper than {MAX_DEPTH}"),
            UnexpectedEndGroup => write!(f, "end-group without a start-group"),
            UnterminatedGroup => write!(f, "unterminated group"),
            BadPackedLength(kind) => write!(f, "packed {kind} values of a length that is not a multiple of their size"),
        }
    }
}

fn err<T>(kind: DecodeErrorKind, offset: usize) -> Result<T, DecodeError> {
    Err(DecodeError { kind, offset })
}

fn varint_err(e: VarintError, offset: usize) -> DecodeError {
    let kind = match e {
        VarintError::Truncated => DecodeErrorKind::TruncatedVarint,
        VarintError::Overlong => DecodeErrorKind::OverlongVarint,
    };
    DecodeError { kind, offset }
}

/// Decodes `PubSubReq` messages into [`Request`]s, reusing its buffers from one request to the next.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    ops: Vec<Op>,
    text: Vec<u8>,
    parts: Vec<(usize, usize)>,
}

/// A field header read from the wire.
struct Tag {
    number: u64,
    wt: WireType,
    at: usize,
}

/// Reads the next tag of the message ending at `end`. `Ok(None)` ends the message: at its end, or
/// quietly when the tag varint itself is cut off by the end (lua-protobuf compatibility).
#[inline]
fn next_tag(buf: &[u8], pos: &mut usize, end: usize) -> Result<Option<Tag>, DecodeError> {
    if *pos >= end {
        return Ok(None);
    }
    let at = *pos;
    let key = match wire::read_varint(&buf[..end], pos) {
        Ok(k) => k,
        Err(VarintError::Truncated) => return Ok(None),
        Err(e) => return Err(varint_err(e, at)),
    };
    let Some(wt) = WireType::from_bits(key) else {
        return err(DecodeErrorKind::BadWireType(key & 7), at);
    };
    let number = key >> 3;
    if number == 0 || number > (1 << 29) - 1 {
        return err(DecodeErrorKind::BadFieldNumber(number), at);
    }
    Ok(Some(Tag { number, wt, at }))
}

#[inline]
fn read_varint_at(buf: &[u8], pos: &mut usize, end: usize) -> Result<u64, DecodeError> {
    let at = *pos;
    wire::read_varint(&buf[..end], pos).map_err(|e| varint_err(e, at))
}

#[inline]
fn read_fixed<const N: usize>(buf: &[u8], pos: &mut usize, end: usize, wt: WireType) -> Result<[u8; N], DecodeError> {
    if end - *pos < N {
        return err(DecodeErrorKind::Truncated(wt), *pos);
    }
    let mut b = [0u8; N];
    b.copy_from_slice(&buf[*pos..*pos + N]);
    *pos += N;
    Ok(b)
}

/// Reads a length prefix and returns the byte range it announces.
#[inline]
fn read_len(buf: &[u8], pos: &mut usize, end: usize) -> Result<(usize, usize), DecodeError> {
    let at = *pos;
    let len = read_varint_at(buf, pos, end)?;
    if len > (end - *pos) as u64 {
        return err(DecodeErrorKind::LengthPastEnd(len), at);
    }
    let start = *pos;
    *pos += len as usize;
    Ok((start, *pos))
}

/// Skips the value of an unknown field.
fn skip(buf: &[u8], pos: &mut usize, end: usize, tag: &Tag, depth: usize) -> Result<(), DecodeError> {
    match tag.wt {
        WireType::Varint => read_varint_at(buf, pos, end).map(drop),
        WireType::Fixed64 => read_fixed::<8>(buf, pos, end, tag.wt).map(drop),
        WireType::Fixed32 => read_fixed::<4>(buf, pos, end, tag.wt).map(drop),
        WireType::Len => read_len(buf, pos, end).map(drop),
        WireType::StartGroup => {
            if depth >= MAX_DEPTH {
                return err(DecodeErrorKind::TooDeep, tag.at);
            }
            loop {
                let Some(inner) = next_tag(buf, pos, end)? else {
                    return err(DecodeErrorKind::UnterminatedGroup, tag.at);
                };
                if inner.wt == WireType::EndGroup {
                    return if inner.number == tag.number {
                        Ok(())
                    } else {
                        err(DecodeErrorKind::UnexpectedEndGroup, inner.at)
                    };
                }
                skip(buf, pos, end, &inner, depth + 1)?;
            }
        }
        WireType::EndGroup => err(DecodeErrorKind::UnexpectedEndGroup, tag.at),
    }
}

/// A decoded scalar, before it becomes an [`Op`].
enum Scalar {
    Number(f64),
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
}

fn scalar_from_varint(kind: Kind, v: u64) -> Scalar {
    match kind {
        Kind::Int32 | Kind::Enum => Scalar::Number(f64::from(v as i32)),
        Kind::Uint32 => Scalar::Number(f64::from(v as u32)),
        Kind::Sint32 => {
            let v = v as u32;
            Scalar::Number(f64::from(((v >> 1) as i32) ^ -((v & 1) as i32)))
        }
        Kind::Int64 => Scalar::Signed(v as i64),
        Kind::Sint64 => Scalar::Signed(wire::unzigzag(v)),
        Kind::Uint64 => Scalar::Unsigned(v),
        Kind::Bool => Scalar::Bool(v != 0),
        // Not reachable: the wire type was checked against the kind.
        _ => Scalar::Unsigned(v),
    }
}

fn scalar_from_fixed32(kind: Kind, b: [u8; 4]) -> Scalar {
    match kind {
        Kind::Float => Scalar::Number(f64::from(f32::from_le_bytes(b))),
        Kind::Sfixed32 => Scalar::Number(f64::from(i32::from_le_bytes(b))),
        _ => Scalar::Number(f64::from(u32::from_le_bytes(b))),
    }
}

fn scalar_from_fixed64(kind: Kind, b: [u8; 8]) -> Scalar {
    match kind {
        Kind::Double => Scalar::Number(f64::from_le_bytes(b)),
        Kind::Sfixed64 => Scalar::Signed(i64::from_le_bytes(b)),
        _ => Scalar::Unsigned(u64::from_le_bytes(b)),
    }
}

/// Lua's view of a 64-bit integer (lua-protobuf's `int64_as_string`): a number when it lies in
/// [-2^31, 2^32-1], otherwise `"#<digits>"`.
const NUMBER_MIN: i64 = i32::MIN as i64;
const NUMBER_MAX: i64 = u32::MAX as i64;

impl RequestDecoder {
    /// A decoder with empty buffers.
    pub fn new() -> RequestDecoder {
        RequestDecoder::default()
    }

    /// The ops and text of the last [`RequestDecoder::decode`] that succeeded.
    pub fn last(&self) -> (&[Op], &[u8]) {
        (&self.ops, &self.text)
    }

    /// Decodes one `PubSubReq`. The ops of the result point into `buf` and into this decoder.
    pub fn decode<'a>(&'a mut self, buf: &[u8]) -> Result<Request<'a>, DecodeError> {
        self.ops.clear();
        self.text.clear();
        self.parts.clear();
        let req = schema::request();
        let end = buf.len();
        let mut pos = 0;
        let mut sequence = 0i64;
        let mut command: Option<&'static Field> = None;
        while let Some(tag) = next_tag(buf, &mut pos, end)? {
            let Some(field) = req.field_by_number(tag.number as u32) else {
                skip(buf, &mut pos, end, &tag, 0)?;
                continue;
            };
            check_wire_type(req, field, &tag)?;
            if field.oneof {
                let range = read_len(buf, &mut pos, end)?;
                // Another member of the oneof replaces the earlier one; the same member again is
                // merged into it, as protobuf parsers do.
                if !command.is_some_and(|c| std::ptr::eq(c, field)) {
                    self.parts.clear();
                    command = Some(field);
                }
                self.parts.push(range);
            } else if field.number == 1 {
                sequence = read_varint_at(buf, &mut pos, end)? as i64;
            } else {
                // A basic-information field this module does not use yet: validate and drop.
                skip(buf, &mut pos, end, &tag, 0)?;
            }
        }
        if let Some(cmd) = command {
            let msg = cmd.target_message().expect("commands are messages");
            for i in 0..self.parts.len() {
                let (start, end) = self.parts[i];
                self.fields(buf, msg, start, end, 1)?;
            }
        }
        Ok(Request { sequence, command, ops: &self.ops, text: &self.text })
    }

    /// Emits the ops of the fields of `msg` found in `buf[pos..end]`.
    fn fields(&mut self, buf: &[u8], msg: &'static Message, mut pos: usize, end: usize, depth: usize) -> Result<(), DecodeError> {
        while let Some(tag) = next_tag(buf, &mut pos, end)? {
            let Some(field) = msg.field_by_number(tag.number as u32) else {
                skip(buf, &mut pos, end, &tag, depth)?;
                continue;
            };
            let flag = if field.repeated { op::REPEATED } else { 0 };
            let id = u32::from(field.id);
            if field.repeated && field.kind.is_scalar_number() && tag.wt == WireType::Len {
                let (start, stop) = read_len(buf, &mut pos, end)?;
                self.packed(buf, field, start, stop)?;
                continue;
            }
            check_wire_type(msg, field, &tag)?;
            match field.kind {
                Kind::Message => {
                    if depth >= MAX_DEPTH {
                        return err(DecodeErrorKind::TooDeep, tag.at);
                    }
                    let (start, stop) = read_len(buf, &mut pos, end)?;
                    let target = field.target_message().expect("message fields have a target");
                    self.ops.push(Op { code: op::OPEN | flag, field: id, num: 0.0, offset: 0, len: 0 });
                    self.fields(buf, target, start, stop, depth + 1)?;
                    self.ops.push(Op { code: op::CLOSE, field: id, num: 0.0, offset: 0, len: 0 });
                }
                Kind::String | Kind::Bytes => {
                    let (start, stop) = read_len(buf, &mut pos, end)?;
                    self.ops.push(Op { code: op::BYTES | flag, field: id, num: 0.0, offset: start, len: stop - start });
                }
                _ => {
                    let v = self.scalar(buf, field.kind, tag.wt, &mut pos, end)?;
                    self.push_scalar(field, v);
                }
            }
        }
        Ok(())
    }

    fn packed(&mut self, buf: &[u8], field: &'static Field, mut pos: usize, end: usize) -> Result<(), DecodeError> {
        let wt = field.kind.wire_type();
        let size = match wt {
            WireType::Fixed32 => 4,
            WireType::Fixed64 => 8,
            _ => 0,
        };
        if size != 0 && (end - pos) % size != 0 {
            return err(DecodeErrorKind::BadPackedLength(field.kind.name()), pos);
        }
        while pos < end {
            let v = self.scalar(buf, field.kind, wt, &mut pos, end)?;
            self.push_scalar(field, v);
        }
        Ok(())
    }

    #[inline]
    fn scalar(&mut self, buf: &[u8], kind: Kind, wt: WireType, pos: &mut usize, end: usize) -> Result<Scalar, DecodeError> {
        Ok(match wt {
            WireType::Varint => scalar_from_varint(kind, read_varint_at(buf, pos, end)?),
            WireType::Fixed32 => scalar_from_fixed32(kind, read_fixed::<4>(buf, pos, end, wt)?),
            _ => scalar_from_fixed64(kind, read_fixed::<8>(buf, pos, end, wt)?),
        })
    }

    fn push_scalar(&mut self, field: &'static Field, v: Scalar) {
        let flag = if field.repeated { op::REPEATED } else { 0 };
        let id = u32::from(field.id);
        let number = |code, num| Op { code: code | flag, field: id, num, offset: 0, len: 0 };
        let op = match v {
            Scalar::Number(n) => number(op::NUMBER, n),
            Scalar::Bool(b) => number(op::BOOL, if b { 1.0 } else { 0.0 }),
            Scalar::Signed(n) if (NUMBER_MIN..=NUMBER_MAX).contains(&n) => number(op::NUMBER, n as f64),
            Scalar::Unsigned(n) if n <= NUMBER_MAX as u64 => number(op::NUMBER, n as f64),
            Scalar::Signed(n) => self.text_op(flag, id, format_args!("#{n}")),
            Scalar::Unsigned(n) => self.text_op(flag, id, format_args!("#{n}")),
        };
        self.ops.push(op);
    }

    fn text_op(&mut self, flag: u32, id: u32, text: fmt::Arguments<'_>) -> Op {
        use std::io::Write as _;
        let offset = self.text.len();
        // Writing into a Vec cannot fail.
        let _ = self.text.write_fmt(text);
        Op { code: op::TEXT | flag, field: id, num: 0.0, offset, len: self.text.len() - offset }
    }
}

fn check_wire_type(msg: &'static Message, field: &'static Field, tag: &Tag) -> Result<(), DecodeError> {
    let expected = field.kind.wire_type();
    if tag.wt != expected {
        return err(
            DecodeErrorKind::WrongWireType { message: msg.name, field: field.name, expected, got: tag.wt },
            tag.at,
        );
    }
    Ok(())
}

/// A reply that could not be encoded. The Lua side names the field; this says what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The field id does not exist, or does not belong to the message being written.
    #[error("field does not belong to the message being encoded")]
    NotInMessage,
    /// A value of the wrong type for the field.
    #[error("wrong type for a {0} field")]
    WrongType(&'static str),
    /// An integer out of the range of the field's type, or a number with a fractional part.
    #[error("value out of range for a {0} field")]
    OutOfRange(&'static str),
    /// An integer given as a string that does not parse.
    #[error("not an integer")]
    BadInteger,
    /// `close` without `open`, or `finish` with a message still open.
    #[error("unbalanced nested messages")]
    Unbalanced,
    /// `finish` of a message holding values by reference, whose bytes the encoder does not have.
    #[error("the message holds values by reference")]
    Referenced,
}

/// A string or bytes value the encoder holds by reference: its bytes belong at `at` in the
/// encoder's buffer, and the caller, who keeps them, knows them by `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ref {
    /// Where the value's bytes go: after `buf[..at]`, before `buf[at..]`.
    pub at: usize,
    /// The caller's name for the value.
    pub id: u32,
    /// Its length.
    pub len: usize,
}

#[derive(Debug)]
struct Open {
    field: &'static Field,
    /// Index of the one byte reserved for the length.
    len_at: usize,
    /// Bytes held by reference before this message was opened.
    held_before: usize,
    /// The message whose fields were being written before this one was opened.
    parent: &'static Message,
}

/// Encodes `PubSubResp` messages field by field, as the Lua side walks a reply table.
///
/// proto3 rules: singular fields outside a oneof are left out when they hold their default value;
/// oneof members are always written; repeated numbers are packed.
///
/// The message may be written after bytes that stay untouched ([`ReplyEncoder::begin_after`]): a
/// session keeps its output queue in the encoder's buffer, so a reply is encoded where it is sent
/// from, not copied there.
#[derive(Debug)]
pub struct ReplyEncoder {
    buf: Vec<u8>,
    /// Where the message being written starts in `buf`.
    base: usize,
    /// Values held by reference, in order ([`ReplyEncoder::put_bytes_ref`]), and their total length.
    refs: Vec<Ref>,
    held: usize,
    stack: Vec<Open>,
    current: &'static Message,
}

impl Default for ReplyEncoder {
    fn default() -> Self {
        ReplyEncoder { buf: Vec::new(), base: 0, refs: Vec::new(), held: 0, stack: Vec::new(), current: schema::response() }
    }
}

impl ReplyEncoder {
    /// An encoder with an empty buffer.
    pub fn new() -> ReplyEncoder {
        ReplyEncoder::default()
    }

    /// Starts a `PubSubResp` with this sequence, dropping anything half-written before.
    pub fn begin(&mut self, sequence: i64) {
        self.begin_after(0, sequence);
    }

    /// Starts a `PubSubResp` after the first `keep` bytes of the buffer, which stay as they are;
    /// anything after them is dropped.
    pub fn begin_after(&mut self, keep: usize, sequence: i64) {
        self.buf.truncate(keep);
        self.base = self.buf.len();
        self.refs.clear();
        self.held = 0;
        self.stack.clear();
        self.current = schema::response();
        if sequence != 0 {
            wire::put_tag(&mut self.buf, 1, WireType::Varint);
            wire::put_varint(&mut self.buf, sequence as u64);
        }
    }

    /// The field with this id, if a value for it may be written now: a field of the message being
    /// written, or, inside an open packed array, that array's field only.
    fn field(&self, id: u32) -> Result<&'static Field, EncodeError> {
        let field = schema::FIELDS.get(id as usize).ok_or(EncodeError::NotInMessage)?;
        let allowed = match self.stack.last() {
            Some(open) if open.field.kind != Kind::Message => std::ptr::eq(open.field, field),
            _ => std::ptr::eq(&schema::MESSAGES[usize::from(field.owner)], self.current),
        };
        if allowed {
            Ok(field)
        } else {
            Err(EncodeError::NotInMessage)
        }
    }

    /// True when values go into an open packed array: no tag before each one.
    fn in_packed(&self, field: &'static Field) -> bool {
        self.stack.last().is_some_and(|o| std::ptr::eq(o.field, field) && field.kind != Kind::Message)
    }

    fn skip_default(&self, field: &'static Field, is_default: bool) -> bool {
        is_default && !field.oneof && !field.repeated
    }

    fn scalar_tag(&mut self, field: &'static Field) {
        if !self.in_packed(field) {
            wire::put_tag(&mut self.buf, field.number, field.kind.wire_type());
        }
    }

    /// Writes a signed integer into an integer, enum, float or double field.
    pub fn put_int(&mut self, id: u32, v: i64) -> Result<(), EncodeError> {
        let field = self.field(id)?;
        let k = field.kind;
        let out_of_range = || EncodeError::OutOfRange(k.name());
        let in32 = |v: i64| i32::try_from(v).map_err(|_| out_of_range());
        let inu32 = |v: i64| u32::try_from(v).map_err(|_| out_of_range());
        let inu64 = |v: i64| u64::try_from(v).map_err(|_| out_of_range());
        // Validate first, so a bad value writes nothing.
        enum W {
            Varint(u64),
            F32([u8; 4]),
            F64([u8; 8]),
        }
        let w = match k {
            Kind::Int32 | Kind::Enum => W::Varint(in32(v)? as i64 as u64),
            Kind::Int64 => W::Varint(v as u64),
            Kind::Uint32 => W::Varint(u64::from(inu32(v)?)),
            Kind::Uint64 => W::Varint(inu64(v)?),
            Kind::Sint32 => W::Varint(wire::zigzag(i64::from(in32(v)?))),
            Kind::Sint64 => W::Varint(wire::zigzag(v)),
            Kind::Fixed32 => W::F32(inu32(v)?.to_le_bytes()),
            Kind::Sfixed32 => W::F32(in32(v)?.to_le_bytes()),
            Kind::Fixed64 => W::F64(inu64(v)?.to_le_bytes()),
            Kind::Sfixed64 => W::F64(v.to_le_bytes()),
            Kind::Float => W::F32((v as f32).to_le_bytes()),
            Kind::Double => W::F64((v as f64).to_le_bytes()),
            Kind::Bool | Kind::String | Kind::Bytes | Kind::Message => return Err(EncodeError::WrongType(k.name())),
        };
        if self.skip_default(field, v == 0) {
            return Ok(());
        }
        self.scalar_tag(field);
        match w {
            W::Varint(x) => wire::put_varint(&mut self.buf, x),
            W::F32(b) => self.buf.extend_from_slice(&b),
            W::F64(b) => self.buf.extend_from_slice(&b),
        }
        Ok(())
    }

    /// Writes an unsigned integer (for values above `i64::MAX`, which only unsigned fields hold).
    pub fn put_uint(&mut self, id: u32, v: u64) -> Result<(), EncodeError> {
        match i64::try_from(v) {
            Ok(v) => self.put_int(id, v),
            Err(_) => {
                let field = self.field(id)?;
                match field.kind {
                    Kind::Uint64 => {
                        self.scalar_tag(field);
                        wire::put_varint(&mut self.buf, v);
                        Ok(())
                    }
                    Kind::Fixed64 => {
                        self.scalar_tag(field);
                        self.buf.extend_from_slice(&v.to_le_bytes());
                        Ok(())
                    }
                    Kind::Float | Kind::Double => self.put_number(id, v as f64),
                    Kind::Bool | Kind::String | Kind::Bytes | Kind::Message => Err(EncodeError::WrongType(field.kind.name())),
                    k => Err(EncodeError::OutOfRange(k.name())),
                }
            }
        }
    }

    /// Writes a Lua number: as is into float/double fields, as an integer into integer fields when it
    /// has no fractional part and fits.
    pub fn put_number(&mut self, id: u32, v: f64) -> Result<(), EncodeError> {
        let field = self.field(id)?;
        match field.kind {
            Kind::Double => {
                if self.skip_default(field, v.to_bits() == 0) {
                    return Ok(());
                }
                self.scalar_tag(field);
                self.buf.extend_from_slice(&v.to_le_bytes());
                Ok(())
            }
            Kind::Float => {
                if self.skip_default(field, v.to_bits() == 0) {
                    return Ok(());
                }
                self.scalar_tag(field);
                self.buf.extend_from_slice(&(v as f32).to_le_bytes());
                Ok(())
            }
            Kind::Bool | Kind::String | Kind::Bytes | Kind::Message => Err(EncodeError::WrongType(field.kind.name())),
            k => {
                // 2^63 and 2^64 are exact doubles; the casts below are exact inside these bounds.
                if v.fract() != 0.0 || !v.is_finite() {
                    Err(EncodeError::OutOfRange(k.name()))
                } else if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
                    self.put_int(id, v as i64)
                } else if (0.0..1.844_674_407_370_955_2e19).contains(&v) {
                    self.put_uint(id, v as u64)
                } else {
                    Err(EncodeError::OutOfRange(k.name()))
                }
            }
        }
    }

    /// Writes an integer given as text: `"30"`, `"-1"`, or lua-protobuf's `"#<digits>"` / `"#-<digits>"`.
    pub fn put_int_text(&mut self, id: u32, text: &[u8]) -> Result<(), EncodeError> {
        let digits = text.strip_prefix(b"#").unwrap_or(text);
        let unsigned = digits.strip_prefix(b"-").unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.iter().all(u8::is_ascii_digit) {
            return Err(EncodeError::BadInteger);
        }
        // All ASCII digits, so this is UTF-8.
        let s = std::str::from_utf8(digits).map_err(|_| EncodeError::BadInteger)?;
        if let Ok(v) = s.parse::<i64>() {
            self.put_int(id, v)
        } else if let Ok(v) = s.parse::<u64>() {
            self.put_uint(id, v)
        } else {
            Err(EncodeError::OutOfRange(self.field(id)?.kind.name()))
        }
    }

    /// Writes a boolean field.
    pub fn put_bool(&mut self, id: u32, v: bool) -> Result<(), EncodeError> {
        let field = self.field(id)?;
        if field.kind != Kind::Bool {
            return Err(EncodeError::WrongType(field.kind.name()));
        }
        if self.skip_default(field, !v) {
            return Ok(());
        }
        self.scalar_tag(field);
        self.buf.push(u8::from(v));
        Ok(())
    }

    /// Writes a string or bytes field.
    pub fn put_bytes(&mut self, id: u32, v: &[u8]) -> Result<(), EncodeError> {
        if self.bytes_prefix(id, v.len())? {
            self.buf.extend_from_slice(v);
        }
        Ok(())
    }

    /// Writes a string or bytes field whose `len` bytes the caller keeps and sends itself, knowing
    /// them by `ref_id` ([`ReplyEncoder::refs`]): a large value is then never copied here.
    pub fn put_bytes_ref(&mut self, id: u32, ref_id: u32, len: usize) -> Result<(), EncodeError> {
        if self.bytes_prefix(id, len)? {
            self.refs.push(Ref { at: self.buf.len(), id: ref_id, len });
            self.held += len;
        }
        Ok(())
    }

    /// Checks a string or bytes value of `len` bytes for field `id` and writes its tag and length;
    /// false when the value is a default left out.
    fn bytes_prefix(&mut self, id: u32, len: usize) -> Result<bool, EncodeError> {
        let field = self.field(id)?;
        if !matches!(field.kind, Kind::String | Kind::Bytes) {
            return Err(EncodeError::WrongType(field.kind.name()));
        }
        if self.skip_default(field, len == 0) {
            return Ok(false);
        }
        wire::put_tag(&mut self.buf, field.number, WireType::Len);
        wire::put_varint(&mut self.buf, len as u64);
        Ok(true)
    }

    /// Opens a nested message field, or the packed array of a repeated number field. The values
    /// that follow go into it until [`ReplyEncoder::close`].
    pub fn open(&mut self, id: u32) -> Result<(), EncodeError> {
        let field = self.field(id)?;
        let packed = field.repeated && field.kind.is_scalar_number();
        if field.kind != Kind::Message && !packed {
            return Err(EncodeError::WrongType(field.kind.name()));
        }
        if self.in_packed(field) {
            return Err(EncodeError::WrongType(field.kind.name()));
        }
        wire::put_tag(&mut self.buf, field.number, WireType::Len);
        self.buf.push(0);
        self.stack.push(Open { field, len_at: self.buf.len() - 1, held_before: self.held, parent: self.current });
        if let Some(target) = field.target_message() {
            self.current = target;
        }
        Ok(())
    }

    /// Closes the innermost [`ReplyEncoder::open`] and writes its length.
    pub fn close(&mut self) -> Result<(), EncodeError> {
        let open = self.stack.pop().ok_or(EncodeError::Unbalanced)?;
        self.current = open.parent;
        let body = open.len_at + 1;
        let len = self.buf.len() - body + (self.held - open.held_before);
        let n = wire::varint_len(len as u64);
        if n > 1 {
            let old = self.buf.len();
            self.buf.resize(old + n - 1, 0);
            self.buf.copy_within(body..old, body + n - 1);
            for r in self.refs.iter_mut().filter(|r| r.at >= body) {
                r.at += n - 1;
            }
        }
        // The varint in place, without a scratch buffer: this runs once per reply.
        let mut v = len as u64;
        for b in &mut self.buf[open.len_at..open.len_at + n] {
            *b = (v as u8 & 0x7f) | if v >= 0x80 { 0x80 } else { 0 };
            v >>= 7;
        }
        // An empty packed array is no array at all.
        if len == 0 && open.field.kind != Kind::Message {
            let tag_len = wire::varint_len((u64::from(open.field.number) << 3) | 2);
            self.buf.truncate(open.len_at - tag_len);
        }
        Ok(())
    }

    /// The finished `PubSubResp` bytes.
    pub fn finish(&self) -> Result<&[u8], EncodeError> {
        self.check_finished()?;
        if self.refs.is_empty() {
            Ok(&self.buf[self.base..])
        } else {
            Err(EncodeError::Referenced)
        }
    }

    /// Checks that every nested message was closed: the message is whole, given the values held
    /// by reference.
    pub fn check_finished(&self) -> Result<(), EncodeError> {
        if self.stack.is_empty() {
            Ok(())
        } else {
            Err(EncodeError::Unbalanced)
        }
    }

    /// The values held by reference in the message being written, in order, with positions in
    /// [`ReplyEncoder::buffer`]; the caller may move them along with the bytes.
    pub fn refs_mut(&mut self) -> &mut Vec<Ref> {
        &mut self.refs
    }

    /// Total length of the values held by reference.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Where the message being written starts in [`ReplyEncoder::buffer`].
    pub fn base(&self) -> usize {
        self.base
    }

    /// The whole buffer: the bytes kept by [`ReplyEncoder::begin_after`], then the message.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes `error_resp {code, message}` as the reply member, right after `begin` / `begin_after`.
    pub fn put_error(&mut self, code: i32, message: &[u8]) {
        let ids = ErrorIds::get();
        // The ids come from the schema; these writes cannot fail.
        let _ = self.open(ids.reply);
        let _ = self.put_int(ids.code, i64::from(code));
        let _ = self.put_bytes(ids.message, message);
        let _ = self.close();
    }

    /// Encodes `error_resp {code, message}` with this sequence.
    pub fn error_reply(&mut self, sequence: i64, code: i32, message: &[u8]) -> &[u8] {
        self.begin(sequence);
        self.put_error(code, message);
        &self.buf
    }
}

struct ErrorIds {
    reply: u32,
    code: u32,
    message: u32,
}

impl ErrorIds {
    fn get() -> &'static ErrorIds {
        static IDS: std::sync::OnceLock<ErrorIds> = std::sync::OnceLock::new();
        IDS.get_or_init(|| {
            let reply = schema::response().field_by_name("error_resp").expect("PubSubResp.error_resp");
            let msg = reply.target_message().expect("ErrorResp");
            ErrorIds {
                reply: u32::from(reply.id),
                code: u32::from(msg.field_by_name("code").expect("ErrorResp.code").id),
                message: u32::from(msg.field_by_name("message").expect("ErrorResp.message").id),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message as _;

    fn field_id(msg: &str, name: &str) -> u32 {
        let m = schema::MESSAGES.iter().find(|m| m.name == msg).unwrap();
        u32::from(m.field_by_name(name).unwrap().id)
    }

    fn name_of(op: &Op) -> &'static str {
        schema::FIELDS[op.field as usize].name
    }

    fn ping(seq: i64, state: &[u8]) -> Vec<u8> {
        proto::PubSubReq { sequence: seq, req: Some(proto::pub_sub_req::Req::CmdPing(proto::CmdPing { state: state.to_vec() })) }
            .encode_to_vec()
    }

    #[test]
    fn decodes_a_ping() {
        let buf = ping(7, b"hi");
        let mut d = RequestDecoder::new();
        let r = d.decode(&buf).unwrap();
        assert_eq!(r.sequence, 7);
        assert_eq!(r.command.unwrap().name, "cmd_ping");
        assert_eq!(r.ops.len(), 1);
        let op = r.ops[0];
        assert_eq!((op.code, name_of(&op)), (op::BYTES, "state"));
        assert_eq!(&buf[op.offset..op.offset + op.len], b"hi");
    }

    #[test]
    fn absent_fields_are_defaults_and_no_command_is_none() {
        let mut d = RequestDecoder::new();
        let r = d.decode(b"").unwrap();
        assert_eq!((r.sequence, r.command.is_none(), r.ops.len()), (0, true, 0));
        let r = d.decode(&ping(0, b"")).unwrap();
        assert_eq!(r.command.unwrap().name, "cmd_ping");
        assert!(r.ops.is_empty(), "state absent: the Lua side fills the proto3 default");
    }

    #[test]
    fn int64_keeps_64_bits() {
        for seq in [i64::MAX, i64::MIN, -1, 1 << 53 | 1] {
            let mut d = RequestDecoder::new();
            assert_eq!(d.decode(&ping(seq, b"")).unwrap().sequence, seq);
        }
    }

    #[test]
    fn skips_unknown_fields_of_every_wire_type() {
        let mut buf = Vec::new();
        for (num, wt, body) in [
            (5u32, WireType::Varint, vec![0x96, 0x01]),
            (6, WireType::Fixed64, vec![1; 8]),
            (7, WireType::Len, vec![2, b'x', b'y']),
            (8, WireType::Fixed32, vec![1; 4]),
            (99, WireType::StartGroup, {
                let mut g = vec![0x08, 0x01];
                wire::put_tag(&mut g, 99, WireType::EndGroup);
                g
            }),
        ] {
            wire::put_tag(&mut buf, num, wt);
            buf.extend(body);
        }
        buf.extend(ping(3, b"s"));
        let mut d = RequestDecoder::new();
        let r = d.decode(&buf).unwrap();
        assert_eq!((r.sequence, r.command.unwrap().name, r.ops.len()), (3, "cmd_ping", 1));
    }

    #[test]
    fn cut_off_tag_at_the_end_ends_quietly() {
        // The seed's TEST 8: '!' is field 4, 64-bit; it swallows 8 bytes, then a tag varint is cut off.
        let mut d = RequestDecoder::new();
        let r = d.decode("!@#$%^&*中文".as_bytes()).unwrap();
        assert_eq!((r.sequence, r.command.is_none()), (0, true));
        let mut buf = ping(9, b"x");
        buf.push(0x80);
        assert_eq!(d.decode(&buf).unwrap().sequence, 9);
    }

    #[test]
    fn malformed_input_is_an_error_with_an_offset() {
        let mut d = RequestDecoder::new();
        let cases: &[(&[u8], &str)] = &[
            (&[0x08], "truncated varint at offset 1"),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], "invalid varint (more than 10 bytes) at offset 1"),
            (&[0x0a, 0x00], "field 'sequence' of PubSubReq expects a varint value, got length-delimited at offset 0"),
            (&[0x82, 0x02, 0x05, 0x0a], "length 5 runs past the end of the message at offset 2"),
            (&[0x82, 0x02, 0x02, 0x08, 0x01], "field 'state' of CmdPing expects a length-delimited value, got varint at offset 3"),
            (&[0x82, 0x02, 0x02, 0x0a, 0x05], "length 5 runs past the end of the message at offset 4"),
            (&[0x0f], "invalid wire type 7 at offset 0"),
            (&[0x00], "invalid field number 0 at offset 0"),
            (&[0x31, 1, 2, 3], "truncated 64-bit value at offset 1"),
            (&[0x2c], "end-group without a start-group at offset 0"),
            (&[0x2b, 0x08, 0x01], "unterminated group at offset 0"),
        ];
        for (input, want) in cases {
            assert_eq!(d.decode(input).unwrap_err().to_string(), *want, "{input:x?}");
        }
    }

    #[test]
    fn duplicate_oneof_members_last_one_wins_and_same_member_merges() {
        let mut buf = Vec::new();
        wire::put_tag(&mut buf, 31, WireType::Len);
        buf.push(0);
        buf.extend(ping(1, b"a"));
        let mut d = RequestDecoder::new();
        assert_eq!(d.decode(&buf).unwrap().command.unwrap().name, "cmd_ping");
        let mut buf2 = ping(1, b"a");
        wire::put_tag(&mut buf2, 31, WireType::Len);
        buf2.push(0);
        let r = d.decode(&buf2).unwrap();
        assert_eq!((r.command.unwrap().name, r.ops.len()), ("cmd_empty", 0));
        // cmd_kafka_fetch twice: both parts decoded, so the later topic wins in Lua and partition stays.
        let fetch = |topic: &str, partition: i32| {
            proto::PubSubReq {
                sequence: 0,
                req: Some(proto::pub_sub_req::Req::CmdKafkaFetch(proto::CmdKafkaFetch { topic: topic.into(), partition, offset: 0 })),
            }
            .encode_to_vec()
        };
        let mut buf3 = fetch("t1", 5);
        buf3.extend(fetch("t2", 0));
        let r = d.decode(&buf3).unwrap();
        let names: Vec<_> = r.ops.iter().map(name_of).collect();
        assert_eq!(names, ["topic", "partition", "topic"]);
    }

    #[test]
    fn int64_params_follow_int64_as_string() {
        let cases = [
            (0i64, None, Some(0.0)),
            (-2147483648, None, Some(-2147483648.0)),
            (4294967295, None, Some(4294967295.0)),
            (4294967296, Some("#4294967296"), None),
            (-2147483649, Some("#-2147483649"), None),
            (-1, None, Some(-1.0)),
            (i64::MAX, Some("#9223372036854775807"), None),
        ];
        for (v, text, num) in cases {
            let buf = proto::PubSubReq {
                sequence: 1,
                req: Some(proto::pub_sub_req::Req::CmdKafkaListOffset(proto::CmdKafkaListOffset {
                    topic: String::new(),
                    partition: 0,
                    timestamp: v,
                })),
            }
            .encode_to_vec();
            let mut d = RequestDecoder::new();
            let r = d.decode(&buf).unwrap();
            let ops: Vec<Op> = r.ops.to_vec();
            let text_buf = r.text.to_vec();
            if v == 0 {
                assert!(ops.is_empty());
                continue;
            }
            let op = ops[0];
            assert_eq!(name_of(&op), "timestamp");
            match (text, num) {
                (Some(t), _) => {
                    assert_eq!(op.code, op::TEXT);
                    assert_eq!(&text_buf[op.offset..op.offset + op.len], t.as_bytes());
                }
                (_, Some(n)) => assert_eq!((op.code, op.num), (op::NUMBER, n)),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Unknown field 5 nested as groups deeper than the limit.
        let mut buf = Vec::new();
        for _ in 0..40 {
            wire::put_tag(&mut buf, 5, WireType::StartGroup);
        }
        for _ in 0..40 {
            wire::put_tag(&mut buf, 5, WireType::EndGroup);
        }
        let mut d = RequestDecoder::new();
        assert!(d.decode(&buf).unwrap_err().to_string().starts_with("messages nested deeper than 32"));
    }

    /// The bytes `buf` stands for once the values held by reference are put in.
    pub(crate) fn splice(buf: &[u8], refs: &[Ref], values: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        for r in refs {
            out.extend_from_slice(&buf[pos..r.at]);
            assert_eq!(values[r.id as usize].len(), r.len);
            out.extend_from_slice(&values[r.id as usize]);
            pos = r.at;
        }
        out.extend_from_slice(&buf[pos..]);
        out
    }

    #[test]
    fn values_held_by_reference_encode_like_prost() {
        // Sizes around the varint steps of the nested lengths (128, 16384, 2^21), held or copied.
        let sizes = [0usize, 1, 100, 127, 128, 4095, 4096, 16_300, 16_383, 16_384, 70_000, 2_097_150];
        for (round, held_from) in [(0, 0usize), (1, 1), (2, 4096), (3, usize::MAX)] {
            let mut e = ReplyEncoder::new();
            let mut values = Vec::new();
            let mut msgs = Vec::new();
            e.begin(round);
            let fetch = field_id("PubSubResp", "kafka_fetch_resp");
            e.open(fetch).unwrap();
            for (i, &len) in sizes.iter().enumerate() {
                let key = vec![b'k' + (i % 10) as u8; len / 3];
                let value = vec![b'a' + (i % 20) as u8; len];
                e.open(field_id("KafkaFetchResp", "messages")).unwrap();
                e.put_int(field_id("KafkaMessage", "offset"), i as i64).unwrap();
                for (name, v) in [("key", &key), ("value", &value)] {
                    let id = field_id("KafkaMessage", name);
                    if v.len() >= held_from {
                        e.put_bytes_ref(id, values.len() as u32, v.len()).unwrap();
                        values.push(v.clone());
                    } else {
                        e.put_bytes(id, v).unwrap();
                    }
                }
                e.close().unwrap();
                msgs.push(proto::KafkaMessage { offset: i as i64, timestamp: 0, key, value });
            }
            e.close().unwrap();
            e.check_finished().unwrap();
            let want = proto::PubSubResp {
                sequence: round,
                resp: Some(proto::pub_sub_resp::Resp::KafkaFetchResp(proto::KafkaFetchResp { messages: msgs })),
            };
            let refs = e.refs_mut().clone();
            assert_eq!(e.held(), refs.iter().map(|r| r.len).sum::<usize>());
            if refs.is_empty() {
                assert_eq!(e.finish().unwrap(), want.encode_to_vec());
            } else {
                assert_eq!(e.finish(), Err(EncodeError::Referenced));
                let base = e.base();
                let got = splice(&e.buffer()[..], &refs, &values);
                assert_eq!(got[base..], want.encode_to_vec()[..], "values held from {held_from} bytes");
            }
        }
    }

    #[test]
    fn encodes_a_pong_like_prost() {
        let mut e = ReplyEncoder::new();
        e.begin(5);
        e.open(field_id("PubSubResp", "pong_resp")).unwrap();
        e.put_bytes(field_id("PongResp", "state"), b"abc").unwrap();
        e.close().unwrap();
        let want = proto::PubSubResp { sequence: 5, resp: Some(proto::pub_sub_resp::Resp::PongResp(proto::PongResp { state: b"abc".to_vec() })) };
        assert_eq!(e.finish().unwrap(), want.encode_to_vec());
    }

    #[test]
    fn encodes_errors_and_skips_defaults() {
        let mut e = ReplyEncoder::new();
        let got = e.error_reply(-3, 0, b"wrong command").to_vec();
        let want = proto::PubSubResp {
            sequence: -3,
            resp: Some(proto::pub_sub_resp::Resp::ErrorResp(proto::ErrorResp { code: 0, message: "wrong command".into() })),
        };
        assert_eq!(got, want.encode_to_vec());
        // An empty oneof member is still written.
        let got = e.error_reply(0, 0, b"").to_vec();
        assert_eq!(got, [0xfa, 0x01, 0x00]);
    }

    #[test]
    fn encodes_nested_repeated_and_long_messages() {
        let big = vec![9u8; 300];
        let mut e = ReplyEncoder::new();
        e.begin(1);
        e.open(field_id("PubSubResp", "kafka_fetch_resp")).unwrap();
        for off in [1i64, 1 << 40] {
            e.open(field_id("KafkaFetchResp", "messages")).unwrap();
            e.put_int(field_id("KafkaMessage", "offset"), off).unwrap();
            e.put_int_text(field_id("KafkaMessage", "timestamp"), b"#-5").unwrap();
            e.put_bytes(field_id("KafkaMessage", "value"), &big).unwrap();
            e.close().unwrap();
        }
        e.close().unwrap();
        let want = proto::PubSubResp {
            sequence: 1,
            resp: Some(proto::pub_sub_resp::Resp::KafkaFetchResp(proto::KafkaFetchResp {
                messages: [1i64, 1 << 40]
                    .iter()
                    .map(|&offset| proto::KafkaMessage { offset, timestamp: -5, key: vec![], value: big.clone() })
                    .collect(),
            })),
        };
        assert_eq!(e.finish().unwrap(), want.encode_to_vec());
    }

    #[test]
    fn encoder_rejects_bad_values_and_misplaced_fields() {
        let mut e = ReplyEncoder::new();
        e.begin(0);
        let code = field_id("ErrorResp", "code");
        assert_eq!(e.put_int(code, 1), Err(EncodeError::NotInMessage));
        e.open(field_id("PubSubResp", "error_resp")).unwrap();
        assert_eq!(e.put_int(code, 1 << 40), Err(EncodeError::OutOfRange("int32")));
        assert_eq!(e.put_number(code, 1.5), Err(EncodeError::OutOfRange("int32")));
        assert_eq!(e.put_bytes(code, b"x"), Err(EncodeError::WrongType("int32")));
        assert_eq!(e.put_bool(code, true), Err(EncodeError::WrongType("int32")));
        assert_eq!(e.put_int_text(code, b"12x"), Err(EncodeError::BadInteger));
        assert_eq!(e.put_int_text(code, b"+1"), Err(EncodeError::BadInteger));
        assert_eq!(e.put_int_text(code, b""), Err(EncodeError::BadInteger));
        assert_eq!(e.put_int_text(code, b"99999999999999999999999"), Err(EncodeError::OutOfRange("int32")));
        assert_eq!(e.put_number(code, f64::NAN), Err(EncodeError::OutOfRange("int32")));
        assert_eq!(e.finish(), Err(EncodeError::Unbalanced));
        e.close().unwrap();
        assert_eq!(e.close(), Err(EncodeError::Unbalanced));
        assert_eq!(e.put_int(9999, 1), Err(EncodeError::NotInMessage));
    }

    #[test]
    fn int64_text_forms_agree() {
        let off = field_id("KafkaListOffsetResp", "offset");
        let encode = |f: &dyn Fn(&mut ReplyEncoder) -> Result<(), EncodeError>| {
            let mut e = ReplyEncoder::new();
            e.begin(0);
            e.open(field_id("PubSubResp", "kafka_list_offset_resp")).unwrap();
            f(&mut e).unwrap();
            e.close().unwrap();
            e.finish().unwrap().to_vec()
        };
        let a = encode(&|e| e.put_int(off, -1));
        assert_eq!(a, encode(&|e| e.put_int_text(off, b"-1")));
        assert_eq!(a, encode(&|e| e.put_int_text(off, b"#-1")));
        assert_eq!(a, encode(&|e| e.put_number(off, -1.0)));
        let b = encode(&|e| e.put_int(off, i64::MAX));
        assert_eq!(b, encode(&|e| e.put_int_text(off, b"#9223372036854775807")));
    }
}
