//! Micro-benchmarks of the hot path: frame parse + unmask, request decode, reply encode.
//! `cargo bench --bench codec`; figures go to BENCHMARKS.md.

use std::hint::black_box;

use apisix_pubsub_rs::frame::{client_frame, unmask, Decoder, Limits, Poll};
use apisix_pubsub_rs::message::{ReplyEncoder, RequestDecoder};
use apisix_pubsub_rs::proto;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message as _;

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse+unmask");
    for size in [16usize, 1024, 65536] {
        let payload = vec![0x5au8; size];
        let frame = client_frame(true, 2, &payload, [0x12, 0x34, 0x56, 0x78]);
        let mut d = Decoder::new(Limits { max_payload_len: 1 << 20, max_message_len: 1 << 20 });
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                d.feed(black_box(&frame));
                match d.poll() {
                    Ok(Poll::Event(ev)) => {
                        black_box(ev);
                    }
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("unmask");
    let mut buf = vec![0x5au8; 65536];
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("64KiB", |b| b.iter(|| unmask(black_box(&mut buf), [1, 2, 3, 4])));
    g.finish();
}

fn messages(c: &mut Criterion) {
    let req = proto::PubSubReq { sequence: 12345, req: Some(proto::pub_sub_req::Req::CmdPing(proto::CmdPing { state: b"0123456789abcdef".to_vec() })) }
        .encode_to_vec();
    let mut d = RequestDecoder::new(apisix_pubsub_rs::schema::Schema::builtin());
    c.bench_function("decode ping request (16 B state)", |b| {
        b.iter(|| {
            let r = d.decode(black_box(&req)).unwrap();
            black_box(r.ops.len());
        })
    });
    c.bench_function("prost decode ping request (reference)", |b| {
        b.iter(|| black_box(proto::PubSubReq::decode(black_box(&req[..])).unwrap()))
    });
    let known = *apisix_pubsub_rs::schema::Schema::builtin().known();
    let (pong, state) = (u32::from(known.pong), u32::from(known.pong_state));
    let mut e = ReplyEncoder::new(apisix_pubsub_rs::schema::Schema::builtin());
    c.bench_function("encode pong reply (16 B state)", |b| {
        b.iter(|| {
            e.begin(black_box(12345));
            e.open(pong).unwrap();
            e.put_bytes(state, black_box(b"0123456789abcdef")).unwrap();
            e.close().unwrap();
            black_box(e.finish().unwrap().len());
        })
    });
}

criterion_group!(benches, frames, messages);
criterion_main!(benches);
