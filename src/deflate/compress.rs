//! Compressing sent messages: per connection with context takeover, once per worker without.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

use super::{encoder, Params, TAIL};

/// Compresses all of `message` into `out` with a sync flush and removes the flush's trailing
/// empty block (RFC 7692 §7.2.1).
fn deflate_message(state: &mut Compress, message: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let mut input = message;
    loop {
        // Deflate grows incompressible data by a few bytes per 16 KiB block.
        out.reserve(input.len() + input.len() / 64 + 64);
        let before = state.total_in();
        state.compress_vec(input, out, FlushCompress::Sync).expect("deflate with a sync flush and room to write cannot fail");
        input = &input[(state.total_in() - before) as usize..];
        // The flush is complete when it did not fill the room it had.
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    if out.len() == start {
        // An empty message right after another: zlib has nothing to flush and writes nothing.
        // One byte of an empty stored block's header is what the receiver completes with the tail.
        out.push(0x00);
    } else {
        debug_assert!(out[start..].ends_with(&TAIL), "a sync flush ends with an empty stored block");
        out.truncate(out.len() - TAIL.len());
    }
}

/// True when `message`, compressed on its own at `level`, goes through [`encoder`] rather than a
/// zlib state: under [`encoder::MAX_LEN`], where zlib's reset after each message (a 128 KiB hash
/// table cleared) costs more than compressing it; level 0 (stored, no compression) stays zlib's.
fn by_encoder(message: &[u8], level: u32) -> bool {
    message.len() < encoder::MAX_LEN && level > 0
}

fn new_state(window_bits: u8, level: u32) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, window_bits)
}

/// Compresses one connection's messages. With server context takeover each message may refer
/// back into the ones before it, so the state (about 2^(window_bits+2) bytes plus zlib's hash
/// tables) lives as long as the connection, and the bytes are that connection's alone. Without
/// it the state is reset after each message; [`SharedCompressor`] then does the same work with
/// one state per worker instead of one per connection.
#[derive(Debug)]
pub struct Deflater {
    state: Compress,
    reset: bool,
    window_bits: u8,
    level: u32,
}

impl Deflater {
    /// A deflater for the server's side of `params`, at zlib `level` (0–9).
    pub fn new(params: &Params, level: u32) -> Deflater {
        let window_bits = params.server_max_window_bits;
        Deflater { state: new_state(window_bits, level), reset: params.server_no_context_takeover, window_bits, level }
    }

    /// Appends the compressed payload of `message` to `out`, to be sent with RSV1 on its first frame.
    pub fn deflate(&mut self, message: &[u8], out: &mut Vec<u8>) {
        if self.reset && by_encoder(message, self.level) {
            return encoder::deflate_alone(message, self.level, self.window_bits, out);
        }
        deflate_message(&mut self.state, message, out);
        if self.reset {
            self.state.reset();
        }
    }
}

/// What decides the compressed bytes of a message sent without context takeover: connections
/// with equal keys can share them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedKey {
    /// The window the server compresses with.
    pub window_bits: u8,
    /// zlib level.
    pub level: u32,
}

impl SharedKey {
    /// The key of a connection's messages, or `None` with server context takeover (each
    /// connection's bytes then depend on what it was sent before: use a [`Deflater`]).
    pub fn of(params: &Params, level: u32) -> Option<SharedKey> {
        params.server_no_context_takeover.then_some(SharedKey { window_bits: params.server_max_window_bits, level })
    }
}

/// The compressors of a worker for messages sent without context takeover: [`encoder`] for
/// messages under 16 KiB, and for larger ones a zlib state per key, made when first used and
/// reset after each message. Connections that agreed to `server_no_context_takeover` keep no deflate
/// state of their own; a message pushed to many of them is compressed once per key.
#[derive(Debug, Default)]
pub struct SharedCompressor {
    states: Vec<(SharedKey, Compress)>,
}

impl SharedCompressor {
    /// No state until a key is first used.
    pub fn new() -> SharedCompressor {
        SharedCompressor::default()
    }

    fn state(&mut self, key: SharedKey) -> &mut Compress {
        let i = match self.states.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.states.push((key, new_state(key.window_bits, key.level)));
                self.states.len() - 1
            }
        };
        &mut self.states[i].1
    }

    /// Appends the compressed payload of `message`, made on its own, to `out`.
    pub fn deflate(&mut self, key: SharedKey, message: &[u8], out: &mut Vec<u8>) {
        if by_encoder(message, key.level) {
            return encoder::deflate_alone(message, key.level, key.window_bits, out);
        }
        let state = self.state(key);
        deflate_message(state, message, out);
        state.reset();
    }

    /// The compressed payload of `message` as shared bytes, for every connection of `key`
    /// (cloning a [`Bytes`] is a reference count, not a copy); `None` when it is no smaller than
    /// the message (random or already compressed data), which is then better sent as it is:
    /// without context takeover a message may go uncompressed at no cost to the next.
    pub fn deflate_shared(&mut self, key: SharedKey, message: &[u8]) -> Option<Bytes> {
        let mut out = Vec::new();
        self.deflate(key, message, &mut out);
        (out.len() < message.len()).then(|| Bytes::from(out))
    }

    /// Keys with a zlib state allocated: one per window size and level in use for messages of
    /// 16 KiB and more.
    pub fn keys(&self) -> impl Iterator<Item = SharedKey> + '_ {
        self.states.iter().map(|(k, _)| *k)
    }
}
