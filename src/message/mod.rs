//! The PubSub message codec: `PubSubReq` bytes in, a flat list of [`Op`]s out ([`decode`]); reply
//! fields in, `PubSubResp` bytes out ([`encode`]).
//!
//! Both directions are driven by a [`crate::schema::Schema`], not by generated structs, and both
//! follow what APISIX's `.t` suites observe from lua-protobuf:
//! - unknown fields are skipped;
//! - a tag varint cut off at the very end of a message ends that message quietly;
//! - everything else malformed is an error naming what and where (byte offset).

pub mod decode;
pub mod encode;
pub mod op;

pub use decode::{DecodeError, Request, RequestDecoder, MAX_DEPTH};
pub use encode::{EncodeError, Ref, ReplyEncoder};
pub use op::Op;

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the codec's tests share.
    use crate::proto;
    use crate::schema::Schema;
    use prost::Message as _;

    /// The id of field `name` of message `msg` in the built-in schema.
    pub fn field_id(msg: &str, name: &str) -> u32 {
        let s = Schema::builtin();
        let m = s.message_by_name(msg).unwrap();
        u32::from(s.field_by_name(m, name).unwrap().id)
    }

    /// The name of a field of the built-in schema.
    pub fn name_of(id: u32) -> &'static str {
        Schema::builtin_ref().field_name(id as u16)
    }

    /// A `PubSubReq` with a `cmd_ping`.
    pub fn ping(seq: i64, state: &[u8]) -> Vec<u8> {
        proto::PubSubReq { sequence: seq, req: Some(proto::pub_sub_req::Req::CmdPing(proto::CmdPing { state: state.to_vec() })) }
            .encode_to_vec()
    }
}
