//! The frame decoder and the session on arbitrary bytes, fed in arbitrary chunks: no panic,
//! chunking never changes what comes out, a feed that says more bytes are needed is right, and
//! replies with values held by reference, and pushes interleaved with the input (encoded, copied
//! or held, some refused by a small queue limit), drain to exactly their length. All of it again
//! with permessage-deflate on (picked by the first byte): RSV1 frames are inflated, never past
//! the message limit, and replies and pushes go compressed.
#![no_main]

use apisix_pubsub_rs::deflate::{Config, Inflater, Params};
use apisix_pubsub_rs::frame::{Decoder, Event, Limits, Poll};

use apisix_pubsub_rs::session::{Chunk, Options, Session, Step, WRITE_BATCH, WRITE_MAX};
use libfuzzer_sys::fuzz_target;

/// What the decoder yields, in a form cheap to compare: (kind, bytes); kind 0 is an error.
fn run(data: &[u8], chunk: usize, deflate: Option<Params>) -> Vec<(u8, Vec<u8>)> {
    let limits = Limits { max_payload_len: 1024, max_message_len: 4096 };
    let mut d = Decoder::new(limits);
    if let Some(params) = deflate {
        d.set_inflater(Inflater::new(&params));
    }
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        if d.feed(piece) > 0 {
            assert!(matches!(d.poll(), Ok(Poll::NeedMore(_))), "feed said more bytes were needed");
            continue;
        }
        loop {
            match d.poll() {
                Ok(Poll::Event(Event::Text(t))) if t.len() > 4096 => panic!("a text message over the limit"),
                Ok(Poll::Event(Event::Binary(b))) if b.len() > 4096 => panic!("a message over the limit"),
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
    // Bit 7 of the first byte: permessage-deflate on; bit 6: with context takeover both ways.
    let deflate = (chunk & 0x80 != 0).then_some(Params {
        server_no_context_takeover: chunk & 0x40 == 0,
        client_no_context_takeover: chunk & 0x40 == 0,
        server_max_window_bits: 9 + chunk % 7,
        client_max_window_bits: 15,
    });
    let chunk = chunk & 0x3f;
    assert_eq!(run(data, usize::from(chunk), deflate), run(data, data.len(), deflate));
    let known = *apisix_pubsub_rs::schema::Schema::builtin().known();
    let mut s = Session::new(
        apisix_pubsub_rs::schema::Schema::builtin(),
        Options { max_queue_bytes: Some(1 << 16), ..Options::default() },
    );
    if let Some(params) = deflate {
        s.set_compression(params, Config { threshold: usize::from(chunk), ..Config::default() });
    }
    let mut held = 0u32;
    for piece in data.chunks(usize::from(chunk).max(1)) {
        s.feed(piece);
        // A push beside the input, as another light thread of the worker would send it.
        match piece[0] % 4 {
            0 => {
                s.push_begin(i64::from(piece[0]));
                s.encoder().put_pong(piece);
                let _ = s.push_finish();
            }
            1 => {
                let _ = s.push_message(piece, None);
            }
            2 => {
                if s.push_message(&piece.repeat(64), Some(held)).is_ok() {
                    held += 1;
                }
            }
            _ => {}
        }
        loop {
            match s.step() {
                Step::NeedMore | Step::Ended => break,
                Step::Command { sequence, .. } if sequence % 2 == 0 => s.reply_error(b"fuzz"),
                Step::Command { sequence, .. } => {
                    // A pong whose state is held by reference, of a length the input picks.
                    let len = (sequence as u64 % 70_000) as usize;
                    s.reply_begin();
                    let e = s.encoder();
                    e.open(u32::from(known.pong)).expect("open pong_resp");
                    e.put_bytes_ref(u32::from(known.pong_state), held, len).expect("held state");
                    e.close().expect("close pong_resp");
                    s.reply_finish().expect("finish");
                    held += 1;
                }
                _ => {}
            }
        }
        // Due before the next read: all of it, or whole writes of a size within the bounds.
        let (due, size, pending) = (s.write_due(), s.write_size(), s.pending());
        assert!((WRITE_BATCH..=WRITE_MAX).contains(&size));
        assert!(due == pending || (due < pending && due % size == 0), "{due} of {pending} due, writes of {size}");
        // Drain it all: every chunk is consumed whole, and pending counts down to 0 exactly.
        while let Some(c) = s.chunk(usize::from(chunk).max(1) * 97) {
            let n = match c {
                Chunk::Bytes(b) => b.len(),
                Chunk::Held { len, .. } => len,
            };
            assert!(n > 0);
            let before = s.pending();
            s.consume(n);
            assert_eq!(s.pending(), before - n);
        }
        assert_eq!(s.pending(), 0);
    }
});
