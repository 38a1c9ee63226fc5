//! Golden bytes: messages encoded by Debian's `protoc --encode` (tests/fixtures/make.sh) are
//! decoded by this crate and encoded again, byte for byte.

mod common;

use apisix_pubsub_rs::message::RequestDecoder;
use apisix_pubsub_rs::proto;
use prost::Message as _;

fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            name.ends_with(&format!(".{kind}.bin")).then(|| (name, std::fs::read(&p).unwrap()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn requests_decode_and_reencode_identically() {
    let files = fixtures("PubSubReq");
    assert_eq!(files.len(), 4);
    let mut d = RequestDecoder::new(apisix_pubsub_rs::schema::Schema::builtin());
    for (name, bytes) in files {
        let r = d.decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = common::request_to_prost(&r, &bytes);
        assert_eq!(ours, proto::PubSubReq::decode(&bytes[..]).unwrap(), "{name}");
        assert_eq!(ours.encode_to_vec(), bytes, "{name}");
    }
}

#[test]
fn responses_reencode_identically() {
    let files = fixtures("PubSubResp");
    assert_eq!(files.len(), 4);
    for (name, bytes) in files {
        let resp = proto::PubSubResp::decode(&bytes[..]).unwrap();
        assert_eq!(common::encode_with_ours(&resp), bytes, "{name}");
    }
}

#[test]
fn the_seed_ping_is_what_protoc_makes() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ping.PubSubReq.bin")).unwrap();
    assert_eq!(bytes, [0x08, 0x01, 0x82, 0x02, 0x06, 0x0a, 0x04, b't', b'e', b's', b't']);
}
