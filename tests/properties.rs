//! Property tests: round trips, and chunking independence of the frame decoder.

mod common;

use apisix_pubsub_rs::frame::{client_frame, Decoder, Event, Limits, Poll};
use apisix_pubsub_rs::message::RequestDecoder;
use apisix_pubsub_rs::proto::{self, pub_sub_req::Req, pub_sub_resp::Resp};
use apisix_pubsub_rs::session::{Options, Session, Step};
use prost::Message as _;
use proptest::prelude::*;

fn arb_req() -> impl Strategy<Value = proto::PubSubReq> {
    let cmd = prop_oneof![
        Just(None),
        Just(Some(Req::CmdEmpty(proto::CmdEmpty {}))),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|state| Some(Req::CmdPing(proto::CmdPing { state }))),
        ("[a-z]{0,20}", any::<i32>(), any::<i64>())
            .prop_map(|(topic, partition, offset)| Some(Req::CmdKafkaFetch(proto::CmdKafkaFetch { topic, partition, offset }))),
        ("[a-z]{0,20}", any::<i32>(), any::<i64>()).prop_map(|(topic, partition, timestamp)| {
            Some(Req::CmdKafkaListOffset(proto::CmdKafkaListOffset { topic, partition, timestamp }))
        }),
    ];
    (any::<i64>(), cmd).prop_map(|(sequence, req)| proto::PubSubReq { sequence, req })
}

fn arb_resp() -> impl Strategy<Value = proto::PubSubResp> {
    let msg = (any::<i64>(), any::<i64>(), proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..200))
        .prop_map(|(offset, timestamp, key, value)| proto::KafkaMessage { offset, timestamp, key, value });
    let resp = prop_oneof![
        (any::<i32>(), ".{0,40}").prop_map(|(code, message)| Resp::ErrorResp(proto::ErrorResp { code, message })),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|state| Resp::PongResp(proto::PongResp { state })),
        proptest::collection::vec(msg, 0..5).prop_map(|messages| Resp::KafkaFetchResp(proto::KafkaFetchResp { messages })),
        any::<i64>().prop_map(|offset| Resp::KafkaListOffsetResp(proto::KafkaListOffsetResp { offset })),
    ];
    (any::<i64>(), resp).prop_map(|(sequence, resp)| proto::PubSubResp { sequence, resp: Some(resp) })
}

/// Everything a decoder yields for a stream fed in the given chunk sizes.
fn collect(stream: &[u8], chunks: &[usize], limits: Limits) -> (Vec<String>, Option<String>) {
    let mut d = Decoder::new(limits);
    let mut events = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().cycle();
    loop {
        loop {
            match d.poll() {
                Ok(Poll::Event(ev)) => events.push(format!("{ev:?}")),
                Ok(Poll::NeedMore(n)) => {
                    assert!(n > 0);
                    break;
                }
                Err(e) => return (events, Some(e.to_string())),
            }
        }
        if pos >= stream.len() {
            return (events, None);
        }
        let n = (*sizes.next().unwrap()).clamp(1, stream.len() - pos);
        d.feed(&stream[pos..pos + n]);
        pos += n;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(req in arb_req()) {
        let bytes = req.encode_to_vec();
        let mut d = RequestDecoder::new(apisix_pubsub_rs::schema::Schema::builtin());
        let r = d.decode(&bytes).unwrap();
        prop_assert_eq!(common::request_to_prost(&r, &bytes), req);
    }

    #[test]
    fn replies_round_trip(resp in arb_resp()) {
        let ours = common::encode_with_ours(&resp);
        prop_assert_eq!(&ours, &resp.encode_to_vec());
        prop_assert_eq!(proto::PubSubResp::decode(&ours[..]).unwrap(), resp);
    }

    #[test]
    fn frames_round_trip_and_chunking_does_not_matter(
        msgs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..3000), 1usize..4, any::<[u8; 4]>()), 1..6),
        chunks in proptest::collection::vec(1usize..700, 1..8),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (payload, parts, mask) in &msgs {
            let size = payload.len().div_ceil(*parts).max(1);
            let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(size).collect() };
            for (i, p) in pieces.iter().enumerate() {
                let op = if i == 0 { 2 } else { 0 };
                stream.extend(client_frame(i + 1 == pieces.len(), op, p, *mask));
                if i == 0 && pieces.len() > 1 {
                    stream.extend(client_frame(true, 9, b"between", *mask));
                    want.push(format!("{:?}", Event::Ping(b"between")));
                }
            }
            want.push(format!("{:?}", Event::Binary(payload)));
        }
        let limits = Limits { max_payload_len: 4000, max_message_len: 4000 };
        let whole = collect(&stream, &[stream.len()], limits);
        prop_assert_eq!(&whole.0, &want);
        prop_assert_eq!(collect(&stream, &chunks, limits), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        stream in proptest::collection::vec(any::<u8>(), 0..600),
        chunks in proptest::collection::vec(1usize..50, 1..5),
    ) {
        let limits = Limits { max_payload_len: 200, max_message_len: 300 };
        prop_assert_eq!(collect(&stream, &chunks, limits), collect(&stream, &[stream.len().max(1)], limits));
        let mut d = RequestDecoder::new(apisix_pubsub_rs::schema::Schema::builtin());
        let _ = d.decode(&stream);
        let mut s = Session::new(apisix_pubsub_rs::schema::Schema::builtin(), Options::default());
        s.feed(&stream);
        for _ in 0..100 {
            if matches!(s.step(), Step::NeedMore | Step::Ended) { break; }
        }
    }
}
