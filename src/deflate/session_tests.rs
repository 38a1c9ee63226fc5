//! permessage-deflate through a whole [`Session`]: what goes out compressed, with RSV1, and
//! inflates back with flate2; what stays uncompressed; pushes shared and refused.

use prost::Message as _;

use super::{Config, Params};
use crate::frame::{client_frame, Limits};
use crate::proto;
use crate::schema::Schema;
use crate::session::{Chunk, Options, Session, Step};

const M: [u8; 4] = [9, 8, 7, 6];

fn session(params: Params, limit: Option<usize>) -> Session {
    let mut s = Session::new(Schema::builtin(), Options { limits: Limits::up_to(1 << 20), max_queue_bytes: limit, ..Options::default() });
    s.set_compression(params, Config::default());
    s
}

/// The queued frames as (RSV bits, payload), held values filled in from `values`.
fn drain(s: &mut Session, values: &[&[u8]]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(c) = s.chunk(usize::MAX) {
        let n = match c {
            Chunk::Bytes(b) => {
                out.extend_from_slice(b);
                b.len()
            }
            Chunk::Held { id, offset, len } => {
                out.extend_from_slice(&values[id as usize][offset..offset + len]);
                len
            }
        };
        s.consume(n);
    }
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let (len, hdr) = match out[pos + 1] {
            126 => (u16::from_be_bytes([out[pos + 2], out[pos + 3]]) as usize, 4),
            127 => (u64::from_be_bytes(out[pos + 2..pos + 10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        frames.push((out[pos] & 0x70, out[pos + hdr..pos + hdr + len].to_vec()));
        pos += hdr + len;
    }
    frames
}

/// Inflates a message's payload as a client does (raw, the tail appended), with a 15-bit window.
fn inflate(state: &mut flate2::Decompress, payload: &[u8]) -> Vec<u8> {
    let input = [payload, &super::TAIL[..]].concat();
    let mut out = Vec::with_capacity(4 << 20);
    state.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
    out
}

fn ping(seq: i64, state: &[u8]) -> Vec<u8> {
    let req = proto::PubSubReq { sequence: seq, req: Some(proto::pub_sub_req::Req::CmdPing(proto::CmdPing { state: state.to_vec() })) };
    client_frame(true, 2, &req.encode_to_vec(), M)
}

fn pong_state(payload: &[u8]) -> Vec<u8> {
    match proto::PubSubResp::decode(payload).unwrap().resp {
        Some(proto::pub_sub_resp::Resp::PongResp(p)) => p.state,
        other => panic!("{other:?}"),
    }
}

const NO_TAKEOVER: Params =
    Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15, client_max_window_bits: 15 };
const TAKEOVER: Params = Params { server_no_context_takeover: false, client_no_context_takeover: false, ..NO_TAKEOVER };

#[test]
fn replies_at_or_over_the_threshold_go_compressed_with_rsv1() {
    for params in [NO_TAKEOVER, TAKEOVER] {
        let mut s = session(params, None);
        let states: Vec<Vec<u8>> = [1usize, 100, 5000, 70_000].iter().map(|&n| b"abcdefgh".repeat(n / 8 + 1)[..n].to_vec()).collect();
        for (i, st) in states.iter().enumerate() {
            s.feed(&ping(i as i64, st));
        }
        // Echoed in Rust under 4 KiB and from 128 KiB; the others come through the handler path.
        s.set_echo_ping(true);
        while let Step::Command { sequence, .. } = s.step() {
            assert!(sequence >= 2, "the small ones are echoed in Rust");
            let st = states[sequence as usize].clone();
            s.reply_begin();
            s.encoder().put_pong(&st);
            s.reply_finish().unwrap();
        }
        let mut inflater = flate2::Decompress::new(false);
        let frames = drain(&mut s, &[]);
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].0, 0, "a reply under the threshold goes as it is");
        assert_eq!(pong_state(&frames[0].1), states[0]);
        for (i, (rsv, payload)) in frames.iter().enumerate().skip(1) {
            assert_eq!(*rsv, 0x40);
            assert!(payload.len() < states[i].len() / 4, "{} of {}", payload.len(), states[i].len());
            if params.server_no_context_takeover {
                inflater = flate2::Decompress::new(false);
            }
            assert_eq!(pong_state(&inflate(&mut inflater, payload)), states[i]);
        }
        assert_eq!(s.compression().unwrap().holds_state(), !params.server_no_context_takeover);
    }
}

#[test]
fn pushes_compressed_copied_and_shared() {
    let mut s = session(NO_TAKEOVER, None);
    let msg = proto::PubSubResp { sequence: 5, resp: Some(proto::pub_sub_resp::Resp::PongResp(proto::PongResp { state: vec![b'q'; 3000] })) }.encode_to_vec();
    s.push_message(&msg, None).unwrap();
    let key = s.compression().unwrap().shared_key(msg.len()).unwrap();
    let mut shared = Vec::new();
    super::with_shared(|c| c.deflate(key, &msg, &mut shared));
    s.push_deflated(&shared, Some(1), true).unwrap();
    s.push_deflated(&msg, Some(0), false).unwrap();
    let frames = drain(&mut s, &[&msg, &shared]);
    assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), [0x40, 0x40, 0]);
    assert_eq!(frames[0].1, shared, "a push compressed in the session is the shared bytes");
    for (_, p) in &frames[..2] {
        assert_eq!(inflate(&mut flate2::Decompress::new(false), p), msg);
    }
    assert_eq!(frames[2].1, msg);
}

#[test]
fn with_context_takeover_a_push_the_queue_may_refuse_is_compressed_only_if_it_fits_uncompressed() {
    let state = vec![b'z'; 3000];
    let mut s = session(TAKEOVER, Some(2000));
    // Too big uncompressed for the limit: refused, and never compressed (the window the client
    // keeps would otherwise lose step with ours).
    s.push_begin(1);
    s.encoder().put_pong(&state);
    assert!(s.push_finish().is_err());
    s.push_begin(2);
    s.encoder().put_pong(&state[..500]);
    s.push_finish().unwrap();
    let frames = drain(&mut s, &[]);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0x40);
    let mut client = flate2::Decompress::new(false);
    assert_eq!(pong_state(&inflate(&mut client, &frames[0].1)), &state[..500]);
}

#[test]
fn random_bytes_are_sent_as_they_are_without_being_compressed() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..60_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }).collect();
    let json = br#"{"id":1,"topic":"orders","price":12.5,"side":"buy"},"#.repeat(1200);
    for len in [1024, 1027, 4096, 60_000] {
        assert!(super::sender::looks_incompressible(&random[..len]), "random {len}");
        assert!(!super::sender::looks_incompressible(&json[..len]), "json {len}");
    }
    assert!(!super::sender::looks_incompressible(&random[..1000]), "too few bytes to tell: compressed and compared");
    for params in [NO_TAKEOVER, TAKEOVER] {
        let mut s = session(params, None);
        s.push_message(&random, None).unwrap();
        assert_eq!(drain(&mut s, &[])[0], (0, random.clone()));
        assert!(!s.compression().unwrap().holds_state(), "nothing was compressed");
    }
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// What a connection's sender compresses (shared compressor or its own), flate2's raw
    /// inflate reads back, at every window and level; what it leaves uncompressed is left so
    /// for a reason (under the threshold, random-looking, or no smaller).
    #[test]
    fn what_a_sender_compresses_flate2_inflates(
        messages in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..5000),
            prop::collection::vec(prop::sample::select(vec![&b"{\"id\":"[..], b"\"price\"", b"17.5", b",", b"}", b"buy "]), 0..800)
                .prop_map(|w| w.concat()),
        ], 1..6),
        takeover in any::<bool>(),
        bits in 9u8..=15,
        level in 0u32..=9,
        threshold in 0usize..200,
    ) {
        let params = Params { server_no_context_takeover: !takeover, server_max_window_bits: bits, ..NO_TAKEOVER };
        let config = Config { threshold, level, large_level: level, ..Config::default() };
        let mut sender = super::Sender::new(params, config);
        let mut client = flate2::Decompress::new_with_window_bits(false, bits);
        for m in &messages {
            let mut out = Vec::new();
            if sender.deflate_into(m, &mut out) {
                if !takeover {
                    client = flate2::Decompress::new_with_window_bits(false, bits);
                }
                let input = [&out[..], &super::TAIL[..]].concat();
                let mut back = Vec::with_capacity(m.len() + 64);
                client.decompress_vec(&input, &mut back, flate2::FlushDecompress::Sync).unwrap();
                prop_assert_eq!(&back, m);
                prop_assert!(takeover || out.len() < m.len(), "without takeover only smaller goes compressed");
            } else {
                prop_assert!(out.is_empty());
                prop_assert!(m.len() < threshold || super::sender::looks_incompressible(m) || !takeover);
            }
        }
    }
}
