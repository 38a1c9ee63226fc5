//! A connection's sending side: which messages go compressed, and with which state.

use std::cell::RefCell;

use super::{Config, Deflater, Params, SharedCompressor, SharedKey};

thread_local! {
    /// The worker's compressor for connections without server context takeover. An nginx
    /// worker is one thread, so this is one per worker; the messages it compresses are made on
    /// their own, so connections share it (and, for a push, its output) freely.
    static SHARED: RefCell<SharedCompressor> = RefCell::new(SharedCompressor::new());
    /// Where a message is compressed before it replaces its uncompressed bytes.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the worker's shared compressor.
pub fn with_shared<R>(f: impl FnOnce(&mut SharedCompressor) -> R) -> R {
    SHARED.with(|s| f(&mut s.borrow_mut()))
}

/// What one connection agreed to, for what it sends: messages of at least the threshold are
/// compressed, by the worker's shared compressor without server context takeover (the
/// connection then holds no deflate state), else by a [`Deflater`] of its own, made when the
/// first such message is sent.
#[derive(Debug)]
pub struct Sender {
    params: Params,
    config: Config,
    own: Option<Box<Deflater>>,
}

impl Sender {
    /// The sending side of `params`, agreed under `config`.
    pub fn new(params: Params, config: Config) -> Sender {
        Sender { params, config, own: None }
    }

    /// What was agreed.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// True with server context takeover: each message compressed refers back into the ones
    /// before it, so none may be compressed and then not sent.
    pub fn context_takeover(&self) -> bool {
        !self.params.server_no_context_takeover
    }

    /// True while a deflate state of its own is allocated (server context takeover only).
    pub fn holds_state(&self) -> bool {
        self.own.is_some()
    }

    /// The key of the shared compression of a message of `len` bytes, when it is to be
    /// compressed and the connection may share the bytes (no server context takeover).
    pub fn shared_key(&self, len: usize) -> Option<SharedKey> {
        if !self.config.compresses(len) {
            return None;
        }
        SharedKey::of(&self.params, self.config.level_for(len))
    }

    /// Appends the compressed `message` to `out` and returns true, or returns false (`out` as
    /// it was) when it goes uncompressed: under the threshold, or, without context takeover,
    /// when compressing does not make it smaller.
    /// A message that looks incompressible (random, or compressed already) goes as it is too,
    /// without being compressed first: see [`looks_incompressible`].
    pub fn deflate_into(&mut self, message: &[u8], out: &mut Vec<u8>) -> bool {
        if !self.config.compresses(message.len()) || looks_incompressible(message) {
            return false;
        }
        let start = out.len();
        match self.shared_key(message.len()) {
            Some(key) => {
                with_shared(|c| c.deflate(key, message, out));
                if out.len() - start >= message.len() {
                    out.truncate(start);
                    return false;
                }
            }
            None => {
                // With context takeover every message compressed goes into the window both sides
                // keep, so what is compressed is sent compressed, whatever its size.
                let (params, level) = (self.params, self.config.level);
                self.own.get_or_insert_with(|| Box::new(Deflater::new(&params, level))).deflate(message, out);
            }
        }
        true
    }

    /// Compresses `buf[from..]` in place (see [`Sender::deflate_into`]); true if it was.
    pub fn deflate_tail(&mut self, buf: &mut Vec<u8>, from: usize) -> bool {
        // A message under the threshold, the most common on many connections, returns before the
        // thread-local scratch is looked up: it costs nothing more than on a connection without
        // compression.
        if !self.config.compresses(buf.len() - from) {
            return false;
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            if !self.deflate_into(&buf[from..], &mut scratch) {
                return false;
            }
            buf.truncate(from);
            buf.extend_from_slice(&scratch);
            if scratch.capacity() > 1 << 20 {
                // One very large message does not pin its size in every worker.
                *scratch = Vec::new();
            }
            true
        })
    }
}

/// Bytes of a message [`looks_incompressible`] looks into, the fewest it decides on, and about
/// how many of them it counts.
const SAMPLE: usize = 4096;
const SAMPLE_MIN: usize = 1024;
const SAMPLES: usize = 256;

/// True when bytes of `message` taken evenly from its first [`SAMPLE`] (at least [`SAMPLE_MIN`]
/// of them) have a collision entropy over 7.25 bits a byte: random bytes, or bytes compressed or
/// encrypted already. Deflate would make them no smaller, at a cost of up to ten times that of
/// sending a message (zlib-rs spends ~1 ms on 60 KB of random bytes at level 1). A message it
/// misjudges (repeats of a random block) only goes uncompressed.
///
/// The collision entropy is −log2 of the chance that two bytes drawn from the message are equal:
/// 8 bits for random bytes, 7.75 to 7.95 for 4 KiB of a deflate stream (whose order-0 entropy is
/// 7.9), near 4 for JSON-like text. Never more than the order-0 (Shannon) entropy, it is over
/// 7.25 bits only where that is too, where no code for single bytes saves more than a tenth.
/// Counting pairs of equal bytes takes no logarithm per byte value, and estimates the chance
/// without bias from a sample: 205 to 307 bytes, at an odd stride (5 to 17), so that records of a
/// power-of-two size do not show one byte of theirs only. For 205 random bytes the count is 6
/// standard deviations under the limit.
pub fn looks_incompressible(message: &[u8]) -> bool {
    if message.len() < SAMPLE_MIN {
        return false;
    }
    let looked = message.len().min(SAMPLE);
    let stride = (looked / SAMPLES) | 1;
    let mut counts = [0u32; 256];
    for &b in message[..looked].iter().step_by(stride) {
        counts[usize::from(b)] += 1;
    }
    let n = looked.div_ceil(stride) as u64;
    // Ordered pairs of equal bytes, against pairs of any two: under 2^-7.25 = 1/152.2.
    let equal: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum::<u64>() - n;
    equal * 152 < n * (n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn only_messages_from_the_threshold_on_are_compressed_in_place() {
        let params = Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15, client_max_window_bits: 15 };
        let mut s = Sender::new(params, Config { threshold: 64, ..Config::default() });
        let head = b"frame header";
        let json = br#"{"order":1,"side":"buy","price":"101.25","qty":"3"}"#.repeat(4);
        for len in [0, 1, 63] {
            let mut buf = [&head[..], &json[..len]].concat();
            assert!(!s.deflate_tail(&mut buf, head.len()), "{len} bytes, under the threshold");
            assert_eq!(buf, [&head[..], &json[..len]].concat(), "{len} bytes left as they were");
        }
        for len in [64, json.len()] {
            let mut buf = [&head[..], &json[..len]].concat();
            assert!(s.deflate_tail(&mut buf, head.len()), "{len} bytes, from the threshold on");
            assert_eq!(&buf[..head.len()], head);
            assert!(buf.len() < head.len() + len, "{len} bytes compressed");
        }
    }

    #[test]
    fn random_bytes_of_every_seed_look_incompressible_from_the_fewest_bytes() {
        // Far from the limit: not one of 1,000 samples of the fewest bytes decided on misses.
        for seed in 0..1000 {
            for len in [SAMPLE_MIN, SAMPLE_MIN + 1, 3 * SAMPLE_MIN - 1, SAMPLE, 16 << 10] {
                assert!(looks_incompressible(&xorshift(seed, len)), "seed {seed}, {len} bytes");
            }
        }
    }

    #[test]
    fn deflated_bytes_look_incompressible() {
        // Records whose numbers vary, as a message of JSON does, deflated as a client would.
        let noise = xorshift(5, 24_000);
        let json: Vec<u8> = noise
            .chunks(6)
            .flat_map(|r| format!(r#"{{"id":{},"price":{}.{},"side":"{}"}},"#, u32::from(r[0]) << 8 | u32::from(r[1]), r[2], r[3], ["buy", "sell"][usize::from(r[4] & 1)]).into_bytes())
            .collect();
        let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut deflated = Vec::with_capacity(json.len());
        c.compress_vec(&json, &mut deflated, flate2::FlushCompress::Finish).unwrap();
        assert!(deflated.len() > 3 * SAMPLE_MIN, "{} bytes", deflated.len());
        assert!(looks_incompressible(&deflated));
        assert!(!looks_incompressible(&json));
    }

    #[test]
    fn text_and_records_with_one_random_byte_look_compressible() {
        // Records of 2 to 16 bytes with one random byte each: a stride that divides the record
        // would see that byte only, and take the whole for random.
        let noise = xorshift(9, 16 << 10);
        for record in [2usize, 4, 8, 16] {
            let m: Vec<u8> = noise.iter().take((16 << 10) / record).flat_map(|&b| std::iter::once(b).chain(std::iter::repeat(0).take(record - 1))).collect();
            for len in [SAMPLE_MIN, 1500, SAMPLE, m.len()] {
                assert!(!looks_incompressible(&m[..len]), "records of {record}, {len} bytes");
            }
        }
        // Base64 (6 bits a byte) and hex (4) of random bytes compress.
        let b64: Vec<u8> = noise.iter().map(|&b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[usize::from(b & 63)]).collect();
        let hex: Vec<u8> = noise.iter().map(|&b| b"0123456789abcdef"[usize::from(b & 15)]).collect();
        for m in [&b64, &hex] {
            assert!(!looks_incompressible(&m[..SAMPLE_MIN]));
            assert!(!looks_incompressible(m));
        }
    }
}
