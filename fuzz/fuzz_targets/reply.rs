//! The reply encoder driven by random call sequences, as the Lua side would drive it with random
//! tables: no panic, and whatever it accepts as finished parses as a PubSubResp (strings aside).
#![no_main]

use apisix_pubsub_rs::message::ReplyEncoder;
use apisix_pubsub_rs::proto;
use apisix_pubsub_rs::schema::FIELDS;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let mut e = ReplyEncoder::new();
    let mut it = data.chunks(10);
    let seq = it.next().map_or(0, |c| c.iter().fold(0i64, |a, &b| a.wrapping_mul(31).wrapping_add(i64::from(b))));
    e.begin(seq);
    for c in it {
        let field = u32::from(c[0]) % (FIELDS.len() as u32 + 2);
        let arg = c.get(2..).unwrap_or(&[]);
        let n = arg.iter().fold(0i64, |a, &b| a.wrapping_mul(257).wrapping_add(i64::from(b)));
        let _ = match c.get(1).copied().unwrap_or(0) % 8 {
            0 => e.open(field),
            1 => e.close(),
            2 => e.put_int(field, n),
            3 => e.put_uint(field, n as u64),
            4 => e.put_number(field, f64::from_bits(n as u64)),
            5 => e.put_int_text(field, arg),
            6 => e.put_bytes(field, arg),
            _ => e.put_bool(field, n & 1 == 1),
        };
    }
    if let Ok(bytes) = e.finish() {
        // Like lua-protobuf, the encoder does not check `string` fields for UTF-8; prost does.
        if let Err(err) = proto::PubSubResp::decode(bytes) {
            assert!(err.to_string().contains("UTF-8"), "{err}: {bytes:x?}");
        }
    }
});
