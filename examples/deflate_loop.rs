//! Compresses one payload many times, as a worker's sender does for each reply (the entropy check,
//! then `deflate::encoder` under 16 KiB), for a count of instructions per message under callgrind:
//!
//!   cargo build --release --example deflate_loop
//!   valgrind --tool=callgrind target/release/examples/deflate_loop json 1024 1 2000
//!
//! Arguments: payload (`json` or `random`, the bytes of `benches/common`; `orders`, the load
//! generator's `--payload json` of its first connection), size in bytes, level, messages. `bench/encoder_instructions.sh` runs it twice and takes the difference per message.
//! It prints the compressed size (or "uncompressed").

use apisix_pubsub_rs::deflate::{Config, Params, Sender};

#[path = "../benches/common/deflate_payloads.rs"]
mod payloads;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, payload, size, level, count] = &args[..] else {
        eprintln!("usage: deflate_loop json|random|orders SIZE LEVEL MESSAGES");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("size");
    let level: u32 = level.parse().expect("level");
    let count: usize = count.parse().expect("messages");
    let m = match payload.as_str() {
        "json" => payloads::json(size),
        "random" => payloads::random(size),
        "orders" => orders(size),
        _ => panic!("payload: json, random or orders"),
    };
    let params = Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15, client_max_window_bits: 15 };
    let mut sender = Sender::new(params, Config { level, large_level: level, ..Config::default() });
    let mut out = Vec::with_capacity(2 * size + 64);
    let mut sizes = None;
    for _ in 0..count {
        out.clear();
        let compressed = sender.deflate_into(std::hint::black_box(&m), &mut out);
        sizes = Some(compressed.then_some(out.len()));
    }
    match sizes.flatten() {
        Some(n) => println!("{payload} {size} B level {level}: {n} B ({:.4})", n as f64 / size as f64),
        None => println!("{payload} {size} B level {level}: uncompressed"),
    }
}

/// The records of `pubsub-loadgen --payload json` (connection 0), cut to `len` bytes.
fn orders(len: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 1.. {
        if s.len() >= len {
            break;
        }
        let side = ["buy", "sell"][i % 2];
        s += &format!("{{\"id\":{i},\"topic\":\"orders\",\"price\":{}.{:02},\"side\":\"{side}\"}},", i * 7 % 1000, i % 100);
    }
    s.truncate(len);
    s.into_bytes()
}
