//! The reply encoder driven by random call sequences, as the Lua side would drive it with random
//! tables: no panic, and whatever it accepts as finished parses as a PubSubResp (strings aside),
//! values held by reference put in place.
#![no_main]

use apisix_pubsub_rs::message::ReplyEncoder;
use apisix_pubsub_rs::proto;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let mut e = ReplyEncoder::new(apisix_pubsub_rs::schema::Schema::builtin());
    let fields = e.schema().all_fields().len() as u32;
    let mut it = data.chunks(10);
    let seq = it.next().map_or(0, |c| c.iter().fold(0i64, |a, &b| a.wrapping_mul(31).wrapping_add(i64::from(b))));
    e.begin(seq);
    let mut held: Vec<Vec<u8>> = Vec::new();
    for c in it {
        let field = u32::from(c[0]) % (fields + 2);
        let arg = c.get(2..).unwrap_or(&[]);
        let n = arg.iter().fold(0i64, |a, &b| a.wrapping_mul(257).wrapping_add(i64::from(b)));
        let _ = match c.get(1).copied().unwrap_or(0) % 9 {
            8 => {
                // A held value, sometimes large enough to move nested lengths past a varint step.
                let v = arg.repeat(1 + usize::from(c.get(2).copied().unwrap_or(0)) * 8);
                let r = e.put_bytes_ref(field, held.len() as u32, v.len());
                held.push(v);
                r
            }
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
    let taken = e.take().ok().map(|t| (t.buf, t.refs.collect::<Vec<_>>()));
    if let Some((buf, refs)) = taken {
        let mut bytes = Vec::new();
        let mut pos = 0;
        for r in refs {
            bytes.extend_from_slice(&buf[pos..r.at]);
            bytes.extend_from_slice(&held[r.id as usize]);
            pos = r.at;
        }
        bytes.extend_from_slice(&buf[pos..]);
        // Like lua-protobuf, the encoder does not check `string` fields for UTF-8; prost does.
        if let Err(err) = proto::PubSubResp::decode(&bytes[..]) {
            assert!(err.to_string().contains("UTF-8"), "{err}: {bytes:x?}");
        }
    }
});
