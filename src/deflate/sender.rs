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

/// Bytes of a message looked at by [`looks_incompressible`], and the fewest it decides on.
const SAMPLE: usize = 4096;
const SAMPLE_MIN: usize = 1024;

/// True when the first [`SAMPLE`] bytes of `message` (at least [`SAMPLE_MIN`] of them) have an
/// order-0 entropy over 7.5 bits a byte: random bytes, or bytes compressed or encrypted already
/// (7.8 to 7.95 for such samples; JSON-like text is near 5). Deflate would make them no smaller,
/// at a cost of up to ten times that of sending a message (zlib-rs spends ~1 ms on 60 KB of
/// random bytes at level 1); a histogram costs about a microsecond. A message it misjudges
/// (repeats of a random block) only goes uncompressed.
pub fn looks_incompressible(message: &[u8]) -> bool {
    let sample = &message[..message.len().min(SAMPLE)];
    if sample.len() < SAMPLE_MIN {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[usize::from(b)] += 1;
    }
    let n = sample.len() as f64;
    let bits: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| {
        let p = f64::from(c) / n;
        -p * p.log2()
    }).sum();
    bits > 7.5
}
