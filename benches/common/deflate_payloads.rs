//! Payloads of the deflate benches: JSON-like records (what Kafka-style pushes carry) and random bytes.
#![allow(dead_code)] // Each bench binary uses a part.

/// A xorshift generator: the same bytes on every run.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// About `len` bytes of a JSON array of order records with varying numbers and ids.
pub fn json(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(7);
    let mut out = b"[".to_vec();
    let skus = ["A-1234", "B-0042", "C-7781", "D-5150", "E-0007"];
    let currencies = ["EUR", "USD", "GBP"];
    while out.len() < len {
        let r = rng.next();
        let rec = format!(
            r#"{{"topic":"orders","partition":{},"offset":{},"timestamp":{},"key":"user-{}","value":{{"sku":"{}","qty":{},"price":{}.{:02},"currency":"{}"}}}},"#,
            r % 8,
            1_000_000 + (r >> 8) % 100_000,
            1_700_000_000_000u64 + (r >> 20) % 1_000_000,
            (r >> 32) % 10_000,
            skus[(r >> 40) as usize % skus.len()],
            1 + (r >> 44) % 5,
            (r >> 48) % 200,
            (r >> 56) % 100,
            currencies[(r >> 60) as usize % currencies.len()],
        );
        out.extend_from_slice(rec.as_bytes());
    }
    out.truncate(len - 1);
    out.push(b']');
    out
}

/// `len` random bytes: what deflate cannot shrink.
pub fn random(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(99);
    (0..len).map(|_| rng.next() as u8).collect()
}
