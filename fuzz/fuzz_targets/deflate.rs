//! What the server compresses, on arbitrary bytes: every level and window of a message
//! compressed on its own (the first two bytes pick them), inflated back by the crate's zlib-rs
//! inflater with the same window, is the message.
#![no_main]

use apisix_pubsub_rs::deflate::{Deflater, Inflater, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [level, bits, message @ ..] = data else { return };
    let bits = 9 + bits % 7;
    let params =
        Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: bits, client_max_window_bits: bits };
    let mut wire = Vec::new();
    Deflater::new(&params, u32::from(level % 10)).deflate(message, &mut wire);
    let mut back = Vec::new();
    Inflater::new(&params).inflate(&wire, true, &mut back, message.len()).expect("inflates within the message's size");
    assert_eq!(back, message);
});
