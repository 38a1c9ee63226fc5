//! Memory held by permessage-deflate state, per window size and context-takeover setting,
//! counted by a global allocator that tracks live bytes. `cargo bench --bench deflate_memory`;
//! figures go to BENCHMARKS.md. It measures bytes, not time, so a busy machine does not move it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use apisix_pubsub_rs::deflate::{Deflater, Inflater, Params, SharedCompressor, SharedKey};

#[path = "common/deflate_payloads.rs"]
mod payloads;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size - layout.size();
            PEAK.fetch_max(now, Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes that `f` leaves allocated (what it returns keeps), and its peak above the start.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let v = f();
    (v, LIVE.load(Relaxed) - start, PEAK.load(Relaxed) - start)
}

fn params(server_nct: bool, client_nct: bool, bits: u8) -> Params {
    Params {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

fn kib(b: usize) -> String {
    format!("{:.1}", b as f64 / 1024.0)
}

fn main() {
    // Criterion passes its own flags (`--bench`); this binary takes none.
    let message = payloads::json(60_000);
    let small = payloads::json(1024);

    println!("## deflate state per connection, by window bits (KiB live, context takeover, after one 60 KB JSON message)");
    println!("| window bits | deflater | deflater peak while compressing | inflater | inflater peak while inflating |");
    println!("|---|---|---|---|---|");
    for bits in 9..=15u8 {
        let p = params(false, false, bits);
        let mut out = Vec::with_capacity(message.len() + 1024);
        let (d, d_live, d_peak) = measure(|| {
            let mut d = Deflater::new(&p, 1);
            d.deflate(&message, &mut out);
            d
        });
        let mut back = Vec::with_capacity(message.len());
        let (inf, i_live, i_peak) = measure(|| {
            let mut inf = Inflater::new(&p);
            inf.inflate(&out, true, &mut back, message.len()).unwrap();
            inf
        });
        assert_eq!(back, message);
        println!("| {bits} | {} | {} | {} | {} |", kib(d_live), kib(d_peak), kib(i_live), kib(i_peak));
        drop((d, inf));
    }

    println!();
    println!("## idle connection after a 1 KiB message each way, window 15 (KiB live per connection)");
    println!("| server context takeover | client context takeover | deflate | inflate | total | 10,000 idle connections (MiB) |");
    println!("|---|---|---|---|---|---|");
    // The worker's shared compressor exists before the connections: it is not theirs.
    let mut shared = SharedCompressor::new();
    shared.deflate(SharedKey { window_bits: 15, level: 1 }, &small, &mut Vec::new());
    for (server_nct, client_nct) in [(false, false), (true, false), (false, true), (true, true)] {
        let p = params(server_nct, client_nct, 15);
        let mut wire = Vec::new();
        Deflater::new(&params(true, true, 15), 1).deflate(&small, &mut wire);
        let (held, live_inf, _) = measure(|| {
            let mut inf = Inflater::new(&p);
            let mut out = Vec::new();
            inf.inflate(&wire, true, &mut out, small.len()).unwrap();
            drop(out);
            inf
        });
        let (held_d, live_def, _) = measure(|| {
            let mut out = Vec::new();
            if server_nct {
                // No state of its own: the worker's shared compressor does the work.
                shared.deflate(SharedKey::of(&p, 1).unwrap(), &small, &mut out);
                None
            } else {
                let mut d = Deflater::new(&p, 1);
                d.deflate(&small, &mut out);
                Some(d)
            }
        });
        let total = live_inf + live_def;
        println!(
            "| {} | {} | {} | {} | {} | {:.0} |",
            if server_nct { "no" } else { "yes" },
            if client_nct { "no" } else { "yes" },
            kib(live_def),
            kib(live_inf),
            kib(total),
            total as f64 * 10_000.0 / (1 << 20) as f64,
        );
        drop((held, held_d));
    }
    let (_, shared_live, _) = measure(|| {
        let mut s = SharedCompressor::new();
        s.deflate(SharedKey { window_bits: 15, level: 1 }, &small, &mut Vec::new());
        s
    });
    println!();
    println!("One worker-wide SharedCompressor state (window 15, level 1): {} KiB, whatever the number of connections.", kib(shared_live));

    let (_, miniz_c, _) = measure(|| Box::new(miniz_oxide::deflate::core::CompressorOxide::new(0)));
    let (_, miniz_i, _) = measure(|| miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw));
    println!("For comparison, miniz_oxide (window 15 only): compressor {} KiB, inflate state {} KiB.", kib(miniz_c), kib(miniz_i));
}
