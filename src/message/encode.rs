//! Reply fields in, `PubSubResp` bytes out, driven by a [`Schema`].
//!
//! The encoder writes into a buffer it owns for the time of one message. A caller that keeps its
//! output elsewhere lends it that buffer ([`ReplyEncoder::begin_in`]) and takes it back with the
//! message appended ([`ReplyEncoder::take`]): a reply is encoded where it is sent from, without
//! either side editing the other's state.

use std::sync::Arc;

use crate::schema::{Field, Kind, Schema};
use crate::wire::{self, WireType};

/// A reply that could not be encoded. The Lua side names the field; this says what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The field id does not exist, or does not belong to the message being written.
    #[error("is not a field of this message")]
    NotInMessage,
    /// A value of the wrong type for the field.
    #[error("has a value of the wrong type for a {0} field")]
    WrongType(&'static str),
    /// An integer out of the range of the field's type, or a number with a fractional part.
    #[error("has a value out of range for a {0} field")]
    OutOfRange(&'static str),
    /// An integer given as a string that does not parse.
    #[error("has a string that is not an integer")]
    BadInteger,
    /// `close` without `open`, or `finish` with a message still open.
    #[error("is in unbalanced nested messages")]
    Unbalanced,
    /// `finish` of a message holding values by reference, whose bytes the encoder does not have.
    #[error("holds values by reference")]
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
    /// Index of the one byte reserved for the length.
    len_at: usize,
    /// Bytes held by reference before this message was opened.
    held_before: usize,
    /// The field's number and id.
    number: u32,
    id: u16,
    /// The index of the message whose fields were being written before this one was opened.
    parent: u16,
    /// A packed array of numbers, not a nested message.
    packed: bool,
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
    /// The index of the message whose fields are being written.
    current: u16,
    schema: Arc<Schema>,
}

/// A message taken out of the encoder with [`ReplyEncoder::take`].
#[derive(Debug)]
pub struct Taken<'a> {
    /// The buffer lent by [`ReplyEncoder::begin_in`], with the message appended.
    pub buf: Vec<u8>,
    /// Where the message starts in `buf`.
    pub base: usize,
    /// Total length of the values held by reference in it.
    pub held: usize,
    /// Those values, in order, with their positions in `buf`.
    pub refs: std::vec::Drain<'a, Ref>,
}

impl ReplyEncoder {
    /// An encoder of replies of `schema`, with an empty buffer.
    pub fn new(schema: Arc<Schema>) -> ReplyEncoder {
        let current = schema.response().index;
        ReplyEncoder { buf: Vec::new(), base: 0, refs: Vec::new(), held: 0, stack: Vec::new(), current, schema }
    }

    /// The schema replies are encoded with.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Starts a `PubSubResp` with this sequence in the encoder's own buffer, dropping anything
    /// written before.
    pub fn begin(&mut self, sequence: i64) {
        self.buf.clear();
        self.start(sequence);
    }

    /// Starts a `PubSubResp` with this sequence after the bytes of `buf`, which stay as they are
    /// and come back with the message from [`ReplyEncoder::take`] (or [`ReplyEncoder::abandon`]).
    pub fn begin_in(&mut self, buf: Vec<u8>, sequence: i64) {
        self.buf = buf;
        self.start(sequence);
    }

    fn start(&mut self, sequence: i64) {
        self.base = self.buf.len();
        self.refs.clear();
        self.held = 0;
        self.stack.clear();
        self.current = self.schema.response().index;
        if sequence != 0 {
            // Tag and varint in one append (one capacity check, not one per byte).
            let mut b = [0u8; 11];
            b[0] = 0x08; // field 1, varint
            let n = 1 + varint_into(&mut b[1..], sequence as u64);
            self.buf.extend_from_slice(&b[..n]);
        }
    }

    /// The field with this id, if a value for it may be written now: a field of the message being
    /// written, or, inside an open packed array, that array's field only.
    #[inline]
    fn field(&self, id: u32) -> Result<Field, EncodeError> {
        let field = self.schema.field(id).ok_or(EncodeError::NotInMessage)?;
        let allowed = match self.stack.last() {
            Some(open) if open.packed => open.id == field.id,
            _ => field.owner == self.current,
        };
        if allowed {
            Ok(field)
        } else {
            Err(EncodeError::NotInMessage)
        }
    }

    /// True when values go into an open packed array: no tag before each one.
    fn in_packed(&self, field: Field) -> bool {
        self.stack.last().is_some_and(|o| o.packed && o.id == field.id)
    }

    fn skip_default(&self, field: Field, is_default: bool) -> bool {
        is_default && !field.oneof && !field.repeated
    }

    fn scalar_tag(&mut self, field: Field) {
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
        let packed = field.kind != Kind::Message;
        let len_at = self.buf.len() - 1;
        self.stack.push(Open { len_at, held_before: self.held, number: field.number, id: field.id, parent: self.current, packed });
        if let Some(target) = field.target {
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
        if len == 0 && open.packed {
            let tag_len = wire::varint_len((u64::from(open.number) << 3) | 2);
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

    /// Hands back the buffer lent by [`ReplyEncoder::begin_in`] with the finished message
    /// appended, and the values it holds by reference; the encoder is left without a buffer.
    pub fn take(&mut self) -> Result<Taken<'_>, EncodeError> {
        self.check_finished()?;
        Ok(Taken { buf: std::mem::take(&mut self.buf), base: self.base, held: self.held, refs: self.refs.drain(..) })
    }

    /// Hands back the buffer lent by [`ReplyEncoder::begin_in`] as it was lent, dropping the
    /// message begun in it.
    pub fn abandon(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.truncate(self.base);
        self.base = 0;
        self.refs.clear();
        self.held = 0;
        self.stack.clear();
        buf
    }

    /// True while the encoder holds a lent buffer or bytes of its own.
    pub fn is_holding(&self) -> bool {
        self.buf.capacity() > 0
    }

    /// Writes `error_resp {code, message}` as the reply member, right after `begin` / `begin_after`.
    pub fn put_error(&mut self, code: i32, message: &[u8]) {
        let k = *self.schema.known();
        // The ids come from the schema, which checked their types; these writes cannot fail.
        let _ = self.open(u32::from(k.error));
        let _ = self.put_int(u32::from(k.error_code), i64::from(code));
        let _ = self.put_bytes(u32::from(k.error_message), message);
        let _ = self.close();
    }

    /// Writes `pong_resp {state}` as the reply member, right after `begin` / `begin_in`.
    #[inline]
    pub fn put_pong(&mut self, state: &[u8]) {
        let k = *self.schema.known();
        if !self.stack.is_empty() || self.current != self.schema.response().index {
            // Not right after begin: the checked way, which refuses it.
            let _ = self.open(u32::from(k.pong));
            let _ = self.put_bytes(u32::from(k.pong_state), state);
            let _ = self.close();
            return;
        }
        // The bytes open / put_bytes / close write, sized up front: this is every default pong.
        let (Some(pong), Some(field)) = (self.schema.field(u32::from(k.pong)), self.schema.field(u32::from(k.pong_state))) else {
            return;
        };
        let len_key = |f: Field| (u64::from(f.number) << 3) | u64::from(WireType::Len.bits());
        let mut head = [0u8; 40];
        let mut n = varint_into(&mut head, len_key(pong));
        if state.is_empty() {
            // An empty state is a default, left out: pong_resp {}.
            head[n] = 0;
            self.buf.extend_from_slice(&head[..n + 1]);
            return;
        }
        let state_key = len_key(field);
        let inner = wire::varint_len(state_key) + wire::varint_len(state.len() as u64) + state.len();
        n += varint_into(&mut head[n..], inner as u64);
        n += varint_into(&mut head[n..], state_key);
        n += varint_into(&mut head[n..], state.len() as u64);
        self.buf.reserve(n + state.len());
        self.buf.extend_from_slice(&head[..n]);
        self.buf.extend_from_slice(state);
    }

    /// Encodes `error_resp {code, message}` with this sequence.
    pub fn error_reply(&mut self, sequence: i64, code: i32, message: &[u8]) -> &[u8] {
        self.begin(sequence);
        self.put_error(code, message);
        &self.buf
    }
}

/// Writes the varint of `v` at the start of `out` (at least 10 bytes long); returns its length.
#[inline]
fn varint_into(out: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::testing::field_id;
    use crate::proto;
    use prost::Message as _;

    fn encoder() -> ReplyEncoder {
        ReplyEncoder::new(Schema::builtin())
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
            let mut e = encoder();
            let mut values = Vec::new();
            let mut msgs = Vec::new();
            e.begin_in(b"kept".to_vec(), round);
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
            if values.is_empty() {
                assert_eq!(e.finish().unwrap(), want.encode_to_vec());
            } else {
                assert_eq!(e.finish(), Err(EncodeError::Referenced));
            }
            let Taken { buf, base, held, refs } = e.take().unwrap();
            let refs: Vec<Ref> = refs.collect();
            assert_eq!(held, refs.iter().map(|r| r.len).sum::<usize>());
            assert_eq!((base, &buf[..4]), (4, &b"kept"[..]), "the lent bytes come back as they were");
            let got = splice(&buf, &refs, &values);
            assert_eq!(got[base..], want.encode_to_vec()[..], "values held from {held_from} bytes");
            assert!(!e.is_holding(), "the buffer went back with the message");
        }
    }

    #[test]
    fn encodes_a_pong_like_prost() {
        let mut e = encoder();
        e.begin(5);
        e.open(field_id("PubSubResp", "pong_resp")).unwrap();
        e.put_bytes(field_id("PongResp", "state"), b"abc").unwrap();
        e.close().unwrap();
        let want = proto::PubSubResp { sequence: 5, resp: Some(proto::pub_sub_resp::Resp::PongResp(proto::PongResp { state: b"abc".to_vec() })) };
        assert_eq!(e.finish().unwrap(), want.encode_to_vec());
    }

    #[test]
    fn put_pong_writes_what_the_field_by_field_calls_write() {
        for len in [0usize, 1, 100, 125, 126, 127, 128, 16_380, 16_384, 70_000] {
            for seq in [0i64, 1, -1, 300, i64::MAX] {
                let state = vec![b'p'; len];
                let mut direct = encoder();
                direct.begin(seq);
                direct.put_pong(&state);
                let mut walked = encoder();
                walked.begin(seq);
                walked.open(field_id("PubSubResp", "pong_resp")).unwrap();
                walked.put_bytes(field_id("PongResp", "state"), &state).unwrap();
                walked.close().unwrap();
                assert_eq!(direct.finish().unwrap(), walked.finish().unwrap(), "state of {len} bytes, sequence {seq}");
                let want = proto::PubSubResp { sequence: seq, resp: Some(proto::pub_sub_resp::Resp::PongResp(proto::PongResp { state })) };
                assert_eq!(direct.finish().unwrap(), want.encode_to_vec());
            }
        }
        // Inside an open message it is refused as open() refuses it: nothing written.
        let mut e = encoder();
        e.begin(0);
        e.open(field_id("PubSubResp", "error_resp")).unwrap();
        let before = e.buf.len();
        e.put_pong(b"x");
        assert_eq!(e.buf.len(), before);
    }

    #[test]
    fn encodes_errors_and_skips_defaults() {
        let mut e = encoder();
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
        let mut e = encoder();
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
        let mut e = encoder();
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
            let mut e = encoder();
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
