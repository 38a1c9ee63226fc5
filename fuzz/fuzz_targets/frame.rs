//! The frame decoder and the session on arbitrary bytes, fed in arbitrary chunks: no panic, and
//! chunking never changes what comes out.
#![no_main]

use apisix_pubsub_rs::frame::{Decoder, Event, Limits, Poll};
use apisix_pubsub_rs::session::{Options, Session, Step};
use libfuzzer_sys::fuzz_target;

/// What the decoder yields, in a form cheap to compare: (kind, bytes); kind 0 is an error.
fn run(data: &[u8], chunk: usize) -> Vec<(u8, Vec<u8>)> {
    let limits = Limits { max_payload_len: 1024, max_message_len: 4096 };
    let mut d = Decoder::new(limits);
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        d.feed(piece);
        loop {
            match d.poll() {
                Ok(Poll::Event(ev)) => out.push(match ev {
                    Event::Text(t) => (1, t.as_bytes().to_vec()),
                    Event::Binary(b) => (2, b.to_vec()),
                    Event::Ping(b) => (9, b.to_vec()),
                    Event::Pong(b) => (10, b.to_vec()),
                    Event::Close(c) => (8, c.map_or(vec![], |(code, r)| [&code.to_be_bytes()[..], r.as_bytes()].concat())),
                }),
                Ok(Poll::NeedMore(_)) => break,
                Err(e) => {
                    out.push((0, e.to_string().into_bytes()));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, data)) = input.split_first() else { return };
    assert_eq!(run(data, usize::from(chunk)), run(data, data.len()));
    let mut s = Session::new(Options::default());
    for piece in data.chunks(usize::from(chunk).max(1)) {
        s.feed(piece);
        loop {
            match s.step() {
                Step::NeedMore | Step::Ended => break,
                Step::Command { .. } => s.reply_error(b"fuzz"),
                _ => {}
            }
        }
        let n = s.peek(65536).len();
        s.consume(n);
    }
});
