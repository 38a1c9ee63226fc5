//! The inflater of a message without context (its own DEFLATE decoder, `deflate::decoder`) against
//! zlib-rs (the same `Inflater` with client context takeover, which always inflates with zlib-rs)
//! on arbitrary bytes: the same bytes, or the same error. The first two bytes pick the limit.
//! One difference is allowed: a stream that passes the limit and is corrupt after it is too big
//! for ours (it stops at the first byte past the limit) and may be corrupt for zlib-rs (which
//! decodes on to the next byte it has no room for), having filled the limit.
#![no_main]

use apisix_pubsub_rs::deflate::{InflateError, Inflater, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, payload @ ..] = data else { return };
    let max = usize::from(u16::from_le_bytes([*a, *b]));
    // Window 15: ours rejects distances past a smaller window that zlib-rs allows within its output.
    let params =
        Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15, client_max_window_bits: 15 };
    let mut ours = Vec::new();
    let r_ours = Inflater::new(&params).inflate(payload, true, &mut ours, max);
    let mut zlib = Vec::new();
    let r_zlib = Inflater::new(&Params { client_no_context_takeover: false, ..params }).inflate(payload, true, &mut zlib, max);
    match (r_ours, r_zlib) {
        (Err(InflateError::TooBig { .. }), Err(InflateError::Corrupt)) => assert_eq!(zlib.len(), max),
        (r_ours, r_zlib) => {
            assert_eq!(r_ours, r_zlib);
            if r_ours.is_ok() {
                assert_eq!(ours, zlib);
            }
        }
    }
    assert!(ours.len() <= max);
});
