//! The RESP reply decoder on an `XREAD` reply arriving in socket-sized reads, against calling
//! `redis-protocol`'s decoder on the whole buffer after every read (what a decoder without a
//! resumable scan does). `cargo bench --bench resp`; figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use apisix_pubsub_rs::resp::{xread_entries, Limits, Poll, Protocol, ReplyDecoder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// An `XREAD` reply of one stream with `n` entries of a `data` field of `len` bytes.
fn xread_reply(n: usize, len: usize) -> Vec<u8> {
    let mut w = format!("*1\r\n*2\r\n$7\r\nch:news\r\n*{n}\r\n").into_bytes();
    for i in 0..n {
        let id = format!("1700000000000-{i}");
        w.extend_from_slice(format!("*2\r\n${}\r\n{id}\r\n*2\r\n$4\r\ndata\r\n${len}\r\n", id.len()).as_bytes());
        w.resize(w.len() + len, b'x');
        w.extend_from_slice(b"\r\n");
    }
    w
}

fn decode(c: &mut Criterion) {
    for (n, len) in [(100usize, 100usize), (1000, 1000)] {
        let wire = xread_reply(n, len);
        let mut g = c.benchmark_group(format!("XREAD reply of {n} entries, {} bytes, in 4 KiB reads", wire.len()));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let limits = Limits { max_reply_len: 8 << 20, max_elements: 1 << 20 };
        let mut d = ReplyDecoder::new(limits, Protocol::Resp2);
        let mut entries = Vec::new();
        g.bench_function("ReplyDecoder + xread_entries", |b| {
            b.iter(|| {
                for chunk in wire.chunks(4096) {
                    d.feed(chunk);
                    if let Poll::Reply(r) = d.poll().unwrap() {
                        entries.clear();
                        xread_entries(&r, &mut entries).unwrap();
                        black_box(entries.len());
                    }
                }
            })
        });
        let mut buf = Vec::new();
        g.bench_function("redis-protocol decode_range after every read", |b| {
            b.iter(|| {
                buf.clear();
                for chunk in wire.chunks(4096) {
                    buf.extend_from_slice(chunk);
                    if let Some((frame, _)) = redis_protocol::resp2::decode::decode_range(&buf).unwrap() {
                        black_box(frame);
                    }
                }
            })
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = decode }
criterion_main!(benches);
