//! `PubSubReq` bytes in, a flat list of [`Op`]s out, driven by a [`Schema`].

use std::fmt;
use std::sync::Arc;

use super::op::{self, Op, NUMBER_MAX, NUMBER_MIN};
use crate::schema::{Field, Kind, Message, Schema};
use crate::wire::{self, VarintError, WireType};

/// Deepest message nesting accepted in a request (the request itself is depth 0).
pub const MAX_DEPTH: usize = 32;

/// A decoded `PubSubReq`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request's sequence, all 64 bits.
    pub sequence: i64,
    /// The command (a `oneof` member of `PubSubReq`), or `None` for a request without one.
    pub command: Option<Field>,
    /// The ops that build the command's parameter table.
    pub ops: &'a [Op],
    /// Where [`op::TEXT`] values point.
    pub text: &'a [u8],
}

/// A request that could not be decoded. Small and `Copy`, so that the decoder's happy path pays
/// nothing for it; a field it names is named by id, and [`DecodeError::named`] words it with the
/// schema's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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

    /// The error in words, with the names of the fields of `schema` (the decoder's).
    pub fn named<'a>(&'a self, schema: &'a Schema) -> impl fmt::Display + 'a {
        Named { error: self, schema }
    }
}

struct Named<'a> {
    error: &'a DecodeError,
    schema: &'a Schema,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error.kind {
            DecodeErrorKind::WrongWireType { field, expected, got } => {
                let s = self.schema;
                let owner = s.field(u32::from(field)).map_or("?", |x| s.message_name(s.message(x.owner)));
                write!(
                    f,
                    "field '{}' of {owner} expects a {} value, got {} at offset {}",
                    s.field_name(field),
                    expected.name(),
                    got.name(),
                    self.error.offset
                )
            }
            _ => write!(f, "{}", self.error),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeErrorKind {
    TruncatedVarint,
    OverlongVarint,
    BadWireType(u64),
    BadFieldNumber(u64),
    WrongWireType { field: u16, expected: WireType, got: WireType },
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
            WrongWireType { field, expected, got } => {
                write!(f, "field #{field} expects a {} value, got {}", expected.name(), got.name())
            }
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
#[derive(Debug)]
pub struct RequestDecoder {
    schema: Arc<Schema>,
    out: Output,
    parts: Vec<(usize, usize)>,
    ping: PingShape,
}

/// The wire shape of the commonest request, `{sequence, cmd_ping = {state}}` in field order, as
/// keys of the schema: such a request is decoded without the general walk (and its field lookups),
/// to exactly the ops the walk would give. Anything else takes the walk.
#[derive(Debug, Clone, Copy)]
struct PingShape {
    command: Field,
    /// The keys (tag varints) of `cmd_ping` and of its `state`, and that field's id.
    command_key: u64,
    state_key: u64,
    state: u16,
}

impl PingShape {
    fn of(schema: &Schema) -> PingShape {
        let known = schema.known();
        let command = schema.field(u32::from(known.ping)).expect("known ids are fields");
        let state = schema.field(u32::from(known.ping_state)).expect("known ids are fields");
        let key = |f: Field| (u64::from(f.number) << 3) | u64::from(WireType::Len.bits());
        PingShape { command, command_key: key(command), state_key: key(state), state: state.id }
    }
}

/// What a decode produces: the ops, and the text that [`op::TEXT`] values point into.
#[derive(Debug, Default)]
struct Output {
    ops: Vec<Op>,
    text: Vec<u8>,
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


impl RequestDecoder {
    /// A decoder of requests of `schema`, with empty buffers.
    pub fn new(schema: Arc<Schema>) -> RequestDecoder {
        let ping = PingShape::of(&schema);
        RequestDecoder { schema, out: Output::default(), parts: Vec::new(), ping }
    }

    /// The schema requests are decoded with.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The ops and text of the last [`RequestDecoder::decode`] that succeeded.
    pub fn last(&self) -> (&[Op], &[u8]) {
        (&self.out.ops, &self.out.text)
    }

    /// Decodes one `PubSubReq`. The ops of the result point into `buf` and into this decoder.
    pub fn decode<'a>(&'a mut self, buf: &[u8]) -> Result<Request<'a>, DecodeError> {
        if let Some(sequence) = self.decode_ping(buf) {
            return Ok(Request { sequence, command: Some(self.ping.command), ops: &self.out.ops, text: &self.out.text });
        }
        self.walk(buf)
    }

    /// [`RequestDecoder::decode`] by the general walk of the schema, for any request.
    fn walk<'a>(&'a mut self, buf: &[u8]) -> Result<Request<'a>, DecodeError> {
        let RequestDecoder { schema, out, parts, .. } = self;
        let schema: &Schema = schema;
        out.ops.clear();
        out.text.clear();
        parts.clear();
        let req = schema.request();
        let end = buf.len();
        let mut pos = 0;
        let mut sequence = 0i64;
        let mut command: Option<Field> = None;
        // The command's bytes: almost always one range; more when the member is repeated (merged).
        let mut first: (usize, usize) = (0, 0);
        while let Some(tag) = next_tag(buf, &mut pos, end)? {
            let Some(field) = schema.field_ref_by_number(&req, tag.number as u32) else {
                skip(buf, &mut pos, end, &tag, 0)?;
                continue;
            };
            check_wire_type(field, &tag)?;
            if field.oneof {
                let range = read_len(buf, &mut pos, end)?;
                // Another member of the oneof replaces the earlier one; the same member again is
                // merged into it, as protobuf parsers do.
                if command.is_some_and(|c| c.id == field.id) {
                    parts.push(range);
                } else {
                    parts.clear();
                    first = range;
                    command = Some(*field);
                }
            } else if field.number == 1 {
                sequence = read_varint_at(buf, &mut pos, end)? as i64;
            } else {
                // A basic-information field this module does not use yet: validate and drop.
                skip(buf, &mut pos, end, &tag, 0)?;
            }
        }
        if let Some(cmd) = command {
            let msg = schema.target(cmd).expect("commands are messages");
            out.fields(schema, buf, msg, first.0, first.1, 1)?;
            for part in parts.iter() {
                out.fields(schema, buf, msg, part.0, part.1, 1)?;
            }
        }
        Ok(Request { sequence, command, ops: &self.out.ops, text: &self.out.text })
    }
}

/// A varint, its one-byte case inline (keys and short lengths); `None` for a bad one.
#[inline(always)]
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    match buf.get(*pos) {
        Some(&b) if b < 0x80 => {
            *pos += 1;
            Some(u64::from(b))
        }
        _ => wire::read_varint(buf, pos).ok(),
    }
}

impl RequestDecoder {
    /// Decodes `buf` if it is exactly an optional `sequence` followed by a `cmd_ping` holding at
    /// most its `state` (the way clients write a ping), leaving the ops in `out` and returning the
    /// sequence; `None` (and nothing decided) for any other bytes, valid or not.
    #[inline]
    fn decode_ping(&mut self, buf: &[u8]) -> Option<i64> {
        let shape = self.ping;
        let mut pos = 0;
        let mut sequence = 0i64;
        // Field 1 is the schema's `int64 sequence` (checked when the schema was made).
        if buf.first() == Some(&0x08) {
            pos = 1;
            sequence = varint(buf, &mut pos)? as i64;
        }
        if varint(buf, &mut pos)? != shape.command_key {
            return None;
        }
        let len = varint(buf, &mut pos)?;
        if len != (buf.len() - pos) as u64 {
            return None;
        }
        self.out.ops.clear();
        self.out.text.clear();
        self.parts.clear();
        if pos < buf.len() {
            if varint(buf, &mut pos)? != shape.state_key {
                return None;
            }
            let len = varint(buf, &mut pos)?;
            if len != (buf.len() - pos) as u64 {
                return None;
            }
            self.out.ops.push(Op::bytes(op::BYTES, u32::from(shape.state), pos, buf.len() - pos));
        }
        Some(sequence)
    }
}

impl Output {
    /// Emits the ops of the fields of `msg` found in `buf[pos..end]`.
    fn fields(&mut self, schema: &Schema, buf: &[u8], msg: Message, mut pos: usize, end: usize, depth: usize) -> Result<(), DecodeError> {
        while let Some(tag) = next_tag(buf, &mut pos, end)? {
            let Some(field) = schema.field_ref_by_number(&msg, tag.number as u32) else {
                skip(buf, &mut pos, end, &tag, depth)?;
                continue;
            };
            let flag = if field.repeated { op::REPEATED } else { 0 };
            let id = u32::from(field.id);
            if field.repeated && field.kind.is_scalar_number() && tag.wt == WireType::Len {
                let (start, stop) = read_len(buf, &mut pos, end)?;
                self.packed(buf, *field, start, stop)?;
                continue;
            }
            check_wire_type(field, &tag)?;
            match field.kind {
                Kind::Message => {
                    if depth >= MAX_DEPTH {
                        return err(DecodeErrorKind::TooDeep, tag.at);
                    }
                    let (start, stop) = read_len(buf, &mut pos, end)?;
                    let target = schema.target(*field).expect("message fields have a target");
                    self.ops.push(Op::number(op::OPEN | flag, id, 0.0));
                    self.fields(schema, buf, target, start, stop, depth + 1)?;
                    self.ops.push(Op::number(op::CLOSE, id, 0.0));
                }
                Kind::String | Kind::Bytes => {
                    let (start, stop) = read_len(buf, &mut pos, end)?;
                    self.ops.push(Op::bytes(op::BYTES | flag, id, start, stop - start));
                }
                _ => {
                    let v = scalar(buf, field.kind, tag.wt, &mut pos, end)?;
                    self.push_scalar(*field, v);
                }
            }
        }
        Ok(())
    }

    fn packed(&mut self, buf: &[u8], field: Field, mut pos: usize, end: usize) -> Result<(), DecodeError> {
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
            let v = scalar(buf, field.kind, wt, &mut pos, end)?;
            self.push_scalar(field, v);
        }
        Ok(())
    }

    fn push_scalar(&mut self, field: Field, v: Scalar) {
        let flag = if field.repeated { op::REPEATED } else { 0 };
        let id = u32::from(field.id);
        let op = match v {
            Scalar::Number(n) => Op::number(op::NUMBER | flag, id, n),
            Scalar::Bool(b) => Op::number(op::BOOL | flag, id, if b { 1.0 } else { 0.0 }),
            Scalar::Signed(n) if (NUMBER_MIN..=NUMBER_MAX).contains(&n) => Op::number(op::NUMBER | flag, id, n as f64),
            Scalar::Unsigned(n) if n <= NUMBER_MAX as u64 => Op::number(op::NUMBER | flag, id, n as f64),
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
        Op::bytes(op::TEXT | flag, id, offset, self.text.len() - offset)
    }
}

#[inline]
fn scalar(buf: &[u8], kind: Kind, wt: WireType, pos: &mut usize, end: usize) -> Result<Scalar, DecodeError> {
    Ok(match wt {
        WireType::Varint => scalar_from_varint(kind, read_varint_at(buf, pos, end)?),
        WireType::Fixed32 => scalar_from_fixed32(kind, read_fixed::<4>(buf, pos, end, wt)?),
        _ => scalar_from_fixed64(kind, read_fixed::<8>(buf, pos, end, wt)?),
    })
}

#[inline]
fn check_wire_type(field: &Field, tag: &Tag) -> Result<(), DecodeError> {
    let expected = field.kind.wire_type();
    if tag.wt != expected {
        return err(DecodeErrorKind::WrongWireType { field: field.id, expected, got: tag.wt }, tag.at);
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::testing::{name_of, ping};
    use crate::proto;
    use prost::Message as _;

    fn decoder() -> RequestDecoder {
        RequestDecoder::new(Schema::builtin())
    }

    fn command_name(r: &Request<'_>) -> &'static str {
        name_of(u32::from(r.command.unwrap().id))
    }

    #[test]
    fn decodes_a_ping() {
        let buf = ping(7, b"hi");
        let mut d = decoder();
        let r = d.decode(&buf).unwrap();
        assert_eq!(r.sequence, 7);
        assert_eq!(command_name(&r), "cmd_ping");
        assert_eq!(r.ops.len(), 1);
        let op = r.ops[0];
        assert_eq!((op.code, name_of(op.field)), (op::BYTES, "state"));
        assert_eq!(&buf[op.offset..op.offset + op.len], b"hi");
    }

    #[test]
    fn absent_fields_are_defaults_and_no_command_is_none() {
        let mut d = decoder();
        let r = d.decode(b"").unwrap();
        assert_eq!((r.sequence, r.command.is_none(), r.ops.len()), (0, true, 0));
        let r = d.decode(&ping(0, b"")).unwrap();
        assert_eq!(command_name(&r), "cmd_ping");
        assert!(r.ops.is_empty(), "state absent: the Lua side fills the proto3 default");
    }

    #[test]
    fn int64_keeps_64_bits() {
        for seq in [i64::MAX, i64::MIN, -1, 1 << 53 | 1] {
            let mut d = decoder();
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
        let mut d = decoder();
        let r = d.decode(&buf).unwrap();
        assert_eq!((r.sequence, command_name(&r), r.ops.len()), (3, "cmd_ping", 1));
    }

    #[test]
    fn cut_off_tag_at_the_end_ends_quietly() {
        // The seed's TEST 8: '!' is field 4, 64-bit; it swallows 8 bytes, then a tag varint is cut off.
        let mut d = decoder();
        let r = d.decode("!@#$%^&*中文".as_bytes()).unwrap();
        assert_eq!((r.sequence, r.command.is_none()), (0, true));
        let mut buf = ping(9, b"x");
        buf.push(0x80);
        assert_eq!(d.decode(&buf).unwrap().sequence, 9);
    }

    #[test]
    fn malformed_input_is_an_error_with_an_offset() {
        let mut d = decoder();
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
            let e = d.decode(input).unwrap_err();
            assert_eq!(e.named(&Schema::builtin()).to_string(), *want, "{input:x?}");
        }
    }

    #[test]
    fn duplicate_oneof_members_last_one_wins_and_same_member_merges() {
        let mut buf = Vec::new();
        wire::put_tag(&mut buf, 31, WireType::Len);
        buf.push(0);
        buf.extend(ping(1, b"a"));
        let mut d = decoder();
        assert_eq!(command_name(&d.decode(&buf).unwrap()), "cmd_ping");
        let mut buf2 = ping(1, b"a");
        wire::put_tag(&mut buf2, 31, WireType::Len);
        buf2.push(0);
        let r = d.decode(&buf2).unwrap();
        assert_eq!((command_name(&r), r.ops.len()), ("cmd_empty", 0));
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
        let names: Vec<_> = r.ops.iter().map(|o| name_of(o.field)).collect();
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
            let mut d = decoder();
            let r = d.decode(&buf).unwrap();
            let ops: Vec<Op> = r.ops.to_vec();
            let text_buf = r.text.to_vec();
            if v == 0 {
                assert!(ops.is_empty());
                continue;
            }
            let op = ops[0];
            assert_eq!(name_of(op.field), "timestamp");
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

    /// Requests near the shape of a ping: a sequence, `cmd_ping` (field 32) and `state` (field
    /// 1), each key, length and value possibly wrong, cut or followed by more.
    fn near_pings() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let bytes = || proptest::collection::vec(any::<u8>(), 0..4);
        let choice = |good: Vec<u8>| prop_oneof![4 => Just(good), 1 => proptest::collection::vec(any::<u8>(), 0..3)];
        (
            proptest::option::of(any::<i64>()),
            choice(vec![0x82, 0x02]),
            proptest::option::of((choice(vec![0x0a]), proptest::collection::vec(any::<u8>(), 0..20))),
            any::<i8>(),
            any::<i8>(),
            bytes(),
        )
            .prop_map(|(seq, ping_key, state, outer_skew, inner_skew, tail)| {
                let mut inner = Vec::new();
                if let Some((key, value)) = state {
                    inner.extend(key);
                    wire::put_varint(&mut inner, (value.len() as i64 + i64::from(inner_skew % 2)).max(0) as u64);
                    inner.extend(value);
                }
                let mut buf = Vec::new();
                if let Some(seq) = seq {
                    buf.push(0x08);
                    wire::put_varint(&mut buf, seq as u64);
                }
                buf.extend(ping_key);
                wire::put_varint(&mut buf, (inner.len() as i64 + i64::from(outer_skew % 2)).max(0) as u64);
                buf.extend(inner);
                buf.extend(tail);
                buf
            })
    }

    /// A decode's result as values: sequence, command id, ops, text.
    type Outcome = Result<(i64, Option<u16>, Vec<Op>, Vec<u8>), DecodeError>;

    fn outcome(r: Result<Request<'_>, DecodeError>) -> Outcome {
        r.map(|r| (r.sequence, r.command.map(|c| c.id), r.ops.to_vec(), r.text.to_vec()))
    }

    proptest::proptest! {
        #[test]
        fn the_ping_shortcut_decodes_as_the_walk_does(buf in near_pings()) {
            let (mut fast, mut walk) = (decoder(), decoder());
            proptest::prop_assert_eq!(outcome(fast.decode(&buf)), outcome(walk.walk(&buf)));
        }
    }

    #[test]
    fn pings_of_the_usual_shape_take_the_shortcut() {
        let mut d = decoder();
        for (seq, state) in [(0i64, &b""[..]), (1, b"x"), (-1, b"hello"), (i64::MAX, &[7u8; 300][..])] {
            let buf = ping(seq, state);
            assert_eq!(d.decode_ping(&buf), Some(seq), "{buf:x?}");
            let ops = d.last().0.to_vec();
            assert_eq!(outcome(d.walk(&buf)).unwrap().2, ops);
        }
        assert_eq!(d.decode_ping(b""), None);
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
        let mut d = decoder();
        assert!(d.decode(&buf).unwrap_err().to_string().starts_with("messages nested deeper than 32"));
    }

}
