//! permessage-deflate throughput and ratio per backend, window and level, on JSON-like and random
//! payloads. `cargo bench --bench deflate`; figures go to BENCHMARKS.md. Kept short (2 shared cores).
//!
//! "ours" is this crate's path (`SharedCompressor`: `deflate::encoder` under 16 KiB, flate2's
//! zlib-rs backend from 16 KiB; `Inflater` is zlib-rs); "zlib-rs" is flate2's zlib-rs backend
//! reset after each message, the path before the encoder, and "miniz" miniz_oxide (flate2's
//! default backend, 15-bit window only), both called directly in the same run as peers. Every
//! message is compressed on its own (no context takeover), as the server does by default.

use std::hint::black_box;
use std::time::Duration;

use apisix_pubsub_rs::deflate::{Inflater, Params, SharedCompressor, SharedKey};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use miniz_oxide::deflate::core::{compress, CompressorOxide, TDEFLFlush};
use miniz_oxide::DataFormat;

#[path = "common/deflate_payloads.rs"]
mod payloads;

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("json 1KiB", payloads::json(1024)),
        ("json 60KB", payloads::json(60_000)),
        ("random 1KiB", payloads::random(1024)),
        ("random 60KB", payloads::random(60_000)),
    ]
}

/// The configurations of this crate's path measured: (window bits, level).
const OURS: [(u8, u32); 5] = [(15, 1), (15, 6), (12, 1), (10, 1), (9, 1)];
const MINIZ_LEVELS: [u8; 2] = [1, 6];

/// flate2 with zlib-rs, a sync flush, the tail removed and a reset after each message.
struct ZlibRs(flate2::Compress);

impl ZlibRs {
    fn new(bits: u8, level: u32) -> ZlibRs {
        ZlibRs(flate2::Compress::new_with_window_bits(flate2::Compression::new(level), false, bits))
    }

    fn deflate(&mut self, m: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(m.len() + m.len() / 64 + 64);
        self.0.compress_vec(m, out, flate2::FlushCompress::Sync).expect("room for all of it");
        out.truncate(out.len() - 4);
        self.0.reset();
    }
}

struct Miniz(Box<CompressorOxide>);

impl Miniz {
    fn new(level: u8) -> Miniz {
        let mut c = Box::new(CompressorOxide::new(0));
        c.set_format_and_level(DataFormat::Raw, level);
        Miniz(c)
    }

    /// One message on its own, sync-flushed, tail removed: what the zlib-rs path produces.
    fn deflate(&mut self, m: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.resize(m.len() + m.len() / 64 + 64, 0);
        let (_, _, n) = compress(&mut self.0, m, out, TDEFLFlush::Sync);
        out.truncate(n - 4);
        self.0.reset();
    }
}

fn no_takeover(bits: u8) -> Params {
    Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: bits, client_max_window_bits: bits }
}

fn ratios() {
    println!("compressed size / original (no context takeover):");
    let mut shared = SharedCompressor::new();
    for (name, m) in payloads() {
        let mut row = format!("  {name:>12}:");
        for (bits, level) in OURS {
            let mut out = vec![];
            shared.deflate(SharedKey { window_bits: bits, level }, &m, &mut out);
            row += &format!("  ours w{bits} l{level} {:.3}", out.len() as f64 / m.len() as f64);
        }
        for level in [1, 6] {
            let mut out = vec![];
            ZlibRs::new(15, level).deflate(&m, &mut out);
            row += &format!("  zlib-rs w15 l{level} {:.3}", out.len() as f64 / m.len() as f64);
        }
        for level in MINIZ_LEVELS {
            let mut out = vec![];
            Miniz::new(level).deflate(&m, &mut out);
            row += &format!("  miniz w15 l{level} {:.3}", out.len() as f64 / m.len() as f64);
        }
        println!("{row}");
    }
}

fn deflate(c: &mut Criterion) {
    ratios();
    for (name, m) in payloads() {
        let mut g = c.benchmark_group(format!("deflate {name}"));
        g.throughput(Throughput::Bytes(m.len() as u64));
        let mut shared = SharedCompressor::new();
        let mut out = Vec::with_capacity(m.len() * 2);
        for (bits, level) in OURS {
            let key = SharedKey { window_bits: bits, level };
            g.bench_function(format!("ours w{bits} l{level}"), |b| {
                b.iter(|| {
                    out.clear();
                    shared.deflate(key, black_box(&m), &mut out);
                    black_box(out.len())
                })
            });
        }
        for level in [1, 6] {
            let mut z = ZlibRs::new(15, level);
            g.bench_function(format!("zlib-rs w15 l{level}"), |b| {
                b.iter(|| {
                    z.deflate(black_box(&m), &mut out);
                    black_box(out.len())
                })
            });
        }
        for level in MINIZ_LEVELS {
            let mut mz = Miniz::new(level);
            g.bench_function(format!("miniz w15 l{level}"), |b| {
                b.iter(|| {
                    mz.deflate(black_box(&m), &mut out);
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }
}

fn inflate(c: &mut Criterion) {
    let mut shared = SharedCompressor::new();
    for (name, m) in payloads() {
        let mut g = c.benchmark_group(format!("inflate {name}"));
        g.throughput(Throughput::Bytes(m.len() as u64));
        for bits in [15u8, 9] {
            let mut wire = vec![];
            shared.deflate(SharedKey { window_bits: bits, level: 1 }, &m, &mut wire);
            let mut inf = Inflater::new(&no_takeover(bits));
            let mut out = Vec::with_capacity(m.len());
            g.bench_function(format!("zlib-rs w{bits}"), |b| {
                b.iter(|| {
                    out.clear();
                    inf.inflate(black_box(&wire), true, &mut out, m.len()).unwrap();
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = deflate, inflate }
criterion_main!(benches);
