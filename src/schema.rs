//! The shape of the pubsub proto as a value: messages, their fields, and the few ids the core needs.
//!
//! The dynamic codec in [`crate::message`] walks a [`Schema`] instead of generated structs, so it can
//! hand any command to Lua field by field and encode any reply the proto defines. The built-in
//! schema ([`Schema::builtin`]) is `proto/pubsub.proto` as `build.rs` compiled it; others are made
//! from a file descriptor set ([`Schema::from_descriptor`]), e.g. one compiled at run time. The Lua
//! side does not rebuild any of it: it receives [`Schema::lua_source`], tables derived here.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::FileDescriptorSet;

/// The protobuf type of a field, as the codec treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `int32`: varint, negative values sign-extended to 64 bits.
    Int32,
    /// `int64`: varint.
    Int64,
    /// `uint32`: varint.
    Uint32,
    /// `uint64`: varint.
    Uint64,
    /// `sint32`: zigzag varint.
    Sint32,
    /// `sint64`: zigzag varint.
    Sint64,
    /// `fixed32`: 4 bytes little-endian.
    Fixed32,
    /// `fixed64`: 8 bytes little-endian.
    Fixed64,
    /// `sfixed32`: 4 bytes little-endian, signed.
    Sfixed32,
    /// `sfixed64`: 8 bytes little-endian, signed.
    Sfixed64,
    /// `bool`: varint 0 or 1.
    Bool,
    /// An enum: varint, handled as its number.
    Enum,
    /// `float`: 4 bytes IEEE 754.
    Float,
    /// `double`: 8 bytes IEEE 754.
    Double,
    /// `string`: length-delimited (not checked for UTF-8, as lua-protobuf does not).
    String,
    /// `bytes`: length-delimited.
    Bytes,
    /// A nested message: length-delimited.
    Message,
}

impl Kind {
    /// The wire type a singular field of this kind is written with.
    pub fn wire_type(self) -> crate::wire::WireType {
        use crate::wire::WireType;
        match self {
            Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => WireType::Fixed32,
            Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => WireType::Fixed64,
            Kind::String | Kind::Bytes | Kind::Message => WireType::Len,
            _ => WireType::Varint,
        }
    }

    /// True for 64-bit integers, which Lua sees as numbers or `"#<digits>"` strings.
    pub fn is_64bit_integer(self) -> bool {
        matches!(self, Kind::Int64 | Kind::Uint64 | Kind::Sint64 | Kind::Fixed64 | Kind::Sfixed64)
    }

    /// True for the integer kinds, enums included: they take integers only.
    pub fn is_integer(self) -> bool {
        self.is_scalar_number() && !matches!(self, Kind::Bool | Kind::Float | Kind::Double)
    }

    /// True for the kinds a Lua number is written to: integers, enums, floats and doubles.
    pub fn is_number(self) -> bool {
        self.is_scalar_number() && self != Kind::Bool
    }

    /// True for kinds that may be packed when repeated.
    pub fn is_scalar_number(self) -> bool {
        !matches!(self, Kind::String | Kind::Bytes | Kind::Message)
    }

    /// The proto name of the kind, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Int32 => "int32",
            Kind::Int64 => "int64",
            Kind::Uint32 => "uint32",
            Kind::Uint64 => "uint64",
            Kind::Sint32 => "sint32",
            Kind::Sint64 => "sint64",
            Kind::Fixed32 => "fixed32",
            Kind::Fixed64 => "fixed64",
            Kind::Sfixed32 => "sfixed32",
            Kind::Sfixed64 => "sfixed64",
            Kind::Bool => "bool",
            Kind::Enum => "enum",
            Kind::Float => "float",
            Kind::Double => "double",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Message => "message",
        }
    }

    fn of(t: Type) -> Option<Kind> {
        Some(match t {
            Type::Int32 => Kind::Int32,
            Type::Int64 => Kind::Int64,
            Type::Uint32 => Kind::Uint32,
            Type::Uint64 => Kind::Uint64,
            Type::Sint32 => Kind::Sint32,
            Type::Sint64 => Kind::Sint64,
            Type::Fixed32 => Kind::Fixed32,
            Type::Fixed64 => Kind::Fixed64,
            Type::Sfixed32 => Kind::Sfixed32,
            Type::Sfixed64 => Kind::Sfixed64,
            Type::Bool => Kind::Bool,
            Type::Enum => Kind::Enum,
            Type::Float => Kind::Float,
            Type::Double => Kind::Double,
            Type::String => Kind::String,
            Type::Bytes => Kind::Bytes,
            Type::Message => Kind::Message,
            Type::Group => return None,
        })
    }
}

/// One field of one message. Small and `Copy`: the codec looks fields up on every value. Its name
/// is [`Schema::field_name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Index of this field in the schema; also the key Lua uses to name it.
    pub id: u16,
    /// Index of the message that declares it.
    pub owner: u16,
    /// The field number on the wire.
    pub number: u32,
    /// The type.
    pub kind: Kind,
    /// Declared `repeated`.
    pub repeated: bool,
    /// Member of a `oneof`: always written when set, even to a default value.
    pub oneof: bool,
    /// For [`Kind::Message`], the index of the message type; `None` otherwise.
    pub target: Option<u16>,
}

/// One message type: its fields are `first..first + count` of the schema's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its index in the schema.
    pub index: u16,
    /// Index of its first field.
    pub first: u16,
    /// Number of fields.
    pub count: u16,
    /// Where its field-by-number table starts in the schema's (see [`DIRECT_NUMBERS`]).
    numbers: u32,
}

/// Field numbers below this are found through a table per message (most are: APISIX's go up to
/// 34); larger ones by a search of the message's fields.
pub const DIRECT_NUMBERS: u32 = 64;
/// An empty slot of a field-by-number table.
const NO_FIELD: u16 = u16::MAX;

/// Field ids the core uses without a handler: the default `cmd_ping` echo and `error_resp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownIds {
    /// `PubSubReq.cmd_ping`.
    pub ping: u16,
    /// `CmdPing.state`.
    pub ping_state: u16,
    /// `PubSubResp.pong_resp`.
    pub pong: u16,
    /// `PongResp.state`.
    pub pong_state: u16,
    /// `PubSubResp.error_resp`.
    pub error: u16,
    /// `ErrorResp.code`.
    pub error_code: u16,
    /// `ErrorResp.message`.
    pub error_message: u16,
}

/// A proto that cannot serve as the pubsub schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(String);

impl SchemaError {
    /// An error with these words.
    pub fn new(words: String) -> SchemaError {
        SchemaError(words)
    }
}

/// The messages and fields of a pubsub proto.
#[derive(Debug)]
pub struct Schema {
    fields: Vec<Field>,
    field_names: Vec<String>,
    messages: Vec<Message>,
    message_names: Vec<String>,
    /// [`DIRECT_NUMBERS`] slots per message: the id of its field with that number, or `NO_FIELD`.
    by_number: Vec<u16>,
    request: u16,
    response: u16,
    known: KnownIds,
}

/// `proto/pubsub.proto` as `build.rs` compiled it, an encoded `FileDescriptorSet`.
pub(crate) const BUILTIN_DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pubsub.fds"));
/// The name of the built-in file in that set.
const BUILTIN_FILE: &str = "proto/pubsub.proto";

impl Schema {
    /// The schema of `proto/pubsub.proto`, made once per process and shared.
    pub fn builtin() -> Arc<Schema> {
        Schema::builtin_ref().clone()
    }

    /// [`Schema::builtin`], borrowed for the life of the process.
    pub fn builtin_ref() -> &'static Arc<Schema> {
        static BUILTIN: OnceLock<Arc<Schema>> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let fds = FileDescriptorSet::decode(BUILTIN_DESCRIPTOR).expect("build.rs wrote a valid descriptor set");
            Arc::new(Schema::from_descriptor(&fds, BUILTIN_FILE).expect("proto/pubsub.proto is a pubsub schema"))
        })
    }

    /// The built-in schema with the proto file at `path` laid over it (see [`crate::proto_file`]).
    pub fn load(path: &std::path::Path) -> Result<Schema, SchemaError> {
        let fds = FileDescriptorSet::decode(BUILTIN_DESCRIPTOR).expect("build.rs wrote a valid descriptor set");
        crate::proto_file::load(path, &fds)
    }

    /// The schema of the top-level messages of `file` in `fds`, which must define `PubSubReq` and
    /// `PubSubResp` (with `cmd_ping` / `pong_resp` and `error_resp`, which the core answers by itself).
    /// Nested message types, maps and groups are refused.
    pub fn from_descriptor(fds: &FileDescriptorSet, file: &str) -> Result<Schema, SchemaError> {
        let bad = |what: String| Err(SchemaError(what));
        let Some(file) = fds.file.iter().find(|f| f.name() == file) else {
            return bad(format!("{file}: not in the descriptor set"));
        };
        let name = file.name();
        let names: Vec<String> = file.message_type.iter().map(|m| m.name().to_string()).collect();
        let index_of = |type_name: &str| -> Result<u16, SchemaError> {
            let short = type_name.trim_start_matches('.');
            let short = short.strip_prefix(&format!("{}.", file.package())).unwrap_or(short);
            match names.iter().position(|n| n == short) {
                Some(i) => Ok(i as u16),
                None => Err(SchemaError(format!("{name}: message type {type_name} is not a top-level message of the file"))),
            }
        };
        let mut schema = Schema {
            fields: Vec::new(),
            field_names: Vec::new(),
            messages: Vec::new(),
            message_names: names.clone(),
            by_number: Vec::new(),
            request: 0,
            response: 0,
            known: KnownIds { ping: 0, ping_state: 0, pong: 0, pong_state: 0, error: 0, error_code: 0, error_message: 0 },
        };
        if file.message_type.len() > usize::from(u16::MAX) {
            return bad(format!("{name}: too many messages"));
        }
        for (index, m) in file.message_type.iter().enumerate() {
            if !m.nested_type.is_empty() {
                return bad(format!("{name}: nested message types (and maps) are not supported: {}", m.name()));
            }
            let first = schema.fields.len();
            for f in &m.field {
                let Some(kind) = Kind::of(f.r#type()) else {
                    return bad(format!("{name}: groups are not supported ({}.{})", m.name(), f.name()));
                };
                let target = if kind == Kind::Message { Some(index_of(f.type_name())?) } else { None };
                if schema.fields.len() >= usize::from(u16::MAX) {
                    return bad(format!("{name}: too many fields"));
                }
                schema.fields.push(Field {
                    id: schema.fields.len() as u16,
                    owner: index as u16,
                    number: f.number() as u32,
                    kind,
                    repeated: f.label() == Label::Repeated,
                    oneof: f.oneof_index.is_some() && !f.proto3_optional(),
                    target,
                });
                schema.field_names.push(f.name().to_string());
            }
            let numbers = schema.by_number.len() as u32;
            schema.by_number.resize(schema.by_number.len() + DIRECT_NUMBERS as usize, NO_FIELD);
            for f in &schema.fields[first..] {
                if f.number < DIRECT_NUMBERS {
                    schema.by_number[numbers as usize + f.number as usize] = f.id;
                }
            }
            let count = (schema.fields.len() - first) as u16;
            schema.messages.push(Message { index: index as u16, first: first as u16, count, numbers });
        }
        schema.request = index_of("PubSubReq")?;
        schema.response = index_of("PubSubResp")?;
        schema.known = schema.known_ids().map_err(|e| SchemaError(format!("{name}: {e}")))?;
        Ok(schema)
    }

    fn known_ids(&self) -> Result<KnownIds, String> {
        let member = |msg: Message, name: &str| -> Result<Field, String> {
            self.field_by_name(msg, name).filter(|f| f.oneof && f.kind == Kind::Message).ok_or_else(|| {
                format!("{} lacks the message member {name} of its oneof", self.message_name(msg))
            })
        };
        let inner = |outer: Field, name: &str, kinds: &[Kind]| -> Result<u16, String> {
            let msg = self.target(outer).expect("member() checked the kind");
            self.field_by_name(msg, name)
                .filter(|f| kinds.contains(&f.kind) && !f.repeated)
                .map(|f| f.id)
                .ok_or_else(|| format!("{} lacks the field {name} of type {}", self.message_name(msg), kinds[0].name()))
        };
        let (ping, pong, error) = (member(self.request(), "cmd_ping")?, member(self.response(), "pong_resp")?, member(self.response(), "error_resp")?);
        for msg in [self.request(), self.response()] {
            match self.field_by_name(msg, "sequence") {
                Some(f) if f.number == 1 && f.kind == Kind::Int64 && !f.repeated => {}
                _ => return Err(format!("{} lacks `int64 sequence = 1`", self.message_name(msg))),
            }
        }
        Ok(KnownIds {
            ping: ping.id,
            ping_state: inner(ping, "state", &[Kind::Bytes, Kind::String])?,
            pong: pong.id,
            pong_state: inner(pong, "state", &[Kind::Bytes, Kind::String])?,
            error: error.id,
            error_code: inner(error, "code", &[Kind::Int32])?,
            error_message: inner(error, "message", &[Kind::String, Kind::Bytes])?,
        })
    }

    /// The field with this id.
    #[inline]
    pub fn field(&self, id: u32) -> Option<Field> {
        self.fields.get(id as usize).copied()
    }

    /// Every field, by id.
    pub fn all_fields(&self) -> &[Field] {
        &self.fields
    }

    /// The name of field `id` (empty for an id that is not one).
    pub fn field_name(&self, id: u16) -> &str {
        self.field_names.get(usize::from(id)).map_or("", String::as_str)
    }

    /// Every message, by index.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The message with this index.
    #[inline]
    pub fn message(&self, index: u16) -> Message {
        self.messages[usize::from(index)]
    }

    /// The message named `name`.
    pub fn message_by_name(&self, name: &str) -> Option<Message> {
        self.message_names.iter().position(|n| n == name).map(|i| self.messages[i])
    }

    /// The name of a message.
    pub fn message_name(&self, msg: Message) -> &str {
        &self.message_names[usize::from(msg.index)]
    }

    /// The fields of a message, in declaration order.
    #[inline]
    pub fn fields(&self, msg: Message) -> &[Field] {
        &self.fields[usize::from(msg.first)..usize::from(msg.first) + usize::from(msg.count)]
    }

    /// The field of `msg` with this number.
    #[inline]
    pub fn field_by_number(&self, msg: Message, number: u32) -> Option<Field> {
        self.field_ref_by_number(&msg, number).copied()
    }

    /// Like [`Schema::field_by_number`], borrowed: the decoder's hot path reads a field where it
    /// lies instead of copying it out.
    #[inline]
    pub fn field_ref_by_number(&self, msg: &Message, number: u32) -> Option<&Field> {
        if number < DIRECT_NUMBERS {
            let id = *self.by_number.get((msg.numbers + number) as usize)?;
            return if id == NO_FIELD { None } else { self.fields.get(usize::from(id)) };
        }
        self.fields(*msg).iter().find(|f| f.number == number)
    }

    /// The field of `msg` with this name.
    pub fn field_by_name(&self, msg: Message, name: &str) -> Option<Field> {
        self.fields(msg).iter().find(|f| self.field_name(f.id) == name).copied()
    }

    /// The message type of a [`Kind::Message`] field.
    #[inline]
    pub fn target(&self, field: Field) -> Option<Message> {
        field.target.map(|t| self.message(t))
    }

    /// `PubSubReq`.
    pub fn request(&self) -> Message {
        self.message(self.request)
    }

    /// `PubSubResp`.
    pub fn response(&self) -> Message {
        self.message(self.response)
    }

    /// The commands a client can send: the `oneof` members of `PubSubReq`.
    pub fn commands(&self) -> impl Iterator<Item = Field> + '_ {
        self.fields(self.request()).iter().filter(|f| f.oneof).copied()
    }

    /// The replies a handler can return: the `oneof` members of `PubSubResp`.
    pub fn replies(&self) -> impl Iterator<Item = Field> + '_ {
        self.fields(self.response()).iter().filter(|f| f.oneof).copied()
    }

    /// The ids the core uses by itself.
    #[inline]
    pub fn known(&self) -> &KnownIds {
        &self.known
    }

    /// A Lua chunk returning this schema as the Lua face uses it: `fields[id]` (name, number, kind,
    /// repeated, oneof, target, and the predicates `integer`, `int64`, `number` and `default`, the
    /// proto3 default a decoded table starts with), `messages[index]` (name, field ids), `request`,
    /// `response`, and the ordered names of the `commands` and `replies`. Ids and indices are the
    /// 0-based ones Rust hands out.
    pub fn lua_source(&self) -> String {
        let mut s = String::from("return {\n  fields = {\n");
        for f in &self.fields {
            let default = if f.repeated || f.oneof {
                "nil"
            } else if f.kind.is_number() {
                "0"
            } else if f.kind == Kind::Bool {
                "false"
            } else if matches!(f.kind, Kind::String | Kind::Bytes) {
                "\"\""
            } else {
                "nil"
            };
            let _ = writeln!(
                s,
                "    [{}] = {{ id = {}, name = {:?}, number = {}, kind = {:?}, repeated = {}, oneof = {}, target = {}, integer = {}, int64 = {}, number_like = {}, default = {} }},",
                f.id,
                f.id,
                self.field_name(f.id),
                f.number,
                f.kind.name(),
                f.repeated,
                f.oneof,
                f.target.map_or("nil".to_string(), |t| t.to_string()),
                f.kind.is_integer(),
                f.kind.is_64bit_integer(),
                f.kind.is_number(),
                default,
            );
        }
        s.push_str("  },\n  messages = {\n");
        for m in &self.messages {
            let ids: Vec<String> = self.fields(*m).iter().map(|f| f.id.to_string()).collect();
            let _ = writeln!(s, "    [{}] = {{ name = {:?}, fields = {{ {} }} }},", m.index, self.message_name(*m), ids.join(", "));
        }
        let names = |it: &mut dyn Iterator<Item = Field>| it.map(|f| format!("{:?}", self.field_name(f.id))).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            s,
            "  }},\n  request = {},\n  response = {},\n  commands = {{ {} }},\n  replies = {{ {} }},\n}}",
            self.request,
            self.response,
            names(&mut self.commands()),
            names(&mut self.replies()),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &Schema, it: impl Iterator<Item = Field>) -> Vec<(String, u32)> {
        it.map(|f| (s.field_name(f.id).to_string(), f.number)).collect()
    }

    #[test]
    fn request_and_response_follow_the_numbering_rule() {
        let s = Schema::builtin();
        for msg in [s.request(), s.response()] {
            let seq = s.field_by_name(msg, "sequence").expect("sequence");
            assert_eq!((seq.number, seq.kind), (1, Kind::Int64));
            for f in s.fields(msg).iter().filter(|f| f.oneof) {
                assert!(f.number > 30, "{} numbered {}", s.field_name(f.id), f.number);
            }
        }
        let cmds = names(&s, s.commands());
        // APISIX's from 31, then the channels' in this project's range (1001 to 1099).
        let want = [
            ("cmd_empty", 31),
            ("cmd_ping", 32),
            ("cmd_kafka_fetch", 33),
            ("cmd_kafka_list_offset", 34),
            ("cmd_subscribe", 1001),
            ("cmd_unsubscribe", 1002),
            ("cmd_publish", 1003),
        ];
        assert_eq!(cmds, want.map(|(n, v)| (n.to_string(), v)));
        let replies = names(&s, s.replies());
        let want = [
            ("error_resp", 31),
            ("pong_resp", 32),
            ("kafka_fetch_resp", 33),
            ("kafka_list_offset_resp", 34),
            ("subscribe_resp", 1001),
            ("unsubscribe_resp", 1002),
            ("publish_resp", 1003),
            ("channel_message", 1004),
        ];
        assert_eq!(replies, want.map(|(n, v)| (n.to_string(), v)));
    }

    #[test]
    fn ids_index_the_field_table() {
        let s = Schema::builtin();
        for (i, f) in s.all_fields().iter().enumerate() {
            assert_eq!(usize::from(f.id), i);
            let owner = s.message(f.owner);
            assert!(s.fields(owner).iter().any(|g| g == f));
            assert_eq!(f.kind == Kind::Message, s.target(*f).is_some());
        }
        for m in s.messages() {
            for n in 0..100 {
                let searched = s.fields(*m).iter().find(|f| f.number == n).copied();
                assert_eq!(s.field_by_number(*m, n), searched, "{} field {n}", s.message_name(*m));
            }
        }
        let fetch = s.message_by_name("KafkaFetchResp").unwrap();
        let messages = s.field_by_number(fetch, 1).unwrap();
        assert!(messages.repeated);
        assert_eq!(s.message_name(s.target(messages).unwrap()), "KafkaMessage");
        let k = s.known();
        assert_eq!((s.field_name(k.ping), s.field_name(k.pong_state), s.field_name(k.error_message)), ("cmd_ping", "state", "message"));
    }

    #[test]
    fn kind_predicates() {
        assert!(Kind::Enum.is_integer() && Kind::Sfixed64.is_integer() && !Kind::Double.is_integer() && !Kind::Bool.is_integer());
        assert!(Kind::Double.is_number() && Kind::Uint32.is_number() && !Kind::Bool.is_number() && !Kind::Bytes.is_number());
        assert!(Kind::Fixed64.is_64bit_integer() && !Kind::Int32.is_64bit_integer());
    }

    #[test]
    fn the_lua_tables_carry_what_lua_needs() {
        let s = Schema::builtin();
        let lua = s.lua_source();
        assert!(lua.starts_with("return {"));
        assert!(lua.contains("name = \"offset\", number = 1, kind = \"int64\""), "{lua}");
        assert!(lua.contains("integer = true, int64 = true, number_like = true, default = 0"));
        assert!(lua.contains("commands = { \"cmd_empty\", \"cmd_ping\", \"cmd_kafka_fetch\", \"cmd_kafka_list_offset\", \"cmd_subscribe\""));
    }

    #[test]
    fn a_proto_without_the_core_messages_is_refused() {
        let mut fds = FileDescriptorSet::decode(BUILTIN_DESCRIPTOR).unwrap();
        let resp = fds.file[0].message_type.iter_mut().find(|m| m.name() == "PubSubResp").unwrap();
        resp.field.retain(|f| f.name() != "error_resp");
        let err = Schema::from_descriptor(&fds, BUILTIN_FILE).unwrap_err();
        assert_eq!(err.to_string(), "proto/pubsub.proto: PubSubResp lacks the message member error_resp of its oneof");
        fds.file[0].message_type.retain(|m| m.name() != "PubSubReq");
        assert!(Schema::from_descriptor(&fds, BUILTIN_FILE).unwrap_err().to_string().contains("PubSubReq"));
    }
}
