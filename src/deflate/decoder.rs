//! A DEFLATE decoder (RFC 1951) for a whole message inflated on its own: the received message of a
//! connection without client context takeover, its payload in hand with the RFC 7692 tail after
//! it.
//!
//! zlib-rs, for such a message, builds its decoding tables for every dynamic block (a client at
//! zlib's default level sends one per message) the way a stream of any length needs them; here they
//! are built as a small message needs them: each table only as wide as its longest code (at most
//! 10 bits for literals and lengths, 8 for distances, longer codes in subtables), filled one entry
//! per code and doubled by copying (libdeflate's method), in tables a worker keeps (one set per
//! thread, no per-message allocation or clearing).
//!
//! What it accepts is what zlib accepts (an incomplete code only where zlib allows one: a single
//! code of one bit, and no distance code at all), with two exceptions: a distance beyond the
//! window the client agreed to, which zlib-rs allows within one call's output, is corrupt here;
//! and a stream that passes the limit is too big at its first byte past it, where zlib-rs, which
//! decodes on until it has a byte to write and no room, may find it corrupt first.
//! A stream that runs out before its end ([`Error::Truncated`]) is handed back for zlib-rs to
//! decide, which waits for more input where this decoder cannot: so a message's fate is zlib-rs's
//! in every case but those two, as the differential tests below check.

use std::cell::RefCell;
use std::sync::OnceLock;

/// Why a message could not be decoded here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Error {
    /// Not a valid DEFLATE stream.
    Corrupt,
    /// The output would pass the limit.
    TooBig,
    /// The stream needs bits past the end of the input: zlib-rs is to decide.
    Truncated,
}

/// Entry of a decoding table (u32): the bits the code takes (bits 0..5), extra bits to read or a
/// subtable's bits (8..12), what it is (12..16), a value (16..32).
const LITERAL: u32 = 1 << 12;
const LENGTH: u32 = 1 << 13;
const END: u32 = 1 << 14;
const SUBTABLE: u32 = 1 << 15;
/// A distance (in distance tables) or a code length symbol (in the precode's table).
const VALUE: u32 = LENGTH;
/// An entry with none of those kinds is an invalid code.
const INVALID: u32 = 0;

const LITLEN_BITS: u32 = 10;
const DIST_BITS: u32 = 8;
/// Room for any table: a main table of 2^bits and a subtable of at most 2^(15 - bits) entries per
/// code longer than bits.
const LITLEN_ROOM: usize = (1 << LITLEN_BITS) + 288 * (1 << (15 - LITLEN_BITS));
const DIST_ROOM: usize = (1 << DIST_BITS) + 32 * (1 << (15 - DIST_BITS));

const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193,
    12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/// The order the code length code's lengths come in (RFC 1951 §3.2.7).
const PRECODE_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// The codes whose symbols the tables decode.
#[derive(Clone, Copy)]
enum Code {
    LitLen,
    Dist,
    /// The code length code: a symbol is its value.
    Precode,
}

/// The table entry of symbol `sym` of `code`, less the code's bit count.
const fn entry(code: Code, sym: usize) -> u32 {
    match (code, sym) {
        (Code::LitLen, 0..=255) => LITERAL | (sym as u32) << 16,
        (Code::LitLen, 256) => END,
        (Code::LitLen, 257..=285) => LENGTH | (LENGTH_BASE[sym - 257] as u32) << 16 | (LENGTH_EXTRA[sym - 257] as u32) << 8,
        (Code::Dist, 0..=29) => VALUE | (DIST_BASE[sym] as u32) << 16 | (DIST_EXTRA[sym] as u32) << 8,
        (Code::Precode, _) => VALUE | (sym as u32) << 16,
        // Literal/length 286 and 287, distances 30 and 31: fixed codes but no meaning.
        _ => INVALID,
    }
}

/// The entries of the `N` symbols of `code`.
const fn entries<const N: usize>(code: Code) -> [u32; N] {
    let mut t = [0; N];
    let mut sym = 0;
    while sym < N {
        t[sym] = entry(code, sym);
        sym += 1;
    }
    t
}

const LITLEN_ENTRIES: [u32; 288] = entries(Code::LitLen);
const DIST_ENTRIES: [u32; 32] = entries(Code::Dist);
const PRECODE_ENTRIES: [u32; 19] = entries(Code::Precode);

/// A decoding table in use: its entries and the mask of its main table's index.
#[derive(Clone, Copy)]
struct Table<'a> {
    entries: &'a [u32],
    mask: u64,
}

impl Table<'_> {
    /// The entry for the code at the bottom of `bits` (subtables followed): its bit count is the
    /// whole code's.
    #[inline(always)]
    fn lookup(self, bits: u64) -> u32 {
        let e = self.entries[(bits & self.mask) as usize];
        if e & SUBTABLE == 0 {
            return e;
        }
        let main = e & 0x1f;
        let sub = (bits >> main) & ((1 << ((e >> 8) & 0xf)) - 1);
        self.entries[(e >> 16) as usize + sub as usize] + main
    }
}

/// The lengths of a code's symbols that are not zero, in symbol order, and how many there are of
/// each length: what building its table takes (a message's codes use a few dozen of the 286
/// literal/length symbols, so the zeros are never looked at).
struct Lengths<const N: usize> {
    count: [u16; 16],
    syms: [(u16, u8); N],
    n: usize,
}

impl<const N: usize> Lengths<N> {
    fn new() -> Self {
        Lengths { count: [0; 16], syms: [(0, 0); N], n: 0 }
    }

    /// No lengths (the symbols' slots are left as they are, unread).
    fn clear(&mut self) {
        self.count = [0; 16];
        self.n = 0;
    }

    /// The lengths of `lens`, symbol by symbol.
    fn of(lens: &[u8]) -> Self {
        let mut l = Self::new();
        for (sym, &len) in lens.iter().enumerate() {
            l.push(sym, len);
        }
        l
    }

    #[inline(always)]
    fn push(&mut self, sym: usize, len: u8) {
        if len != 0 {
            self.count[usize::from(len)] += 1;
            self.syms[self.n] = (sym as u16, len);
            self.n += 1;
        }
    }
}

/// Builds the decoding table of the code of `lens` into `entries`, main table at most `max_bits`
/// wide, `entry` giving each symbol's entry, and gives its main table's width. Over-subscribed
/// codes are corrupt, and so are incomplete ones but for zlib's exceptions: no code at all (a
/// table whose every entry is invalid) and, if `incomplete_ok`, a single code of one bit.
fn build<const N: usize>(lens: &Lengths<N>, entries: &mut [u32], max_bits: u32, entry: &[u32], incomplete_ok: bool) -> Result<u32, Error> {
    let count = &lens.count;
    let mut left: i32 = 1;
    for &c in &count[1..] {
        left = (left << 1) - i32::from(c);
        if left < 0 {
            return Err(Error::Corrupt);
        }
    }
    let Some(max) = (1..16).rev().find(|&l| count[l] != 0) else {
        entries[..2].fill(INVALID | 1);
        return Ok(1);
    };
    if left > 0 {
        if !incomplete_ok || max != 1 {
            return Err(Error::Corrupt);
        }
        // The code is that one symbol's.
        entries[0] = entry[usize::from(lens.syms[0].0)] | 1;
        entries[1] = INVALID | 1;
        return Ok(1);
    }
    // Symbols by code length, then by value: the canonical order of their codes.
    let mut offset = [0u16; 16];
    for l in 1..15 {
        offset[l + 1] = offset[l] + count[l];
    }
    let mut sorted = [0u16; N];
    let sorted = &mut sorted[..lens.n];
    for &(sym, l) in &lens.syms[..lens.n] {
        sorted[usize::from(offset[usize::from(l)])] = sym;
        offset[usize::from(l)] += 1;
    }
    let bits = max_bits.min(max as u32);
    let mut syms = sorted.iter().map(|&s| usize::from(s));
    // The codes up to `bits` long, each written once at its bit-reversed index in a table as wide
    // as the code, the table doubled (copied after itself) as the codes get longer.
    let mut code = 0usize;
    let mut len = 1usize;
    while count[len] == 0 {
        len += 1;
    }
    let mut n = count[len];
    let mut end = 1usize << len;
    while len as u32 <= bits {
        loop {
            entries[code] = entry[syms.next().unwrap_or(0)] | len as u32;
            if code == end - 1 {
                // The last code: the table is filled; widen it to `bits`.
                while end < 1 << bits {
                    entries.copy_within(..end, end);
                    end <<= 1;
                }
                return Ok(bits);
            }
            code = next_code(code, len);
            n -= 1;
            if n == 0 {
                break;
            }
        }
        loop {
            len += 1;
            if len as u32 <= bits {
                entries.copy_within(..end, end);
                end <<= 1;
            }
            n = count[len];
            if n != 0 {
                break;
            }
        }
    }
    // Longer codes: a subtable per prefix of `bits` bits, as wide as the codes under it need.
    let main_mask = (1usize << bits) - 1;
    let mut prefix = usize::MAX;
    let mut start = 0usize;
    let mut end = 1usize << bits;
    loop {
        if code & main_mask != prefix {
            prefix = code & main_mask;
            start = end;
            let mut sub_bits = len - bits as usize;
            let mut used = u32::from(n);
            while used < 1 << sub_bits {
                sub_bits += 1;
                used = (used << 1) + u32::from(count[bits as usize + sub_bits]);
            }
            end = start + (1 << sub_bits);
            entries[prefix] = (start as u32) << 16 | SUBTABLE | (sub_bits as u32) << 8 | bits;
        }
        let e = entry[syms.next().unwrap_or(0)] | (len as u32 - bits);
        let stride = 1 << (len - bits as usize);
        let mut i = start + (code >> bits);
        while i < end {
            entries[i] = e;
            i += stride;
        }
        if code == (1 << len) - 1 {
            return Ok(bits);
        }
        code = next_code(code, len);
        n -= 1;
        while n == 0 {
            len += 1;
            n = count[len];
        }
    }
}

/// The code after `code` (bit-reversed, `len` bits) in canonical order, bit-reversed: the highest
/// clear bit set, the ones above it cleared.
#[inline]
fn next_code(code: usize, len: usize) -> usize {
    let bit = 1 << (usize::BITS - 1 - (code ^ ((1 << len) - 1)).leading_zeros());
    (code & (bit - 1)) | bit
}

/// The worker's tables for dynamic blocks, filled anew by each block.
struct Tables {
    litlen: Vec<u32>,
    dist: Vec<u32>,
    precode: [u32; 128],
    /// The block's code lengths, kept here so that a block does not clear them first.
    lit: Lengths<286>,
    dist_lens: Lengths<30>,
}

thread_local! {
    static TABLES: RefCell<Option<Box<Tables>>> = const { RefCell::new(None) };
}

/// The fixed codes' tables (RFC 1951 §3.2.6), built once.
struct Fixed {
    litlen: Vec<u32>,
    litlen_bits: u32,
    dist: Vec<u32>,
    dist_bits: u32,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut lens = [0u8; 288];
        lens[..144].fill(8);
        lens[144..256].fill(9);
        lens[256..280].fill(7);
        lens[280..].fill(8);
        let mut litlen = vec![0; 1 << 9];
        let litlen_bits = build(&Lengths::<288>::of(&lens), &mut litlen, LITLEN_BITS, &LITLEN_ENTRIES, false).expect("the fixed code is complete");
        let mut dist = vec![0; 1 << 5];
        let dist_bits = build(&Lengths::<32>::of(&[5; 32]), &mut dist, DIST_BITS, &DIST_ENTRIES, false).expect("the fixed code is complete");
        Fixed { litlen, litlen_bits, dist, dist_bits }
    })
}

/// The input's bits, least significant first: `data` then `tail`, then (for at most 8 bytes)
/// zeros, past which a refill is [`Error::Truncated`]; whether the zeros were used is told by
/// [`Bits::overran`].
struct Bits<'a> {
    data: &'a [u8],
    tail: &'a [u8],
    /// The next byte to load, counting `data`, `tail` and the zeros.
    pos: usize,
    /// Loaded bits not yet taken; above `count`, zeros or the bits of the bytes from `pos` on.
    buf: u64,
    count: u32,
}

impl Bits<'_> {
    /// At least 56 bits in `buf`.
    #[inline(always)]
    fn refill(&mut self) -> Result<(), Error> {
        (self.buf, self.count, self.pos) = refill(self.data, self.tail, self.buf, self.count, self.pos)?;
        Ok(())
    }

    /// Takes `n` of the loaded bits.
    #[inline(always)]
    fn skip(&mut self, n: u32) {
        debug_assert!(n <= self.count);
        self.buf >>= n;
        self.count -= n;
    }

    /// Takes `n` (at most 16) of the loaded bits, as a number.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = (self.buf & ((1 << n) - 1)) as u32;
        self.skip(n);
        v
    }

    /// Bits taken so far.
    fn taken(&self) -> usize {
        self.pos * 8 - self.count as usize
    }

    /// True if more bits were taken than the input has.
    fn overran(&self) -> bool {
        self.taken() > (self.data.len() + self.tail.len()) * 8
    }

    /// True if every bit of the input was taken.
    fn at_end(&self) -> bool {
        self.taken() == (self.data.len() + self.tail.len()) * 8
    }
}

/// [`Bits::refill`] on the values of its fields (a loop keeps them in registers), giving them.
#[inline(always)]
fn refill(data: &[u8], tail: &[u8], buf: u64, count: u32, pos: usize) -> Result<(u64, u32, usize), Error> {
    if let Some(word) = data.get(pos..pos + 8) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        Ok((buf | word << count, count | 56, pos + ((63 - count) >> 3) as usize))
    } else {
        refill_end(data, tail, buf, count, pos)
    }
}

/// A refill within 8 bytes of the end of `data`: a byte at a time, from `tail` after it.
#[cold]
#[inline(never)]
fn refill_end(data: &[u8], tail: &[u8], mut buf: u64, mut count: u32, mut pos: usize) -> Result<(u64, u32, usize), Error> {
    buf &= (1 << count) - 1;
    let end = data.len() + tail.len();
    while count < 56 {
        let byte = match pos {
            p if p < data.len() => data[p],
            p if p < end => tail[p - data.len()],
            // 8 bytes of zeros are more than the buffer holds: a ninth means some were taken.
            p if p < end + 8 => 0,
            _ => return Err(Error::Truncated),
        };
        buf |= u64::from(byte) << count;
        count += 8;
        pos += 1;
    }
    Ok((buf, count, pos))
}

/// Where the decoded bytes go: `vec` from `start` on, written at `pos`. `vec` is kept zero-filled
/// ahead of `pos` (its length is how far bytes may go in without a check: a first guess, grown
/// geometrically, never past `limit`) and cut to `pos` at the end: filling a guess's kilobyte with
/// zeros costs less than checking a vector's capacity at each byte.
struct Out<'a> {
    vec: &'a mut Vec<u8>,
    start: usize,
    pos: usize,
    limit: usize,
}

impl Out<'_> {
    /// Room for `n` more bytes at `pos`, or [`Error::TooBig`].
    #[inline(always)]
    fn room(&mut self, n: usize) -> Result<(), Error> {
        if self.pos + n > self.vec.len() {
            return self.grow(n);
        }
        Ok(())
    }

    fn grow(&mut self, n: usize) -> Result<(), Error> {
        grow(self.vec, self.pos + n, self.limit)
    }

    /// Appends `bytes`.
    fn extend(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.room(bytes.len())?;
        self.vec[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
        Ok(())
    }
}

/// Makes `vec` (zero-filled ahead) at least `need` long, growing it geometrically but never past
/// `limit`; [`Error::TooBig`] if `need` is past it.
#[cold]
#[inline(never)]
fn grow(vec: &mut Vec<u8>, need: usize, limit: usize) -> Result<(), Error> {
    if need > limit {
        return Err(Error::TooBig);
    }
    let to = (vec.len() * 2).clamp(need, limit);
    vec.reserve_exact(to - vec.len());
    vec.resize(to, 0);
    Ok(())
}

/// Decodes the DEFLATE stream `data` then `tail` (for a message, its payload and [`super::TAIL`]),
/// appending at most `max` bytes to `out`, with distances of at most `2^window_bits`. The stream
/// ends with a final block (what follows it is ignored, as zlib-rs ignores it) or with all of the
/// input, after a block. On an error `out` may hold part of the output.
pub(super) fn inflate_alone(data: &[u8], tail: &[u8], window_bits: u8, out: &mut Vec<u8>, max: usize) -> Result<(), Error> {
    let mut bits = Bits { data, tail, pos: 0, buf: 0, count: 0 };
    let start = out.len();
    let mut out = Out { vec: out, start, pos: start, limit: start.saturating_add(max) };
    // A first guess at the size: JSON compresses to about a third.
    let guess = data.len().saturating_mul(4).saturating_add(64).min(max);
    out.room(guess)?;
    let result = TABLES.with(|tables| {
        let mut tables = tables.borrow_mut();
        let tables = tables.get_or_insert_with(|| {
            Box::new(Tables {
                litlen: vec![0; LITLEN_ROOM],
                dist: vec![0; DIST_ROOM],
                precode: [0; 128],
                lit: Lengths::new(),
                dist_lens: Lengths::new(),
            })
        });
        blocks(&mut bits, &mut out, tables, 1 << window_bits)
    });
    let end = out.pos;
    out.vec.truncate(end);
    match result {
        // Bits past the end taken: what was decided on them is not the stream's.
        _ if bits.overran() => Err(Error::Truncated),
        r => r,
    }
}

fn blocks(bits: &mut Bits, out: &mut Out, tables: &mut Tables, window: usize) -> Result<(), Error> {
    loop {
        bits.refill()?;
        let last = bits.take(1) == 1;
        match bits.take(2) {
            0 => stored(bits, out)?,
            1 => {
                let f = fixed();
                let litlen = Table { entries: &f.litlen, mask: (1 << f.litlen_bits) - 1 };
                let dist = Table { entries: &f.dist, mask: (1 << f.dist_bits) - 1 };
                codes(bits, out, litlen, dist, window)?;
            }
            2 => {
                let (litlen_bits, dist_bits) = dynamic_tables(bits, tables)?;
                let litlen = Table { entries: &tables.litlen, mask: (1 << litlen_bits) - 1 };
                let dist = Table { entries: &tables.dist, mask: (1 << dist_bits) - 1 };
                codes(bits, out, litlen, dist, window)?;
            }
            _ => return Err(Error::Corrupt),
        }
        if last || bits.at_end() {
            return Ok(());
        }
    }
}

/// A stored block, after its header's 3 bits.
fn stored(bits: &mut Bits, out: &mut Out) -> Result<(), Error> {
    bits.skip(bits.count & 7);
    bits.refill()?;
    let len = bits.take(16);
    if len != !bits.take(16) & 0xffff {
        return Err(Error::Corrupt);
    }
    // Back to reading bytes: the first not taken.
    let at = bits.pos - (bits.count / 8) as usize;
    let len = len as usize;
    let (data, tail) = (bits.data, bits.tail);
    if at + len > data.len() + tail.len() {
        return Err(Error::Truncated);
    }
    out.room(len)?;
    let (end, split) = (at + len, data.len());
    if at < split {
        out.extend(&data[at..end.min(split)])?;
    }
    if end > split {
        out.extend(&tail[at.max(split) - split..end - split])?;
    }
    bits.pos = end;
    bits.buf = 0;
    bits.count = 0;
    Ok(())
}

/// Reads a dynamic block's header and builds its tables; gives their main tables' widths.
fn dynamic_tables(bits: &mut Bits, tables: &mut Tables) -> Result<(u32, u32), Error> {
    bits.refill()?;
    let nlen = bits.take(5) as usize + 257;
    let ndist = bits.take(5) as usize + 1;
    let ncode = bits.take(4) as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err(Error::Corrupt);
    }
    let mut precode_lens = [0u8; 19];
    for &i in &PRECODE_ORDER[..ncode] {
        bits.refill()?;
        precode_lens[i] = bits.take(3) as u8;
    }
    if precode_lens.iter().all(|&l| l == 0) {
        // zlib reads every length as 0 with one bit each, then finds no end-of-block code.
        for _ in 0..nlen + ndist {
            bits.refill()?;
            bits.skip(1);
        }
        return Err(Error::Corrupt);
    }
    let precode_bits = build(&Lengths::<19>::of(&precode_lens), &mut tables.precode, 7, &PRECODE_ENTRIES, false)?;
    let precode = Table { entries: &tables.precode, mask: (1 << precode_bits) - 1 };
    let (lit, dist) = (&mut tables.lit, &mut tables.dist_lens);
    lit.clear();
    dist.clear();
    let n = nlen + ndist;
    // The last length read (which a repeat, 16, repeats), and whether end-of-block has a code.
    let (mut prev, mut end) = (None, false);
    let mut i = 0;
    while i < n {
        bits.refill()?;
        let e = precode.lookup(bits.buf);
        bits.skip(e & 0x1f);
        let (value, repeat) = match e >> 16 {
            sym @ 0..=15 => (sym as u8, 1),
            16 => {
                let repeat = 3 + bits.take(2) as usize;
                (prev.ok_or(Error::Corrupt)?, repeat)
            }
            17 => (0, 3 + bits.take(3) as usize),
            _ => (0, 11 + bits.take(7) as usize),
        };
        if i + repeat > n {
            return Err(Error::Corrupt);
        }
        if value != 0 {
            for j in i..i + repeat {
                if j < nlen {
                    lit.push(j, value);
                    end |= j == 256;
                } else {
                    dist.push(j - nlen, value);
                }
            }
        }
        prev = Some(value);
        i += repeat;
    }
    if !end {
        return Err(Error::Corrupt);
    }
    let litlen_bits = build(&tables.lit, &mut tables.litlen, LITLEN_BITS, &LITLEN_ENTRIES, true)?;
    let dist_bits = build(&tables.dist_lens, &mut tables.dist, DIST_BITS, &DIST_ENTRIES, true)?;
    Ok((litlen_bits, dist_bits))
}

/// The symbols of a Huffman block, up to its end-of-block code.
fn codes(bits: &mut Bits, out: &mut Out, litlen: Table, dist: Table, window: usize) -> Result<(), Error> {
    // The reader's and the writer's state in locals, written back at the end: the compiler keeps
    // them in registers (fields behind references went to memory at every symbol).
    let (data, tail) = (bits.data, bits.tail);
    let (mut buf, mut count, mut at) = (bits.buf, bits.count, bits.pos);
    let (start, limit, mut pos) = (out.start, out.limit, out.pos);
    let mut dst: &mut [u8] = out.vec;
    let result = loop {
        // 48 bits: a length's code and extra bits and its distance's (15 + 5 + 15 + 13).
        if count < 48 {
            match refill(data, tail, buf, count, at) {
                Ok(r) => (buf, count, at) = r,
                Err(e) => break Err(e),
            }
        }
        let e = litlen.lookup(buf);
        buf >>= e & 0x1f;
        count -= e & 0x1f;
        if e & LITERAL != 0 {
            if let Some(slot) = dst.get_mut(pos) {
                *slot = (e >> 16) as u8;
            } else {
                if let Err(e) = grow(out.vec, pos + 1, limit) {
                    break Err(e);
                }
                dst = out.vec;
                dst[pos] = (e >> 16) as u8;
            }
            pos += 1;
            // Literals come in runs: a second one from the same refill (33 bits or more left).
            let e = litlen.lookup(buf);
            if e & LITERAL != 0 {
                if let Some(slot) = dst.get_mut(pos) {
                    buf >>= e & 0x1f;
                    count -= e & 0x1f;
                    *slot = (e >> 16) as u8;
                    pos += 1;
                }
            }
            continue;
        }
        if e & LENGTH == 0 {
            break if e & END != 0 { Ok(()) } else { Err(Error::Corrupt) };
        }
        let extra = (e >> 8) & 0xf;
        let len = (e >> 16) as usize + (buf & ((1 << extra) - 1)) as usize;
        buf >>= extra;
        count -= extra;
        let d = dist.lookup(buf);
        buf >>= d & 0x1f;
        count -= d & 0x1f;
        if d & VALUE == 0 {
            break Err(Error::Corrupt);
        }
        let extra = (d >> 8) & 0xf;
        let distance = (d >> 16) as usize + (buf & ((1 << extra) - 1)) as usize;
        buf >>= extra;
        count -= extra;
        if distance > pos - start || distance > window {
            break Err(Error::Corrupt);
        }
        let from = pos - distance;
        if distance >= 8 && pos + len + 16 <= dst.len() {
            // In pieces of 16 (or 8) bytes, the last one past the end (the room ahead is
            // overwritten later or cut): each read from bytes already written.
            let mut i = 0;
            if distance >= 16 {
                while i < len {
                    let piece: [u8; 16] = dst[from + i..from + i + 16].try_into().expect("16 bytes");
                    dst[pos + i..pos + i + 16].copy_from_slice(&piece);
                    i += 16;
                }
            } else {
                while i < len {
                    let piece: [u8; 8] = dst[from + i..from + i + 8].try_into().expect("8 bytes");
                    dst[pos + i..pos + i + 8].copy_from_slice(&piece);
                    i += 8;
                }
            }
        } else {
            if pos + len > dst.len() {
                if let Err(e) = grow(out.vec, pos + len, limit) {
                    break Err(e);
                }
                dst = out.vec;
            }
            if distance >= len {
                dst.copy_within(from..from + len, pos);
            } else {
                for i in pos..pos + len {
                    dst[i] = dst[i - distance];
                }
            }
        }
        pos += len;
    };
    (bits.buf, bits.count, bits.pos) = (buf, count, at);
    out.pos = pos;
    result
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{InflateError, Inflater, Params, TAIL};
    use super::*;

    /// What became of a message.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Bytes(Vec<u8>),
        Corrupt,
        TooBig,
    }

    /// This decoder, `None` where it leaves the stream to zlib-rs.
    fn ours(payload: &[u8], bits: u8, max: usize) -> Option<Outcome> {
        let mut out = Vec::new();
        match inflate_alone(payload, &TAIL, bits, &mut out, max) {
            Ok(()) => {
                assert!(out.len() <= max && out.capacity() <= max.max(64), "len {} cap {} max {max}", out.len(), out.capacity());
                Some(Outcome::Bytes(out))
            }
            Err(Error::Corrupt) => Some(Outcome::Corrupt),
            Err(Error::TooBig) => {
                assert!(out.len() <= max && out.capacity() <= max.max(64), "len {} cap {} max {max}", out.len(), out.capacity());
                Some(Outcome::TooBig)
            }
            Err(Error::Truncated) => None,
        }
    }

    /// zlib-rs (flate2's raw `Decompress`, the same window) in one call, with room for one byte
    /// more than the limit. A stream that passes the limit is too big even if zlib-rs then finds
    /// it corrupt: zlib-rs decodes on until it has a byte to write and no room, where this decoder
    /// stops at the first byte past the limit, as a bomb's rule asks.
    fn zlib(payload: &[u8], bits: u8, max: usize) -> Outcome {
        let mut d = flate2::Decompress::new_with_window_bits(false, bits);
        let mut out = Vec::with_capacity(max + 1);
        match d.decompress_vec(&[payload, &TAIL[..]].concat(), &mut out, flate2::FlushDecompress::Sync) {
            Err(_) if out.len() > max => Outcome::TooBig,
            Err(_) => Outcome::Corrupt,
            Ok(_) if out.len() > max => Outcome::TooBig,
            Ok(_) => Outcome::Bytes(out),
        }
    }

    /// This decoder agrees with zlib-rs where it decides; where it rejects a distance past the
    /// window that zlib-rs allows, it agrees with a window of 15 bits. Gives whether it decided.
    fn agree(payload: &[u8], bits: u8, max: usize) -> bool {
        let Some(o) = ours(payload, bits, max) else { return false };
        let z = zlib(payload, bits, max);
        if o == Outcome::Corrupt && bits < 15 && z != Outcome::Corrupt {
            assert_eq!(ours(payload, 15, max), Some(z), "{payload:02x?}, {bits} bits");
        } else {
            assert_eq!(o, z, "{payload:02x?}, {bits} bits, max {max}");
        }
        true
    }

    /// A message compressed by flate2 (zlib-rs) on its own, sync-flushed, the tail removed.
    fn compress(message: &[u8], level: u32, bits: u8) -> Vec<u8> {
        let mut c = flate2::Compress::new_with_window_bits(flate2::Compression::new(level), false, bits);
        let mut wire = Vec::with_capacity(message.len() + message.len() / 16 + 64);
        c.compress_vec(message, &mut wire, flate2::FlushCompress::Sync).unwrap();
        assert_eq!(wire[wire.len() - 4..], TAIL);
        wire.truncate(wire.len() - 4);
        wire
    }

    /// JSON-like order records, as `benches/common` makes them, from `seeds`.
    fn json(seeds: &[u64]) -> Vec<u8> {
        let mut out = b"[".to_vec();
        for r in seeds {
            out.extend_from_slice(
                format!(
                    r#"{{"topic":"orders","partition":{},"offset":{},"key":"user-{}","value":{{"sku":"{}","qty":{},"price":{}.{:02}}}}},"#,
                    r % 8,
                    1_000_000 + (r >> 8) % 100_000,
                    (r >> 32) % 10_000,
                    ["A-1234", "B-0042", "C-7781"][(r >> 40) as usize % 3],
                    1 + (r >> 44) % 5,
                    (r >> 48) % 200,
                    (r >> 56) % 100,
                )
                .as_bytes(),
            );
        }
        out.push(b']');
        out
    }

    /// About 1 KiB of the records.
    fn json_kib() -> Vec<u8> {
        json_records(10)
    }

    /// `n` records (about 110 bytes each).
    fn json_records(n: usize) -> Vec<u8> {
        let mut r = 88172645463325252u64;
        let seeds: Vec<u64> = (0..n)
            .map(|_| {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                r
            })
            .collect();
        json(&seeds)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_as_zlib_rs(payload in prop::collection::vec(any::<u8>(), 0..400), bits in 9u8..=15, max in 0usize..3000) {
            agree(&payload, bits, max);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_start(cut in 0usize..300, rest in prop::collection::vec(any::<u8>(), 0..64), level in 0u32..=9) {
            // A real block header and codes, then anything: deeper than random bytes get.
            let wire = compress(&json_kib(), level, 15);
            let payload = [&wire[..cut.min(wire.len())], &rest[..]].concat();
            agree(&payload, 15, 4096);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn round_trips_of_flate2_random(message in prop::collection::vec(any::<u8>(), 0..3000), level in 0u32..=9, bits in 9u8..=15) {
            let wire = compress(&message, level, bits);
            prop_assert_eq!(ours(&wire, bits, message.len()), Some(Outcome::Bytes(message.clone())));
            // One byte less is too big.
            if !message.is_empty() {
                prop_assert_eq!(ours(&wire, bits, message.len() - 1), Some(Outcome::TooBig));
            }
        }

        #[test]
        fn round_trips_of_flate2_json(seeds in prop::collection::vec(any::<u64>(), 0..120), level in 0u32..=9, bits in 9u8..=15) {
            let message = json(&seeds);
            let wire = compress(&message, level, bits);
            prop_assert_eq!(ours(&wire, bits, 1 << 20), Some(Outcome::Bytes(message.clone())));
            prop_assert_eq!(ours(&wire, bits, message.len() - 1), Some(Outcome::TooBig));
        }

        #[test]
        fn round_trips_of_repetitive_data(unit in prop::collection::vec(any::<u8>(), 1..40), times in 1usize..400, level in 1u32..=9, bits in 9u8..=15) {
            // Matches of every length and short distances, overlapping their own output.
            let message = unit.repeat(times);
            let wire = compress(&message, level, bits);
            prop_assert_eq!(ours(&wire, bits, message.len()), Some(Outcome::Bytes(message.clone())));
        }

        #[test]
        fn mutated_json_as_zlib_rs(changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), level in 1u32..=9) {
            let mut wire = compress(&json_kib(), level, 15);
            for (at, b) in changes {
                let i = at.index(wire.len());
                wire[i] = b;
            }
            agree(&wire, 15, 4096);
        }
    }

    #[test]
    fn every_single_byte_change_of_a_json_message_errs_or_agrees() {
        let message = json_kib();
        // Level 6: one dynamic block; level 1: zlib-rs's fixed codes.
        for level in [6, 1] {
            let wire = compress(&message, level, 15);
            let (mut decided, mut corrupt) = (0, 0);
            for i in 0..wire.len() {
                for b in 0..=255u8 {
                    if b == wire[i] {
                        continue;
                    }
                    let mut changed = wire.clone();
                    changed[i] = b;
                    if agree(&changed, 15, 4096) {
                        decided += 1;
                        corrupt += usize::from(ours(&changed, 15, 4096) == Some(Outcome::Corrupt));
                    }
                    // Through the Inflater: the same as zlib-rs's path (context takeover) either way.
                    let alone = Inflater::new(&NO_TAKEOVER).inflate(&changed, true, &mut Vec::new(), 4096);
                    let zlib_rs = Inflater::new(&TAKEOVER).inflate(&changed, true, &mut Vec::new(), 4096);
                    assert_eq!(alone, zlib_rs, "level {level}, byte {i} = {b:02x}");
                }
            }
            // Most changes are decided here, and some are found corrupt.
            assert!(decided > wire.len() * 255 * 9 / 10 && corrupt > 0, "level {level}: {decided} decided, {corrupt} corrupt");
        }
    }

    const NO_TAKEOVER: Params =
        Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15, client_max_window_bits: 15 };
    const TAKEOVER: Params = Params { client_no_context_takeover: false, ..NO_TAKEOVER };

    #[test]
    fn bombs_stop_at_the_limit() {
        // 1 MiB of zeros in about 1 KiB.
        let wire = compress(&vec![0; 1 << 20], 9, 15);
        assert!(wire.len() < 1100, "{}", wire.len());
        for max in [0, 1, 1000, 64 << 10, (1 << 20) - 1] {
            assert_eq!(ours(&wire, 15, max), Some(Outcome::TooBig), "{max}");
            let mut out = Vec::new();
            assert_eq!(Inflater::new(&NO_TAKEOVER).inflate(&wire, true, &mut out, max), Err(InflateError::TooBig { max }));
            assert!(out.capacity() <= max.max(64), "{max}: capacity {}", out.capacity());
        }
        assert_eq!(ours(&wire, 15, 1 << 20), Some(Outcome::Bytes(vec![0; 1 << 20])));
        // Stored blocks and literals: the limit is met to the byte.
        for level in [0, 1, 6] {
            let message = json_kib();
            let wire = compress(&message, level, 15);
            let mut out = b"before".to_vec();
            let r = inflate_alone(&wire, &TAIL, 15, &mut out, message.len() - 1);
            assert_eq!(r, Err(Error::TooBig));
            assert!(out.len() < 6 + message.len() && out.capacity() <= 6 + message.len(), "{level}");
            let mut out = b"before".to_vec();
            assert_eq!(inflate_alone(&wire, &TAIL, 15, &mut out, message.len()), Ok(()));
            assert_eq!(out, [&b"before"[..], &message].concat());
        }
    }

    /// Bits least significant first, as DEFLATE packs them.
    #[derive(Default)]
    struct Writer {
        bytes: Vec<u8>,
        used: u32,
    }

    impl Writer {
        fn put(&mut self, value: u32, n: u32) {
            for i in 0..n {
                if self.used % 8 == 0 {
                    self.bytes.push(0);
                }
                *self.bytes.last_mut().unwrap() |= (((value >> i) & 1) as u8) << (self.used % 8);
                self.used += 1;
            }
        }

        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            for i in (0..len).rev() {
                self.put((code >> i) & 1, 1);
            }
        }

        fn codes<'a>(&mut self, table: &[u32], lens: &[u8], syms: impl IntoIterator<Item = &'a usize>) {
            for &s in syms {
                assert!(lens[s] > 0, "symbol {s} has no code");
                self.code(table[s], u32::from(lens[s]));
            }
        }
    }

    /// Canonical codes of `lens` (RFC 1951 §3.2.2).
    fn canonical(lens: &[u8]) -> Vec<u32> {
        let mut count = [0u32; 16];
        for &l in lens {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let mut next = [0u32; 16];
        let mut code = 0;
        for b in 1..16 {
            code = (code + count[b - 1]) << 1;
            next[b] = code;
        }
        lens.iter()
            .map(|&l| {
                let c = next[usize::from(l)];
                next[usize::from(l)] += 1;
                c
            })
            .collect()
    }

    /// A precode (lengths of the code length code) that is complete: 0..=14 in 4 bits, 15 and 16
    /// in 5.
    fn precode() -> [u8; 19] {
        let mut p = [4u8; 19];
        p[15] = 5;
        p[16] = 5;
        p[17] = 0;
        p[18] = 0;
        p
    }

    /// A final dynamic block's header: HLIT, HDIST, the precode, then code length symbols (with
    /// their extra bits).
    fn dynamic_header(w: &mut Writer, nlen: usize, ndist: usize, pre: &[u8; 19], seq: &[(usize, u32)]) {
        w.put(1, 1);
        w.put(2, 2);
        w.put((nlen - 257) as u32, 5);
        w.put((ndist - 1) as u32, 5);
        w.put(15, 4);
        for &i in &PRECODE_ORDER {
            w.put(u32::from(pre[i]), 3);
        }
        let codes = canonical(pre);
        for &(sym, extra) in seq {
            w.code(codes[sym], u32::from(pre[sym]));
            match sym {
                16 => w.put(extra, 2),
                17 => w.put(extra, 3),
                18 => w.put(extra, 7),
                _ => {}
            }
        }
    }

    /// A final dynamic block with these code lengths (written one symbol each), then `syms` coded
    /// with them (distances' codes given as 1000 + code, extra bits as 2000 + bits: see `body`).
    fn dynamic(lit: &[u8], dist: &[u8], body: &[Sym]) -> Vec<u8> {
        let mut w = Writer::default();
        let seq: Vec<(usize, u32)> = lit.iter().chain(dist).map(|&l| (usize::from(l), 0)).collect();
        dynamic_header(&mut w, lit.len(), dist.len(), &precode(), &seq);
        let (lc, dc) = (canonical(lit), canonical(dist));
        for s in body {
            match *s {
                Sym::Lit(s) => w.codes(&lc, lit, [&s]),
                Sym::Dist(s) => w.codes(&dc, dist, [&s]),
                Sym::Extra(v, n) => w.put(v, n),
            }
        }
        w.bytes
    }

    enum Sym {
        Lit(usize),
        Dist(usize),
        Extra(u32, u32),
    }

    /// The fixed code of a literal/length symbol.
    fn fixed_code(w: &mut Writer, sym: u32) {
        match sym {
            0..=143 => w.code(0x30 + sym, 8),
            144..=255 => w.code(0x190 + sym - 144, 9),
            256..=279 => w.code(sym - 256, 7),
            _ => w.code(0xc0 + sym - 280, 8),
        }
    }

    fn fixed_block(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        w.put(1, 1);
        w.put(1, 2);
        f(&mut w);
        w.bytes
    }

    /// Checks `payload` against zlib-rs and gives our outcome.
    fn checked(payload: &[u8]) -> Outcome {
        assert!(agree(payload, 15, 1 << 16));
        ours(payload, 15, 1 << 16).unwrap()
    }

    fn lit_lens(pairs: &[(usize, u8)], n: usize) -> Vec<u8> {
        let mut l = vec![0; n];
        for &(s, len) in pairs {
            l[s] = len;
        }
        l
    }

    #[test]
    fn invalid_streams_as_zlib_rs() {
        use Outcome::*;
        // Block type 3.
        assert_eq!(checked(&[0x07]), Corrupt);
        // A stored block whose NLEN is not LEN's complement.
        assert_eq!(checked(&[0x01, 0x05, 0x00, 0x00, 0x00, b'a']), Corrupt);
        // Literal/length symbols 286 and 287, distance codes 30 and 31: fixed codes, no meaning.
        for sym in [286, 287] {
            assert_eq!(checked(&fixed_block(|w| fixed_code(w, sym))), Corrupt);
        }
        for d in [30, 31] {
            assert_eq!(checked(&fixed_block(|w| { fixed_code(w, b'a'.into()); fixed_code(w, 257); w.code(d, 5) })), Corrupt);
        }
        // A distance past the output (there is no context), and one just within it.
        let far = |n: u32| fixed_block(|w| { (0..n).for_each(|_| fixed_code(w, b'a'.into())); fixed_code(w, 257); w.code(1, 5); fixed_code(w, 256) });
        assert_eq!(checked(&far(1)), Corrupt);
        assert_eq!(checked(&far(2)), Bytes(b"aaaaa".to_vec()));
        // Over-subscribed literal/length code.
        let over = lit_lens(&[(97, 1), (98, 1), (256, 1)], 257);
        assert_eq!(checked(&dynamic(&over, &[1], &[])), Corrupt);
        // Incomplete literal/length code of more than one code.
        let incomplete = lit_lens(&[(97, 1), (256, 2)], 257);
        assert_eq!(checked(&dynamic(&incomplete, &[1], &[Sym::Lit(97), Sym::Lit(256)])), Corrupt);
        // A single literal/length code (end of block) of one bit: zlib allows it.
        let single = lit_lens(&[(256, 1)], 257);
        assert_eq!(checked(&dynamic(&single, &[0], &[Sym::Lit(256)])), Bytes(vec![]));
        // No end-of-block code.
        let no_end = lit_lens(&[(97, 1), (98, 1)], 257);
        assert_eq!(checked(&dynamic(&no_end, &[1], &[])), Corrupt);
        // A single distance code of one bit: allowed; its missing sibling is an invalid code.
        let lits = lit_lens(&[(97, 1), (256, 2), (257, 2)], 258);
        let body = [Sym::Lit(97), Sym::Lit(257), Sym::Dist(0), Sym::Lit(256)];
        assert_eq!(checked(&dynamic(&lits, &[1], &body)), Bytes(b"aaaa".to_vec()));
        let mut w = Writer::default();
        let seq: Vec<(usize, u32)> = lits.iter().chain(&[1u8]).map(|&l| (usize::from(l), 0)).collect();
        dynamic_header(&mut w, 258, 1, &precode(), &seq);
        let lc = canonical(&lits);
        w.codes(&lc, &lits, [&97, &257]);
        w.put(1, 1);
        assert_eq!(checked(&w.bytes), Corrupt);
        // Two distance codes, one of them of two bits: incomplete, and not zlib's exception.
        assert_eq!(checked(&dynamic(&lits, &[1, 2], &body)), Corrupt);
        // No distance code at all: literals only; a length then is an invalid distance code.
        assert_eq!(checked(&dynamic(&lits, &[0], &[Sym::Lit(97), Sym::Lit(256)])), Bytes(b"a".to_vec()));
        assert_eq!(checked(&dynamic(&lits, &[0], &[Sym::Lit(97), Sym::Lit(257), Sym::Extra(0, 1), Sym::Lit(256)])), Corrupt);
        // A repeat (16) before any length; a repeat past the last length.
        let mut w = Writer::default();
        dynamic_header(&mut w, 257, 1, &precode(), &[(16, 0)]);
        w.put(0, 16);
        assert_eq!(checked(&w.bytes), Corrupt);
        let mut w = Writer::default();
        let mut seq: Vec<(usize, u32)> = lit_lens(&[(97, 1), (256, 1)], 257).iter().map(|&l| (usize::from(l), 0)).collect();
        seq.push((16, 3));
        dynamic_header(&mut w, 257, 1, &precode(), &seq);
        w.put(0, 16);
        assert_eq!(checked(&w.bytes), Corrupt);
        // Too many length or distance codes: HLIT past 286, HDIST past 30.
        for (nlen, ndist) in [(287, 1), (288, 1), (257, 31), (257, 32)] {
            let mut w = Writer::default();
            dynamic_header(&mut w, nlen, ndist, &precode(), &[]);
            w.put(0, 32);
            assert_eq!(checked(&w.bytes), Corrupt, "{nlen} {ndist}");
        }
        // A precode incomplete or over-subscribed; one of no codes at all.
        let mut short = precode();
        short[16] = 0;
        let mut long = precode();
        long[17] = 4;
        for pre in [short, long, [0; 19]] {
            let mut w = Writer::default();
            dynamic_header(&mut w, 257, 1, &pre, &[]);
            w.put(0, 16);
            w.put(0, 300);
            assert_eq!(checked(&w.bytes), Corrupt, "{pre:?}");
        }
    }

    #[test]
    fn where_zlib_rs_differs() {
        // A distance past the window agreed (9 bits: 512), within the output: zlib-rs takes it
        // within one call's output; here it is corrupt.
        let payload = fixed_block(|w| {
            (0..600).for_each(|i| fixed_code(w, u32::from(b'a' + (i % 26) as u8)));
            fixed_code(w, 257);
            w.code(18, 5); // distances 513..=768, 8 extra bits
            w.put(600 - 513, 8);
            fixed_code(w, 256);
        });
        assert_eq!(ours(&payload, 9, 1 << 16), Some(Outcome::Corrupt));
        let mut expected: Vec<u8> = (0..600).map(|i| b'a' + (i % 26) as u8).collect();
        expected.extend_from_within(0..3);
        assert_eq!(zlib(&payload, 9, 1 << 16), Outcome::Bytes(expected.clone()));
        assert_eq!(ours(&payload, 10, 1 << 16), Some(Outcome::Bytes(expected)));
        // Past the limit, then corrupt: too big here, at the first byte past it; corrupt for
        // zlib-rs, which decodes on to the next byte it has no room for.
        let payload = fixed_block(|w| {
            (0..4).for_each(|_| fixed_code(w, u32::from(b'a')));
            fixed_code(w, 286);
        });
        assert_eq!(ours(&payload, 15, 3), Some(Outcome::TooBig));
        assert_eq!(Inflater::new(&NO_TAKEOVER).inflate(&payload, true, &mut Vec::new(), 3), Err(InflateError::TooBig { max: 3 }));
        assert_eq!(Inflater::new(&TAKEOVER).inflate(&payload, true, &mut Vec::new(), 3), Err(InflateError::Corrupt));
        assert_eq!(ours(&payload, 15, 4), Some(Outcome::Corrupt));
        // A stream cut short: zlib-rs inflates what there is and waits for more; this decoder
        // leaves it to zlib-rs (the Inflater does so), whose verdict is the message's.
        let wire = compress(&json_kib(), 6, 15);
        let cut = &wire[..wire.len() / 2];
        assert_eq!(ours(cut, 15, 1 << 16), None);
        assert!(matches!(zlib(cut, 15, 1 << 16), Outcome::Bytes(b) if !b.is_empty()));
        let alone = Inflater::new(&NO_TAKEOVER).inflate(cut, true, &mut Vec::new(), 1 << 16);
        assert_eq!(alone, Inflater::new(&TAKEOVER).inflate(cut, true, &mut Vec::new(), 1 << 16));
    }

    /// Inflates a JSON message of `RECORDS` (default 10: ~1.1 KB) at `LEVELS` (6,1) `MESSAGES` times
    /// (2,000) each, by
    /// the `Inflater` (this decoder) and by zlib-rs reset between messages (the `Inflater`'s path
    /// before it): to be counted by callgrind, one function each (`bench/results` has a run).
    #[test]
    #[ignore = "a measure, run under callgrind"]
    fn instructions_per_message() {
        let n: usize = std::env::var("MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        let levels = std::env::var("LEVELS").unwrap_or_else(|_| "6,1".into());
        let records = std::env::var("RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
        let message = json_records(records);
        for level in levels.split(',').map(|l| l.parse().expect("a level")) {
            let wire = compress(&message, level, 15);
            println!("{} bytes at level {level}: {} compressed", message.len(), wire.len());
            let mut out = Vec::with_capacity(4096);
            assert_eq!(measure_ours(&wire, &mut out, n), message.len());
            assert_eq!(measure_zlib_rs(&wire, &mut out, n), message.len());
        }
    }

    #[inline(never)]
    fn measure_ours(wire: &[u8], out: &mut Vec<u8>, n: usize) -> usize {
        let mut inf = Inflater::new(&NO_TAKEOVER);
        for _ in 0..n {
            out.clear();
            inf.inflate(std::hint::black_box(wire), true, out, 1 << 20).unwrap();
        }
        out.len()
    }

    #[inline(never)]
    fn measure_zlib_rs(wire: &[u8], out: &mut Vec<u8>, n: usize) -> usize {
        let mut d = flate2::Decompress::new_with_window_bits(false, 15);
        let input = [wire, &TAIL[..]].concat();
        for _ in 0..n {
            out.clear();
            d.decompress_vec(std::hint::black_box(&input), out, flate2::FlushDecompress::Sync).unwrap();
            d.reset(false);
        }
        out.len()
    }

    #[test]
    fn what_follows_a_final_block_is_ignored() {
        let mut wire = compress(b"Hello", 6, 15);
        wire[0] |= 1; // BFINAL on the (only) block: then the tail and anything else is not read.
        for rest in [&[][..], &[0xff; 100], &[0x07]] {
            let payload = [&wire[..], rest].concat();
            assert_eq!(checked(&payload), Outcome::Bytes(b"Hello".to_vec()));
        }
        // The empty stored block of a sync flush with BFINAL 0 ends a message (RFC 7692 §7.2.2).
        assert_eq!(checked(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]), Outcome::Bytes(b"Hello".to_vec()));
        // Stored blocks, one split across the payload and the tail.
        assert_eq!(checked(&[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00]), Outcome::Bytes(b"Hello".to_vec()));
        // Without the flush's block header, the tail is read as the next block's LEN: too short.
        assert_eq!(ours(&[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o'], 15, 100), None);
        assert_eq!(checked(&[0x01, 0x02, 0x00, 0xfd, 0xff]), Outcome::Bytes(vec![0x00, 0x00]));
    }
}
