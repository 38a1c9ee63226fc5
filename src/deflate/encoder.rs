//! A DEFLATE (RFC 1951) encoder for a message compressed on its own, as every message is without
//! context takeover: LZ77 over the message alone, then one block of the cheapest of dynamic
//! Huffman codes, the fixed codes or stored bytes, ended as a sync flush ends (the empty stored
//! block's header, its `00 00 ff ff` left out as RFC 7692 §7.2.1 says). Level 1 (the default)
//! takes one candidate per hash and writes the fixed codes as it goes; levels 2–9 search hash
//! chains with zlib's effort per level.
//!
//! Why not zlib's state, reset after each message: a reset clears its 128 KiB hash table, which
//! cost more than compressing a 1 KiB message at level 1 (BENCHMARKS.md). Here level 1's table is
//! never cleared per message (an entry carries its message's base and an old one is out of any
//! window), and the chains of the other levels have as many entries as the message has bytes (up
//! to [`MAX_LEN`]), so a message pays for its own size only; nothing of a message is kept for the
//! next. The bytes are not zlib's but any inflater reads them.

use std::cell::RefCell;

/// Messages this encoder takes: shorter than this. Larger ones go to zlib, whose reset is then
/// small next to the message.
pub const MAX_LEN: usize = 16 << 10;

/// Shortest match kept: the hash covers four bytes.
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
/// Bytes zlib keeps between the farthest match and the end of its window; kept here too, so a
/// window of 2^bits is never reached for.
const MIN_LOOKAHEAD: usize = MAX_MATCH + 3 + 1;

/// Match-search effort per level (zlib's configuration table): a match this long is good
/// enough to search a quarter of the chain after it; longer than `lazy`, no later match is
/// tried instead; `nice` stops the search; `chain` candidates at most. Level 1–3 are greedy, and
/// enter the positions inside a match into the chains only for matches of at most `insert`.
#[derive(Clone, Copy)]
struct Effort {
    good: usize,
    lazy: usize,
    nice: usize,
    chain: usize,
    insert: usize,
}

const EFFORT: [Effort; 10] = [
    Effort { good: 0, lazy: 0, nice: 0, chain: 0, insert: 0 },
    Effort { good: 4, lazy: 0, nice: 8, chain: 4, insert: 4 },
    Effort { good: 4, lazy: 0, nice: 16, chain: 8, insert: 5 },
    Effort { good: 4, lazy: 0, nice: 32, chain: 32, insert: 6 },
    Effort { good: 4, lazy: 4, nice: 16, chain: 16, insert: MAX_MATCH },
    Effort { good: 8, lazy: 16, nice: 32, chain: 32, insert: MAX_MATCH },
    Effort { good: 8, lazy: 16, nice: 128, chain: 128, insert: MAX_MATCH },
    Effort { good: 8, lazy: 32, nice: 128, chain: 256, insert: MAX_MATCH },
    Effort { good: 32, lazy: 128, nice: 258, chain: 1024, insert: MAX_MATCH },
    Effort { good: 32, lazy: 258, nice: 258, chain: 4096, insert: MAX_MATCH },
];

/// The worker's buffers, kept between messages (an nginx worker is one thread).
#[derive(Default)]
struct Scratch {
    /// Per hash, the last position with it, plus one (0: none).
    head: Vec<u16>,
    /// Level 1's: per hash, the last position with it.
    fast_head: FastHead,
    /// Per position, the one before it with the same hash, plus one.
    prev: Vec<u16>,
    /// Literals (the byte) and matches ([`MATCH`] | (length − 3) << 16 | distance).
    tokens: Vec<u32>,
    huffman: Huffman,
    /// The code lengths of both trees in a row, and their code-length symbols.
    lens: Vec<u8>,
    cl_syms: Vec<(u8, u8)>,
    /// The block's bytes as they are written, before they go out (or a stored block instead).
    bytes: Vec<u8>,
}

/// Room for building a Huffman tree of up to [`LIT_CODES`] leaves.
#[derive(Default)]
struct Huffman {
    /// Count << 9 | symbol, sorted: by count, then symbol.
    leaves: Vec<u32>,
    sorted: Vec<u32>,
    /// The leaves' weights, then a sentinel.
    weight: Vec<u32>,
    /// The inner nodes' weights as they are made, then sentinels.
    inner: Vec<u32>,
    parent: Vec<u16>,
    depth: Vec<u16>,
}

const MATCH: u32 = 1 << 31;

/// Room for what level 1 writes for `len` bytes before the size is compared with stored bytes':
/// 9 bits a byte at the most (a literal's longest fixed code; a match is at most 31 bits for 4
/// bytes or more), the block's headers and end, and [`BitWriter`]'s writes of 8 bytes at a time.
/// Other levels write a block only when it is shorter than stored bytes.
fn most_bytes(len: usize) -> usize {
    len + len / 8 + 16
}

/// Under this many literals and matches a block goes with the fixed codes (or stored).
const FEW_TOKENS: usize = 32;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Appends `message` (shorter than [`MAX_LEN`]) compressed at `level` (1–9), with matches within
/// a window of `2^window_bits` bytes, to `out`: a non-final block and the header of an empty
/// stored block, padded to a byte, as zlib's sync flush without its last four bytes.
pub fn deflate_alone(message: &[u8], level: u32, window_bits: u8, out: &mut Vec<u8>) {
    assert!(message.len() < MAX_LEN && (1..=9).contains(&level) && (9..=15).contains(&window_bits));
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let max_dist = (1usize << window_bits) - MIN_LOOKAHEAD;
        // Stored bytes and both blocks' headers: what a block of codes must not pass.
        let limit = message.len() + STORED_OVERHEAD;
        let mut bytes = std::mem::take(&mut s.bytes);
        let room = most_bytes(message.len());
        if bytes.len() < room {
            bytes.resize(room, 0);
        }
        let mut bits = BitWriter { buf: &mut bytes, pos: 0, acc: 0, n: 0 };
        let coded = if level == 1 {
            // The fastest: the fixed codes, as zlib-ng's and zlib-rs's level 1 send, written as
            // the matches are found (building codes for the message cost 1 KiB of JSON-like
            // data half its time).
            bits.put(0b010, 3);
            bits = fast_lz77(message, max_dist, &mut s.fast_head, FixedCodes(bits)).0;
            true
        } else {
            let mut freqs = Freqs::new();
            parse(message, EFFORT[level as usize], max_dist, s, &mut freqs);
            write_block(message, s, &freqs, &mut bits)
        };
        // The block's end code, if the fixed codes' (seven zero bits), and the sync flush's
        // empty stored block: BFINAL 0, BTYPE 00, then up to the byte.
        bits.put(0, if level == 1 { 7 + 3 } else { 3 });
        let n = bits.finish();
        if coded && n <= limit {
            out.extend_from_slice(&bytes[..n]);
        } else {
            write_stored(message, out);
        }
        s.bytes = bytes;
    });
}

// ---------------------------------------------------------------------------------------------
// LZ77

fn hash_bits(len: usize) -> u32 {
    (usize::BITS - len.leading_zeros()).saturating_sub(1).clamp(8, 14)
}

/// Length of the common prefix of `m[a..]` and `m[b..]`, at most `max`: 8 bytes a step.
#[inline(always)]
fn common_len(m: &[u8], a: usize, b: usize, max: usize) -> usize {
    let (x, y) = (&m[a..a + max], &m[b..b + max]);
    let mut n = 0;
    for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let d = u64::from_le_bytes(p.try_into().expect("8 bytes")) ^ u64::from_le_bytes(q.try_into().expect("8 bytes"));
        if d != 0 {
            return n + (d.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + x[n..].iter().zip(&y[n..]).take_while(|(p, q)| p == q).count()
}

struct Chains<'a> {
    m: &'a [u8],
    head: &'a mut [u16],
    prev: &'a mut [u16],
    shift: u32,
    /// The next position to enter into the chains: all before it are in.
    next: usize,
    /// Positions from here on have fewer than four bytes after them: they are never entered.
    last: usize,
    max_dist: usize,
}

impl Chains<'_> {
    fn hash(&self, at: usize) -> usize {
        let four = u32::from_le_bytes(self.m[at..at + 4].try_into().expect("4 bytes"));
        (four.wrapping_mul(0x9e37_79b1) >> self.shift) as usize
    }

    fn enter(&mut self, at: usize, h: usize) {
        self.prev[at] = self.head[h];
        self.head[h] = (at + 1) as u16;
    }

    /// Enters the positions from the next one up to `end`, or skips them (`enter` false).
    fn advance(&mut self, end: usize, enter: bool) {
        if enter {
            while self.next < end.min(self.last) {
                let h = self.hash(self.next);
                self.enter(self.next, h);
                self.next += 1;
            }
        }
        self.next = self.next.max(end);
    }

    /// The longest match for `at`, the next position to enter, (length, distance) among at most
    /// `chain` earlier positions; length 0 when none reaches [`MIN_MATCH`]. Enters `at`.
    fn longest(&mut self, at: usize, chain: usize, nice: usize) -> (usize, usize) {
        debug_assert_eq!(self.next, at);
        if at >= self.last {
            self.next = at + 1;
            return (0, 0);
        }
        let max = (self.m.len() - at).min(MAX_MATCH);
        let h = self.hash(at);
        let mut cand = self.head[h];
        self.enter(at, h);
        self.next = at + 1;
        let (mut best, mut best_dist) = (MIN_MATCH - 1, 0);
        let mut left = chain;
        while cand != 0 && left > 0 {
            let c = usize::from(cand) - 1;
            let dist = at - c;
            if dist > self.max_dist {
                break;
            }
            // A candidate that cannot beat the best differs at the best's length.
            if self.m[c + best] == self.m[at + best] {
                let n = common_len(self.m, c, at, max);
                if n > best {
                    (best, best_dist) = (n, dist);
                    if n >= nice.min(max) {
                        break;
                    }
                }
            }
            cand = self.prev[c];
            left -= 1;
        }
        if best_dist == 0 {
            (0, 0)
        } else {
            (best, best_dist)
        }
    }
}

/// Fills `s.tokens` with the literals and matches of `m`, and `freqs` with their codes' counts.
fn parse(m: &[u8], effort: Effort, max_dist: usize, s: &mut Scratch, freqs: &mut Freqs) {
    s.tokens.clear();
    let mut sink = Tokens { tokens: &mut s.tokens, freqs };
    lz77(m, effort, max_dist, &mut s.head, &mut s.prev, &mut sink);
    freqs.lit[END] += 1;
}

/// Where [`lz77`] puts the literals and matches it finds.
trait Sink {
    fn literal(&mut self, b: u8);
    fn matched(&mut self, len: usize, dist: usize);
}

/// Kept for a block whose codes are made from them.
struct Tokens<'a> {
    tokens: &'a mut Vec<u32>,
    freqs: &'a mut Freqs,
}

impl Sink for Tokens<'_> {
    fn literal(&mut self, b: u8) {
        self.tokens.push(u32::from(b));
        self.freqs.lit[usize::from(b)] += 1;
    }

    fn matched(&mut self, len: usize, dist: usize) {
        self.tokens.push(MATCH | ((len - 3) as u32) << 16 | dist as u32);
        self.freqs.lit[257 + usize::from(LEN_CODE[len - 3].0)] += 1;
        self.freqs.dist[usize::from(dist_code(dist).0)] += 1;
    }
}

/// Written at once with the fixed codes (held, not borrowed, so that the bits stay in registers).
struct FixedCodes<'a>(BitWriter<'a>);

impl Sink for FixedCodes<'_> {
    #[inline]
    fn literal(&mut self, b: u8) {
        let s = usize::from(b);
        self.0.put(u32::from(FIXED_LIT_CODES[s]), u32::from(FIXED_LIT[s]));
    }

    /// One write for the length's code and extra bits and the distance's (at most 8 + 5 + 5 + 13 bits).
    #[inline]
    fn matched(&mut self, len: usize, dist: usize) {
        let l = FIXED_LEN[(len - 3) & 0xff];
        let d = fixed_dist(dist);
        let l_bits = l >> 24;
        self.0.put(l & 0xff_ffff | (d & 0xff_ffff) << l_bits, l_bits + (d >> 24));
    }
}

/// The literals and matches of `m`, into `sink`.
fn lz77(m: &[u8], effort: Effort, max_dist: usize, head: &mut Vec<u16>, prev: &mut Vec<u16>, sink: &mut impl Sink) {
    let bits = hash_bits(m.len());
    head.clear();
    head.resize(1 << bits, 0);
    prev.resize(m.len().max(prev.len()), 0);
    let last = m.len().saturating_sub(MIN_MATCH - 1);
    let mut chains = Chains { m, head, prev, shift: 32 - bits, next: 0, last, max_dist };
    let mut i = 0;
    // A match found for `i` while looking one byte ahead.
    let mut ahead: Option<(usize, usize)> = None;
    while i < m.len() {
        let (len, dist) = ahead.take().unwrap_or_else(|| chains.longest(i, effort.chain, effort.nice));
        if len < MIN_MATCH {
            sink.literal(m[i]);
            i += 1;
            continue;
        }
        if len < effort.lazy && i + 1 < m.len() {
            let chain = if len >= effort.good { effort.chain / 4 } else { effort.chain };
            let next = chains.longest(i + 1, chain.max(1), effort.nice);
            if next.0 > len {
                sink.literal(m[i]);
                i += 1;
                ahead = Some(next);
                continue;
            }
        }
        sink.matched(len, dist);
        i += len;
        chains.advance(i, len <= effort.insert);
    }
}

/// Level 1's literals and matches of `m`, into `sink`. Greedy and one candidate per hash, as
/// LZ4 and zlib-ng's quick strategy search: the last position with the same hash of four bytes,
/// taken if it is in the window and its four bytes are the same.
#[inline(never)] // A function of its own in profiles.
fn fast_lz77<S: Sink>(m: &[u8], max_dist: usize, head: &mut FastHead, mut sink: S) -> S {
    let bits = fast_hash_bits(m.len());
    let shift = 32 - bits;
    let (table, base) = head.next();
    let four = |at: usize| m.get(at..at.wrapping_add(4)).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let hash = |v: u32| (v.wrapping_mul(0x9e37_79b1) >> shift) as usize;
    // Positions with four bytes from them.
    let end = m.len().saturating_sub(MIN_MATCH - 1);
    let mut i = 0;
    while i < end {
        let v = four(i).expect("four bytes from i");
        // Under FAST_HEAD already: the mask only spares the bounds check.
        let h = hash(v) & (FAST_HEAD - 1);
        let here = base.wrapping_add(i as u32);
        let dist = here.wrapping_sub(table[h]) as usize;
        table[h] = here;
        // 1 ≤ distance ≤ max_dist (an entry of an earlier message is 65,536 or more back), and
        // the same four bytes; whatever the table held, a match is only ever taken from the
        // message's own bytes before `i`.
        let c = i.wrapping_sub(dist);
        if dist.wrapping_sub(1) < max_dist && four(c) == Some(v) {
            let max = (m.len() - i).min(MAX_MATCH);
            let len = MIN_MATCH + common_len(m, c + MIN_MATCH, i + MIN_MATCH, max - MIN_MATCH);
            sink.matched(len, dist);
            i += len;
            continue;
        }
        sink.literal(m[i]);
        i += 1;
    }
    for &b in &m[i..] {
        sink.literal(b);
    }
    sink
}

/// Level 1's hash table, of its largest size, and where its entries count from.
const FAST_HEAD: usize = 1 << 14;
/// Between the messages' first positions: more than the largest window plus [`MAX_LEN`].
const FAST_STRIDE: u32 = 1 << 16;

/// Level 1's hash table, not cleared between messages: an entry is a position plus its message's
/// base, the base moving by [`FAST_STRIDE`] a message, so that an entry left by an earlier
/// message is always farther back than any window. Cleared when the base comes round again, once
/// every 65,536 messages.
#[derive(Default)]
struct FastHead {
    table: Option<Box<[u32; FAST_HEAD]>>,
    base: u32,
}

impl FastHead {
    /// The table and the base of the next message.
    fn next(&mut self) -> (&mut [u32; FAST_HEAD], u32) {
        self.base = self.base.wrapping_add(FAST_STRIDE);
        let fresh = self.table.is_none() || self.base < FAST_STRIDE;
        let table = self.table.get_or_insert_with(|| vec![0; FAST_HEAD].into_boxed_slice().try_into().expect("FAST_HEAD entries"));
        if fresh {
            // Entries of base 0 are far enough from any message of a base from FAST_STRIDE on.
            table.fill(0);
            self.base = FAST_STRIDE;
        }
        (table, self.base)
    }
}

/// Level 1's hash table: an entry per byte of the message, at least 256 and at most 16,384.
fn fast_hash_bits(len: usize) -> u32 {
    (usize::BITS - len.leading_zeros()).clamp(8, 14)
}

// ---------------------------------------------------------------------------------------------
// Codes

const END: usize = 256;
const LIT_CODES: usize = 286;
const DIST_CODES: usize = 30;
const CL_CODES: usize = 19;
/// The order the code-length code lengths are sent in (RFC 1951 §3.2.7).
const CL_ORDER: [usize; CL_CODES] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

struct Freqs {
    lit: [u32; LIT_CODES],
    dist: [u32; DIST_CODES],
}

impl Freqs {
    fn new() -> Freqs {
        Freqs { lit: [0; LIT_CODES], dist: [0; DIST_CODES] }
    }
}

/// Per match length − 3: (length code − 257, extra bits).
const LEN_CODE: [(u8, u8); 256] = {
    let mut t = [(0u8, 0u8); 256];
    let mut x = 0;
    while x < 256 {
        t[x] = if x < 8 {
            (x as u8, 0)
        } else if x == 255 {
            (28, 0)
        } else {
            let top = (usize::BITS - 1 - x.leading_zeros()) as usize;
            let extra = top - 2;
            ((4 * (top - 1) + ((x >> extra) & 3)) as u8, extra as u8)
        };
        x += 1;
    }
    t
};

/// The distance code of `dist` (1–32768) and its number of extra bits.
const fn dist_code(dist: usize) -> (u8, u8) {
    let d = dist - 1;
    if d < 4 {
        return (d as u8, 0);
    }
    let top = (usize::BITS - 1 - d.leading_zeros()) as usize;
    ((2 * top + ((d >> (top - 1)) & 1)) as u8, (top - 1) as u8)
}

/// Code lengths for `freqs` of at most `limit` bits (Huffman's, with the counts evened out
/// until they fit). At least two symbols get a code, as zlib makes sure for old inflaters.
fn code_lengths(freqs: &[u32], limit: u8, lens: &mut [u8], h: &mut Huffman) {
    lens.fill(0);
    // Without a branch per symbol: every one is written, and the next overwrites an unused one.
    h.leaves.resize(freqs.len() + 2, 0);
    let mut k = 0;
    for (s, &f) in freqs.iter().enumerate() {
        h.leaves[k] = f << 9 | s as u32;
        k += usize::from(f > 0);
    }
    h.leaves.truncate(k);
    for s in 0..2 {
        if h.leaves.len() < 2 && !h.leaves.iter().any(|&l| l & 0x1ff == s) {
            h.leaves.push(1 << 9 | s);
        }
    }
    sort_by_count(&mut h.leaves, &mut h.sorted);
    let k = h.leaves.len();
    // Nodes: the leaves 0..k, then the inner nodes k..2k-1 in the order they are made.
    h.parent.resize(2 * k - 1, 0);
    h.depth.resize(2 * k - 1, 0);
    h.weight.resize(k + 1, 0);
    h.inner.resize(k, 0);
    loop {
        // Two queues, the leaves by count and the inner nodes as made (by weight too), each
        // ending in a weight no node has, so that taking the lighter front needs no branch.
        for (w, &l) in h.weight.iter_mut().zip(&h.leaves) {
            *w = l >> 9;
        }
        h.weight[k] = u32::MAX;
        h.inner.fill(u32::MAX);
        let (mut leaf, mut inner) = (0, 0);
        for made in 0..k - 1 {
            let mut sum = 0;
            for _ in 0..2 {
                let from_leaf = h.weight[leaf] <= h.inner[inner];
                let node = if from_leaf { leaf } else { k + inner };
                sum += if from_leaf { h.weight[leaf] } else { h.inner[inner] };
                h.parent[node] = (k + made) as u16;
                leaf += usize::from(from_leaf);
                inner += usize::from(!from_leaf);
            }
            h.inner[made] = sum;
        }
        let root = 2 * k - 2;
        h.depth[root] = 0;
        let mut deepest = 0;
        for node in (0..root).rev() {
            h.depth[node] = h.depth[usize::from(h.parent[node])] + 1;
            deepest = deepest.max(h.depth[node]);
        }
        if deepest <= u16::from(limit) {
            for (i, &l) in h.leaves.iter().enumerate() {
                lens[(l & 0x1ff) as usize] = h.depth[i] as u8;
            }
            return;
        }
        for l in &mut h.leaves {
            *l = ((*l >> 9).div_ceil(2)) << 9 | (*l & 0x1ff);
        }
        sort_by_count(&mut h.leaves, &mut h.sorted);
    }
}

/// Sorts `leaves` (count << 9 | symbol, in symbol order) by count, symbols of equal counts in
/// order: a radix sort, 8 bits of the count a pass, as many as the largest count needs. A
/// comparison sort's unpredictable branches made it a third of a 1 KiB message's time.
fn sort_by_count(leaves: &mut Vec<u32>, tmp: &mut Vec<u32>) {
    let largest = leaves.iter().max().map_or(0, |&l| l >> 9);
    let mut shift = 9;
    while largest >> (shift - 9) > 0 {
        let mut at = [0u32; 257];
        for &l in leaves.iter() {
            at[((l >> shift) & 0xff) as usize + 1] += 1;
        }
        for b in 1..257 {
            at[b] += at[b - 1];
        }
        tmp.resize(leaves.len(), 0);
        for &l in leaves.iter() {
            let b = ((l >> shift) & 0xff) as usize;
            tmp[at[b] as usize] = l;
            at[b] += 1;
        }
        std::mem::swap(leaves, tmp);
        shift += 8;
    }
}

/// The canonical codes of `lens` (RFC 1951 §3.2.2), bit-reversed to be written LSB first.
const fn codes_of<const N: usize>(lens: &[u8; N]) -> [u16; N] {
    let mut count = [0u16; 16];
    let mut s = 0;
    while s < N {
        count[lens[s] as usize] += 1;
        s += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    let mut bits = 1;
    while bits < 16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
        bits += 1;
    }
    let mut codes = [0u16; N];
    let mut s = 0;
    while s < N {
        let l = lens[s] as usize;
        if l > 0 {
            codes[s] = next[l].reverse_bits() >> (16 - l);
            next[l] += 1;
        }
        s += 1;
    }
    codes
}

/// The fixed codes (RFC 1951 §3.2.6).
const FIXED_LIT: [u8; 288] = {
    let mut lit = [8u8; 288];
    let mut s = 144;
    while s < 280 {
        lit[s] = if s < 256 { 9 } else { 7 };
        s += 1;
    }
    lit
};
const FIXED_LIT_CODES: [u16; 288] = codes_of(&FIXED_LIT);
const FIXED_DIST: [u8; DIST_CODES] = [5; DIST_CODES];
const FIXED_DIST_CODES: [u16; DIST_CODES] = codes_of(&FIXED_DIST);
/// Per match length − 3, its fixed code and extra bits as written: the bits, and their number
/// in the top byte.
const FIXED_LEN: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut x = 0;
    while x < 256 {
        let (code, extra) = LEN_CODE[x];
        let s = 257 + code as usize;
        let bits = FIXED_LIT[s] as u32;
        t[x] = (FIXED_LIT_CODES[s] as u32 | ((x as u32) & ((1 << extra) - 1)) << bits) | (bits + extra as u32) << 24;
        x += 1;
    }
    t
};

/// [`FIXED_LEN`] for distances, computed for the near ones.
#[inline]
fn fixed_dist(dist: usize) -> u32 {
    match FIXED_DIST_NEAR.get(dist - 1) {
        Some(&d) => d,
        None => fixed_dist_of(dist),
    }
}

const fn fixed_dist_of(dist: usize) -> u32 {
    let (code, extra) = dist_code(dist);
    FIXED_DIST_CODES[code as usize] as u32 | (((dist - 1) as u32) & ((1 << extra) - 1)) << 5 | (5 + extra as u32) << 24
}

const FIXED_DIST_NEAR: [u32; 512] = {
    let mut t = [0u32; 512];
    let mut d = 0;
    while d < 512 {
        t[d] = fixed_dist_of(d + 1);
        d += 1;
    }
    t
};

/// The code-length symbols of `lens` (16: repeat the last 3–6 times, 17: 3–10 zeros, 18: 11–138
/// zeros), each with its extra bits' value.
fn run_lengths(lens: &[u8], out: &mut Vec<(u8, u8)>) {
    let mut i = 0;
    while i < lens.len() {
        let v = lens[i];
        let mut run = lens[i..].iter().take_while(|&&l| l == v).count();
        i += run;
        if v == 0 {
            while run >= 11 {
                let r = run.min(138);
                out.push((18, (r - 11) as u8));
                run -= r;
            }
            if run >= 3 {
                out.push((17, (run - 3) as u8));
                run = 0;
            }
        } else {
            out.push((v, 0));
            run -= 1;
            while run >= 3 {
                let r = run.min(6);
                out.push((16, (r - 3) as u8));
                run -= r;
            }
        }
        out.extend(std::iter::repeat((v, 0)).take(run));
    }
}

fn cl_extra_bits(sym: u8) -> u32 {
    match sym {
        16 => 2,
        17 => 3,
        18 => 7,
        _ => 0,
    }
}

/// Bits of the tokens' codes under code lengths `lit` and `dist` (extra bits, the same under
/// any codes, not counted).
fn code_bits(freqs: &Freqs, lit: &[u8], dist: &[u8]) -> u64 {
    let lit_bits: u64 = freqs.lit.iter().zip(lit).map(|(&f, &l)| u64::from(f) * u64::from(l)).sum();
    lit_bits + freqs.dist.iter().zip(dist).map(|(&f, &l)| u64::from(f) * u64::from(l)).sum::<u64>()
}

/// Bits of the tokens' extra bits.
fn extra_bits(freqs: &Freqs) -> u64 {
    let len: u64 = freqs.lit[257..].iter().zip(LEN_CODES_EXTRA).map(|(&f, e)| u64::from(f) * u64::from(e)).sum();
    len + freqs.dist.iter().enumerate().skip(4).map(|(s, &f)| u64::from(f) * (s as u64 / 2 - 1)).sum::<u64>()
}

/// Extra bits per length code − 257.
const LEN_CODES_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];

/// Writes one non-final block of `tokens` (of `m`), with whichever codes are shortest, or
/// returns false (nothing written) when a stored block would be shorter still.
fn write_block(m: &[u8], s: &mut Scratch, freqs: &Freqs, bits: &mut BitWriter<'_>) -> bool {
    let extra = extra_bits(freqs);
    let fixed = extra + code_bits(freqs, &FIXED_LIT, &FIXED_DIST);
    // Stored: up to the byte, LEN and NLEN, the bytes (the padding counted at its most).
    let stored = 7 + 32 + 8 * m.len() as u64;
    // Dynamic codes' header alone is some 60 bits or more: they cannot win on a few symbols.
    let mut lit = [0u8; LIT_CODES];
    let mut dist = [0u8; DIST_CODES];
    let (mut hlit, mut hdist, mut hclen, mut cl) = (0, 0, 0, [0u8; CL_CODES]);
    let mut dynamic = u64::MAX;
    if s.tokens.len() >= FEW_TOKENS {
        code_lengths(&freqs.lit, 15, &mut lit, &mut s.huffman);
        code_lengths(&freqs.dist, 15, &mut dist, &mut s.huffman);
        hlit = 257 + lit[257..].iter().rposition(|&l| l > 0).map_or(0, |p| p + 1);
        hdist = 1 + dist.iter().rposition(|&l| l > 0).unwrap_or(0);
        s.lens.clear();
        s.lens.extend_from_slice(&lit[..hlit]);
        s.lens.extend_from_slice(&dist[..hdist]);
        s.cl_syms.clear();
        run_lengths(&s.lens, &mut s.cl_syms);
        let mut cl_freqs = [0u32; CL_CODES];
        for &(sym, _) in &s.cl_syms {
            cl_freqs[usize::from(sym)] += 1;
        }
        code_lengths(&cl_freqs, 7, &mut cl, &mut s.huffman);
        hclen = 4.max(1 + CL_ORDER.iter().rposition(|&sym| cl[sym] > 0).unwrap_or(0));
        let header = 5 + 5 + 4 + 3 * hclen as u64
            + s.cl_syms.iter().map(|&(sym, _)| u64::from(cl[usize::from(sym)]) + u64::from(cl_extra_bits(sym))).sum::<u64>();
        dynamic = header + extra + code_bits(freqs, &lit, &dist);
    }
    if stored < dynamic.min(fixed) {
        return false;
    }
    if fixed <= dynamic {
        bits.put(0b010, 3);
        write_tokens(&s.tokens, (&FIXED_LIT, &FIXED_LIT_CODES), (&FIXED_DIST, &FIXED_DIST_CODES), bits);
        return true;
    }
    bits.put(0b100, 3);
    bits.put((hlit - 257) as u32, 5);
    bits.put((hdist - 1) as u32, 5);
    bits.put((hclen - 4) as u32, 4);
    for &sym in &CL_ORDER[..hclen] {
        bits.put(u32::from(cl[sym]), 3);
    }
    let cl_codes = codes_of(&cl);
    for &(sym, extra) in &s.cl_syms {
        let i = usize::from(sym);
        bits.put(u32::from(cl_codes[i]), u32::from(cl[i]));
        bits.put(u32::from(extra), cl_extra_bits(sym));
    }
    write_tokens(&s.tokens, (&lit, &codes_of(&lit)), (&dist, &codes_of(&dist)), bits);
    true
}

fn write_tokens(tokens: &[u32], (lit, lit_codes): (&[u8], &[u16]), (dist, dist_codes): (&[u8], &[u16]), bits: &mut BitWriter<'_>) {
    for &t in tokens {
        if t & MATCH == 0 {
            let s = t as usize;
            bits.put(u32::from(lit_codes[s]), u32::from(lit[s]));
            continue;
        }
        put_match(bits, ((t >> 16) & 0xff) as usize + 3, (t & 0xffff) as usize, (lit, lit_codes), (dist, dist_codes));
    }
    bits.put(u32::from(lit_codes[END]), u32::from(lit[END]));
}

/// Writes a match of `len` bytes `dist` back: its length code, extra bits, distance code, extra bits.
#[inline]
fn put_match(bits: &mut BitWriter<'_>, len: usize, dist: usize, (lit, lit_codes): (&[u8], &[u16]), (dist_lens, dist_codes): (&[u8], &[u16])) {
    let x = len - 3;
    let (code, extra) = LEN_CODE[x];
    let s = 257 + usize::from(code);
    bits.put(u32::from(lit_codes[s]), u32::from(lit[s]));
    bits.put((x as u32) & ((1 << extra) - 1), u32::from(extra));
    let (code, extra) = dist_code(dist);
    let s = usize::from(code);
    bits.put(u32::from(dist_codes[s]), u32::from(dist_lens[s]));
    bits.put(((dist - 1) as u32) & ((1 << extra) - 1), u32::from(extra));
}

/// A stored block's bytes beyond the message's, with the sync flush's empty block: a header
/// byte, LEN and NLEN, and the empty block's header byte.
const STORED_OVERHEAD: usize = 1 + 4 + 1;

/// Appends `m` as a stored block and the sync flush's empty block's header, each a byte.
fn write_stored(m: &[u8], out: &mut Vec<u8>) {
    let len = m.len() as u16;
    out.reserve(m.len() + STORED_OVERHEAD);
    out.push(0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(m);
    out.push(0);
}

/// Bits written least significant first, as DEFLATE packs them, into a buffer sized beforehand
/// (64 bits at a time: no growth checks, one flush per 64 bits written).
struct BitWriter<'a> {
    buf: &'a mut [u8],
    /// Bytes written.
    pos: usize,
    acc: u64,
    /// Bits in `acc`: fewer than 64.
    n: u32,
}

impl BitWriter<'_> {
    /// Writes the `n` low bits of `v` (at most 32; the bits above them are zero).
    #[inline]
    fn put(&mut self, v: u32, n: u32) {
        debug_assert!(n <= 32 && (n == 32 || v >> n == 0));
        let v = u64::from(v);
        self.acc |= v << self.n;
        if self.n + n < 64 {
            self.n += n;
        } else {
            self.buf[self.pos..self.pos + 8].copy_from_slice(&self.acc.to_le_bytes());
            self.pos += 8;
            // At least 32 bits were in: the shift is 1 to 32.
            self.acc = v >> (64 - self.n);
            self.n = self.n + n - 64;
        }
    }

    /// Writes what is left, up to the byte, and returns the bytes written.
    fn finish(&mut self) -> usize {
        let bytes = self.n.div_ceil(8) as usize;
        self.buf[self.pos..self.pos + bytes].copy_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.pos += bytes;
        self.acc = 0;
        self.n = 0;
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// flate2's raw inflate (zlib-rs) of a payload, the tail appended.
    fn inflate(bits: u8, payload: &[u8]) -> Vec<u8> {
        let mut d = flate2::Decompress::new_with_window_bits(false, bits);
        let mut out = Vec::with_capacity(MAX_LEN + 64);
        d.decompress_vec(&[payload, &crate::deflate::TAIL[..]].concat(), &mut out, flate2::FlushDecompress::Sync).expect("valid deflate");
        out
    }

    /// Up to 16 KiB of runs, repeated words and noise: long and short matches, near and far.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            (any::<u8>(), 1usize..700).prop_map(|(b, n)| vec![b; n]),
            prop::sample::select(vec![&b"{\"id\":"[..], b"\"price\":101.25,", b"orders", b"},{", b"\"side\":\"buy\""]).prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..300),
        ];
        prop::collection::vec(piece, 0..120).prop_map(|p| {
            let mut m = p.concat();
            m.truncate(MAX_LEN - 1);
            m
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn flate2_inflates_what_it_writes(m in message(), level in 1u32..=9, bits in 9u8..=15) {
            let mut out = vec![0xaa];
            deflate_alone(&m, level, bits, &mut out);
            prop_assert_eq!(out[0], 0xaa, "appended after what was there");
            prop_assert_eq!(inflate(bits, &out[1..]), m);
        }

        /// Any bytes at all, of any size the encoder takes: they inflate back, and never take
        /// more than stored bytes do.
        #[test]
        fn any_bytes_inflate_back_within_the_stored_size(
            m in prop::collection::vec(any::<u8>(), 0..MAX_LEN), level in 1u32..=9, bits in 9u8..=15,
        ) {
            let mut out = vec![];
            deflate_alone(&m, level, bits, &mut out);
            prop_assert!(out.len() <= m.len() + STORED_OVERHEAD, "{} bytes for {}", out.len(), m.len());
            prop_assert_eq!(inflate(bits, &out), m);
        }

        /// Level 1's matches, replayed, are the message; each is 4 to 258 bytes long and within
        /// the window, also for a message after others in the same hash table.
        #[test]
        fn level_1_matches_replay_the_message(ms in prop::collection::vec(message(), 1..4), bits in 9u8..=15, base in any::<u32>()) {
            let max_dist = (1usize << bits) - MIN_LOOKAHEAD;
            // Any state of the table, even one the encoder never leaves.
            let mut head = FastHead { table: Some(Box::new([base.wrapping_sub(77); FAST_HEAD])), base };
            for m in &ms {
                let (mut tokens, mut freqs) = (vec![], Freqs::new());
                fast_lz77(m, max_dist, &mut head, Tokens { tokens: &mut tokens, freqs: &mut freqs });
                prop_assert_eq!(replay(&tokens, max_dist)?, &m[..]);
            }
        }
    }

    /// The bytes `tokens` stand for, checking that every match is 4 to 258 bytes long and reaches
    /// back 1 to `max_dist` bytes within what came before it.
    fn replay(tokens: &[u32], max_dist: usize) -> Result<Vec<u8>, TestCaseError> {
        let mut out = vec![];
        for &t in tokens {
            if t & MATCH == 0 {
                out.push(t as u8);
                continue;
            }
            let (len, dist) = (((t >> 16) & 0xff) as usize + 3, (t & 0xffff) as usize);
            prop_assert!((MIN_MATCH..=MAX_MATCH).contains(&len), "length {len}");
            prop_assert!(dist >= 1 && dist <= max_dist.min(out.len()), "distance {dist} at {}", out.len());
            for _ in 0..len {
                out.push(out[out.len() - dist]);
            }
        }
        Ok(out)
    }

    #[test]
    fn level_1_hash_table_comes_round_cleared() {
        // A base just before it wraps: the entries of the messages before cannot be taken for
        // the ones after, where the base starts again.
        let m = br#"{"id":1,"topic":"orders","price":12.5,"side":"buy"},"#.repeat(100);
        let mut head = FastHead { table: None, base: 0 };
        head.next();
        head.base = 0u32.wrapping_sub(3 * FAST_STRIDE);
        for n in [m.len(), 700, 1000, m.len(), 5, 300] {
            let (mut tokens, mut freqs) = (vec![], Freqs::new());
            fast_lz77(&m[..n], 32_768 - MIN_LOOKAHEAD, &mut head, Tokens { tokens: &mut tokens, freqs: &mut freqs });
            assert_eq!(replay(&tokens, 32_768 - MIN_LOOKAHEAD).expect("valid matches"), &m[..n]);
            assert!(n < 100 || tokens.len() < n / 4, "{n} bytes in {} tokens", tokens.len());
        }
        // Two messages before the base came round, four after it started again.
        assert_eq!(head.base, 4 * FAST_STRIDE, "came round");
    }

    #[test]
    fn length_and_distance_codes_match_rfc_1951() {
        // (length, code, extra bits) at the edges of RFC 1951 §3.2.5's table.
        for (len, code, extra) in [(3, 257, 0), (10, 264, 0), (11, 265, 1), (12, 265, 1), (13, 266, 1), (19, 269, 2), (22, 269, 2),
            (23, 270, 2), (35, 273, 3), (67, 277, 4), (130, 280, 4), (131, 281, 5), (227, 284, 5), (257, 284, 5), (258, 285, 0)] {
            let (c, e) = LEN_CODE[len - 3];
            assert_eq!((257 + usize::from(c), e), (code, extra), "length {len}");
            assert_eq!(LEN_CODES_EXTRA[usize::from(c)], e);
        }
        for (dist, code, extra) in [(1, 0, 0), (4, 3, 0), (5, 4, 1), (6, 4, 1), (7, 5, 1), (9, 6, 2), (13, 7, 2), (17, 8, 3),
            (257, 16, 7), (385, 17, 7), (4097, 24, 11), (24577, 29, 13), (32768, 29, 13)] {
            assert_eq!(dist_code(dist), (code, extra), "distance {dist}");
        }
    }

    #[test]
    fn code_lengths_fit_their_limit_and_the_kraft_sum() {
        // Fibonacci counts make a Huffman tree as deep as it gets.
        let mut fib = vec![1u32, 1];
        while fib.len() < 30 {
            fib.push(fib[fib.len() - 1] + fib[fib.len() - 2]);
        }
        for (freqs, limit) in [(fib.clone(), 15u8), (fib[..19].to_vec(), 7), (vec![5], 15), (vec![0, 0, 3], 15), (vec![0; 30], 15)] {
            let mut lens = vec![0u8; freqs.len().max(2)];
            let mut f = freqs.clone();
            f.resize(lens.len(), 0);
            code_lengths(&f, limit, &mut lens, &mut Huffman::default());
            assert!(lens.iter().all(|&l| l <= limit), "{lens:?}");
            assert!(lens.iter().filter(|&&l| l > 0).count() >= 2, "at least two codes: {lens:?}");
            let kraft: f64 = lens.iter().filter(|&&l| l > 0).map(|&l| 0.5f64.powi(i32::from(l))).sum();
            assert!(kraft <= 1.0 + 1e-12, "{lens:?}");
            for (s, &c) in f.iter().enumerate() {
                assert!(c == 0 || lens[s] > 0, "every used symbol has a code");
            }
        }
    }

    #[test]
    fn what_codes_cannot_shrink_goes_stored() {
        let mut rng = 99u32;
        let noise: Vec<u8> = (0..3000).map(|_| { rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345); (rng >> 16) as u8 }).collect();
        for level in [1, 6] {
            let mut out = vec![];
            deflate_alone(&noise, level, 15, &mut out);
            assert_eq!(out.len(), noise.len() + STORED_OVERHEAD, "level {level}");
            assert_eq!(inflate(15, &out), noise);
        }
    }

    #[test]
    fn an_empty_message_at_every_level_and_window() {
        // The fuzz target's first find (a table size of an empty message underflowed).
        for level in 1..=9 {
            for bits in 9..=15 {
                let mut out = vec![];
                deflate_alone(b"", level, bits, &mut out);
                assert_eq!(inflate(bits, &out), b"", "level {level}, {bits} bits");
            }
        }
    }

    #[test]
    fn hello_is_the_rfc_7692_bytes() {
        let mut out = vec![];
        deflate_alone(b"Hello", 6, 15, &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn matches_stay_within_the_window() {
        // Matches are as far back as the window allows, and no farther.
        let mut rng = 7u32;
        let block: Vec<u8> = (0..300).map(|_| { rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345); (rng >> 16) as u8 }).collect();
        for bits in 9..=15u8 {
            let max_dist = (1usize << bits) - MIN_LOOKAHEAD;
            for gap in [0usize, 100, 200, 400, 1000, 5000] {
                let m = [&block[..], &vec![b'-'; gap], &block[..]].concat();
                if m.len() >= MAX_LEN {
                    continue;
                }
                let mut freqs = Freqs::new();
                let mut s = Scratch::default();
                parse(&m, EFFORT[9], max_dist, &mut s, &mut freqs);
                let mut fast = vec![];
                fast_lz77(&m, max_dist, &mut FastHead::default(), Tokens { tokens: &mut fast, freqs: &mut Freqs::new() });
                for (level, tokens) in [(9, &s.tokens), (1, &fast)] {
                    assert_eq!(replay(tokens, max_dist).expect("matches within the window"), m, "level {level}");
                    let far = tokens.iter().filter(|&&t| t & MATCH != 0).map(|&t| (t & 0xffff) as usize).max().unwrap_or(0);
                    let back = block.len() + gap;
                    assert!(back > max_dist || far == back, "level {level}, {bits} bits, gap {gap}: the block's copy {back} back, not {far}");
                }
            }
        }
    }
}
