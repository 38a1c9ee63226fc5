use proptest::prelude::*;

use super::*;

const TAKEOVER: Params =
    Params { server_no_context_takeover: false, client_no_context_takeover: false, server_max_window_bits: 15, client_max_window_bits: 15 };
const NO_TAKEOVER: Params =
    Params { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15, client_max_window_bits: 15 };

/// A config that adds nothing of its own to an offer.
const PLAIN: Config = Config {
    server_max_window_bits: 15,
    client_max_window_bits: 15,
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    threshold: 0,
    level: 6,
    large_level: 6,
};

fn answer(lines: &[&str], config: &Config) -> Option<String> {
    negotiate(lines.iter().map(|l| l.as_bytes()), config).map(|p| p.response())
}

#[test]
fn negotiation_table() {
    let small = Config { server_max_window_bits: 12, client_max_window_bits: 10, ..PLAIN };
    let d = Config::default();
    #[rustfmt::skip]
    let table: &[(&[&str], &Config, Option<&str>)] = &[
        // No offer, or only other extensions.
        (&[], &d, None),
        (&["x-webkit-deflate-frame"], &d, None),
        (&["foo; bar=1, baz"], &d, None),
        // Plain offers: the defaults add both no-context-takeover flags.
        (&["permessage-deflate"], &d, Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")),
        (&["permessage-deflate"], &PLAIN, Some("permessage-deflate")),
        // What Chromium, Python websockets and Node's ws offer.
        (&["permessage-deflate; client_max_window_bits"], &PLAIN, Some("permessage-deflate")),
        (&["permessage-deflate; client_max_window_bits"], &small, Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10")),
        (&["permessage-deflate; client_max_window_bits"], &d, Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")),
        // The client's flags are kept.
        (&["permessage-deflate; server_no_context_takeover"], &PLAIN, Some("permessage-deflate; server_no_context_takeover")),
        (&["permessage-deflate; client_no_context_takeover"], &PLAIN, Some("permessage-deflate; client_no_context_takeover")),
        (&["permessage-deflate; client_no_context_takeover; server_no_context_takeover"], &PLAIN,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")),
        // server_max_window_bits: the smaller of the offer's and the config's.
        (&["permessage-deflate; server_max_window_bits=10"], &PLAIN, Some("permessage-deflate; server_max_window_bits=10")),
        (&["permessage-deflate; server_max_window_bits=14"], &small, Some("permessage-deflate; server_max_window_bits=12")),
        (&["permessage-deflate; server_max_window_bits=9"], &small, Some("permessage-deflate; server_max_window_bits=9")),
        (&["permessage-deflate; server_max_window_bits=15"], &PLAIN, Some("permessage-deflate")),
        (&["permessage-deflate"], &small, Some("permessage-deflate; server_max_window_bits=12")),
        // client_max_window_bits: never without the offer's parameter; not above its value.
        (&["permessage-deflate; client_max_window_bits=12"], &PLAIN, Some("permessage-deflate; client_max_window_bits=12")),
        (&["permessage-deflate; client_max_window_bits=12"], &small, Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10")),
        (&["permessage-deflate; client_max_window_bits=9"], &small, Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=9")),
        (&["permessage-deflate; client_max_window_bits=8"], &PLAIN, Some("permessage-deflate; client_max_window_bits=8")),
        // 8 bits for the server: zlib cannot, the offer is declined; a later one is taken.
        (&["permessage-deflate; server_max_window_bits=8"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=8, permessage-deflate"], &PLAIN, Some("permessage-deflate")),
        // Values out of range or malformed.
        (&["permessage-deflate; server_max_window_bits"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits="], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=7"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=16"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=010"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=1a"], &PLAIN, None),
        (&["permessage-deflate; client_max_window_bits=0"], &PLAIN, None),
        (&["permessage-deflate; client_max_window_bits=-9"], &PLAIN, None),
        (&["permessage-deflate; server_no_context_takeover=1"], &PLAIN, None),
        (&["permessage-deflate; client_no_context_takeover=\"x\""], &PLAIN, None),
        // Duplicates and unknown parameters.
        (&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], &PLAIN, None),
        (&["permessage-deflate; client_no_context_takeover; client_no_context_takeover"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"], &PLAIN, None),
        (&["permessage-deflate; client_max_window_bits; client_max_window_bits=10"], &PLAIN, None),
        (&["permessage-deflate; max_window_bits=10"], &PLAIN, None),
        (&["permessage-deflate; x"], &PLAIN, None),
        // Quoted values (RFC 7692 §5.2): a token once unquoted.
        (&["permessage-deflate; server_max_window_bits=\"10\""], &PLAIN, Some("permessage-deflate; server_max_window_bits=10")),
        (&["permessage-deflate; client_max_window_bits=\"\\1\\2\""], &PLAIN, Some("permessage-deflate; client_max_window_bits=12")),
        (&["permessage-deflate; server_max_window_bits=\"10"], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=\"1 0\""], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=\"\""], &PLAIN, None),
        (&["permessage-deflate; server_max_window_bits=1\"0\""], &PLAIN, None),
        // Syntax.
        (&["permessage-deflate;"], &PLAIN, None),
        (&["permessage-deflate;;"], &PLAIN, None),
        (&["permessage-deflate; =10"], &PLAIN, None),
        (&["permessage-deflate; server max window bits=10"], &PLAIN, None),
        (&["permessage deflate"], &PLAIN, None),
        // Whitespace, case, empty list elements.
        (&["  permessage-deflate ;\tserver_max_window_bits = 11 "], &PLAIN, Some("permessage-deflate; server_max_window_bits=11")),
        (&["PerMessage-Deflate; Server_No_Context_Takeover"], &PLAIN, Some("permessage-deflate; server_no_context_takeover")),
        (&[", ,permessage-deflate,"], &PLAIN, Some("permessage-deflate")),
        // The first acceptable offer, across elements and header lines.
        (&["permessage-deflate; bogus, permessage-deflate; server_max_window_bits=13"], &PLAIN, Some("permessage-deflate; server_max_window_bits=13")),
        (&["foo", "permessage-deflate; server_max_window_bits=11"], &PLAIN, Some("permessage-deflate; server_max_window_bits=11")),
        (&["permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=9", "permessage-deflate"], &PLAIN,
            Some("permessage-deflate; server_max_window_bits=9")),
        (&["permessage-deflate; server_max_window_bits=10, permessage-deflate"], &PLAIN, Some("permessage-deflate; server_max_window_bits=10")),
        // A quoted comma does not split the list.
        (&["foo; a=\"x,permessage-deflate\""], &PLAIN, None),
        (&["foo; a=\"x,y\", permessage-deflate"], &PLAIN, Some("permessage-deflate")),
    ];
    for (lines, config, want) in table {
        assert_eq!(answer(lines, config).as_deref(), *want, "{lines:?}");
    }
}

#[test]
fn why_offers_are_declined() {
    let why = |line: &str| parse_offers([line.as_bytes()]).pop().unwrap();
    assert_eq!(why("permessage-deflate; server_max_window_bits=8"), Err(OfferError::WindowEight));
    assert_eq!(why("permessage-deflate; a"), Err(OfferError::UnknownParam));
    assert_eq!(why("permessage-deflate; client_no_context_takeover; client_no_context_takeover"), Err(OfferError::Duplicate));
    assert_eq!(why("permessage-deflate; client_max_window_bits=16"), Err(OfferError::BadValue));
    assert_eq!(why("permessage-deflate; ;"), Err(OfferError::Syntax));
    assert_eq!(why("p@rmessage"), Err(OfferError::Syntax));
    assert_eq!(
        why("permessage-deflate; client_max_window_bits"),
        Ok(Offer { client_max_window_bits: Some(None), ..Offer::default() })
    );
}

#[test]
fn negotiated_params() {
    let p = negotiate([&b"permessage-deflate; client_max_window_bits=11; server_max_window_bits=10"[..]], &PLAIN).unwrap();
    assert_eq!(
        p,
        Params { server_no_context_takeover: false, client_no_context_takeover: false, server_max_window_bits: 10, client_max_window_bits: 11 }
    );
    assert_eq!(SharedKey::of(&p, 6), None, "context takeover: nothing to share");
    let p = negotiate([&b"permessage-deflate; server_max_window_bits=10"[..]], &Config::default()).unwrap();
    assert_eq!(SharedKey::of(&p, 1), Some(SharedKey { window_bits: 10, level: 1 }));
}

#[test]
fn config_ranges_and_threshold() {
    assert_eq!(Config::default().validate(), Ok(()));
    assert_eq!(Config { server_max_window_bits: 8, ..PLAIN }.validate(), Err(ConfigError::WindowBits(8)));
    assert_eq!(Config { client_max_window_bits: 16, ..PLAIN }.validate(), Err(ConfigError::WindowBits(16)));
    assert_eq!(Config { level: 10, ..PLAIN }.validate(), Err(ConfigError::Level(10)));
    assert_eq!(Config { large_level: 11, ..PLAIN }.validate(), Err(ConfigError::Level(11)));
    let c = Config::default();
    assert!(!c.compresses(63));
    assert!(c.compresses(64));
    assert_eq!((c.level_for(LARGE_MESSAGE - 1), c.level_for(LARGE_MESSAGE)), (1, 1));
}

fn inflate_all(inflater: &mut Inflater, frames: &[&[u8]], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        inflater.inflate(f, i + 1 == frames.len(), &mut out, max)?;
    }
    Ok(out)
}

#[test]
fn rfc_7692_vectors_inflate() {
    // §7.2.3.1 one block, §7.2.3.3 a stored block, §7.2.3.4 a final block, §7.2.3.5 two blocks.
    for payload in [
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
        &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00],
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00],
    ] {
        for params in [TAKEOVER, NO_TAKEOVER] {
            let mut inf = Inflater::new(&params);
            assert_eq!(inflate_all(&mut inf, &[payload], 5).unwrap(), b"Hello", "{payload:02x?}");
            assert_eq!(inflate_all(&mut inf, &[payload], 5).unwrap(), b"Hello", "again: {payload:02x?}");
            assert_eq!(inflate_all(&mut Inflater::new(&params), &[payload], 4), Err(InflateError::TooBig { max: 4 }));
        }
    }
    // §7.2.3.1, fragmented: `41 03 f2 48 cd` then `80 04 c9 c9 07 00`.
    let mut inf = Inflater::new(&TAKEOVER);
    assert_eq!(inflate_all(&mut inf, &[&[0xf2, 0x48, 0xcd], &[0xc9, 0xc9, 0x07, 0x00]], 100).unwrap(), b"Hello");
}

#[test]
fn rfc_7692_sliding_window_vector() {
    // §7.2.3.2: the second "Hello" refers back into the first.
    let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut inf = Inflater::new(&TAKEOVER);
    assert_eq!(inflate_all(&mut inf, &[&first], 100).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut inf, &[&second], 100).unwrap(), b"Hello");
    assert!(inf.holds_state(), "context takeover keeps the window");
    // Without context takeover the window is gone: the reference points at nothing.
    let mut inf = Inflater::new(&NO_TAKEOVER);
    assert_eq!(inflate_all(&mut inf, &[&first], 100).unwrap(), b"Hello");
    assert!(!inf.holds_state(), "released between messages");
    assert_eq!(inflate_all(&mut inf, &[&second], 100), Err(InflateError::Corrupt));
}

#[test]
fn deflate_reproduces_the_rfc_bytes() {
    let mut d = Deflater::new(&TAKEOVER, 6);
    let mut out = vec![];
    d.deflate(b"Hello", &mut out);
    assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    out.clear();
    d.deflate(b"Hello", &mut out);
    assert_eq!(out, [0xf2, 0x00, 0x11, 0x00, 0x00]);
    // Without context takeover every "Hello" is the first.
    let mut d = Deflater::new(&NO_TAKEOVER, 6);
    for _ in 0..2 {
        out.clear();
        d.deflate(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }
}

#[test]
fn empty_messages() {
    for params in [TAKEOVER, NO_TAKEOVER] {
        let mut d = Deflater::new(&params, 1);
        let mut inf = Inflater::new(&params);
        for m in [&b""[..], b"x", b"", b"", b"abc"] {
            let mut wire = vec![];
            d.deflate(m, &mut wire);
            assert!(!wire.is_empty());
            assert_eq!(inflate_all(&mut inf, &[&wire], 10).unwrap(), m);
        }
    }
    // An empty payload, as zlib-based peers send for an empty message after another, is the
    // empty message; the stream is left as it was, and the next message reads on from it.
    let mut inf = Inflater::new(&TAKEOVER);
    assert_eq!(inflate_all(&mut inf, &[b""], 0).unwrap(), b"");
    assert_eq!(inflate_all(&mut inf, &[b"", b""], 0).unwrap(), b"");
    assert_eq!(inflate_all(&mut inf, &[&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]], 5).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut inf, &[b""], 0).unwrap(), b"");
    assert_eq!(inflate_all(&mut inf, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]], 5).unwrap(), b"Hello");
}

/// flate2's raw inflate of one message of a fresh stream, the tail appended.
fn raw_inflate(bits: u8, payload: &[u8]) -> Result<Vec<u8>, flate2::DecompressError> {
    let mut d = flate2::Decompress::new_with_window_bits(false, bits);
    let mut out = Vec::with_capacity(payload.len() * 1200 + 64);
    d.decompress_vec(&[payload, &TAIL[..]].concat(), &mut out, flate2::FlushDecompress::Sync).map(|_| out)
}

#[test]
fn window_bits_are_honoured() {
    // 1000 random bytes twice: the second copy is a match 1000 bytes back, past a 9-bit window.
    let mut rng = 0x2545_f491_u32;
    let chunk: Vec<u8> = (0..1000)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng as u8
        })
        .collect();
    let message = [chunk.clone(), chunk].concat();
    for bits in 9..=15 {
        let params = Params { server_max_window_bits: bits, ..NO_TAKEOVER };
        let mut wire = vec![];
        Deflater::new(&params, 9).deflate(&message, &mut wire);
        assert_eq!(raw_inflate(bits, &wire).unwrap(), message, "{bits} bits");
        if bits == 15 {
            assert!(wire.len() < 1500, "the match is found in a large window: {}", wire.len());
        } else if bits == 9 {
            assert!(wire.len() > 1900, "no match that far back in 512 bytes: {}", wire.len());
        }
    }
}

#[test]
fn client_window_of_8_bits_inflates_with_9() {
    let params = Params { client_max_window_bits: 8, ..TAKEOVER };
    let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut wire = Vec::with_capacity(100);
    c.compress_vec(b"hello hello hello", &mut wire, flate2::FlushCompress::Sync).unwrap();
    wire.truncate(wire.len() - 4);
    assert_eq!(inflate_all(&mut Inflater::new(&params), &[&wire], 100).unwrap(), b"hello hello hello");
}

/// `mib` MiB of zeros as one deflate stream without a final block: one compressed MiB, made
/// once, sync-flushed and repeated (its matches only ever refer to zeros), about 1 KiB per MiB;
/// the last copy's tail removed, as a sender does.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::new(9), false);
    let mut one = Vec::with_capacity(1 << 16);
    c.compress_vec(&vec![0u8; 1 << 20], &mut one, flate2::FlushCompress::Sync).unwrap();
    let mut bomb = one.repeat(mib);
    bomb.truncate(bomb.len() - 4);
    bomb
}

#[test]
fn a_small_frame_inflating_to_a_mebibyte_stops_at_the_limit() {
    let bomb = zero_bomb(1);
    assert!(bomb.len() <= 1100, "{}", bomb.len());
    let max = 64 << 10;
    for params in [TAKEOVER, NO_TAKEOVER] {
        let mut inf = Inflater::new(&params);
        let mut out = Vec::new();
        assert_eq!(inf.inflate(&bomb, true, &mut out, max), Err(InflateError::TooBig { max }));
        assert!(out.len() <= max && out.capacity() <= max, "len {} cap {}", out.len(), out.capacity());
        assert_eq!(InflateError::TooBig { max }.close_code(), 1009);
        // The connection is to be closed: the inflater stays failed.
        assert_eq!(inf.inflate(b"", true, &mut out, max), Err(InflateError::TooBig { max }));
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        assert_eq!(Inflater::new(&params).inflate(&bomb, true, &mut out, 1 << 20), Ok(()));
        assert_eq!(out.len(), 1 << 20);
    }
}

#[test]
fn a_mebibyte_of_frames_inflating_to_a_gibibyte_stops_at_the_limit() {
    let bomb = zero_bomb(1024);
    assert!(bomb.len() <= 1100 << 10, "{}", bomb.len());
    let max = 1 << 20;
    let mut inf = Inflater::new(&NO_TAKEOVER);
    let mut out = Vec::new();
    let mut frames = bomb.chunks(64 << 10);
    let mut result = Ok(());
    let mut fed = 0;
    for f in frames.by_ref() {
        fed += 1;
        result = inf.inflate(f, false, &mut out, max);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(InflateError::TooBig { max }));
    assert_eq!(fed, 1, "found in the first frame, before the rest is looked at");
    assert!(out.len() <= max && out.capacity() <= max, "len {} cap {}", out.len(), out.capacity());
}

#[test]
fn the_limit_counts_the_whole_message() {
    let mut d = Deflater::new(&TAKEOVER, 1);
    let mut wire = vec![];
    d.deflate(&[b'a'; 300], &mut wire);
    let (a, b) = wire.split_at(wire.len() / 2);
    let mut inf = Inflater::new(&TAKEOVER);
    let mut out = vec![];
    let r = inf.inflate(a, false, &mut out, 299).and_then(|()| inf.inflate(b, true, &mut out, 299));
    assert_eq!(r, Err(InflateError::TooBig { max: 299 }));
}

#[test]
fn corrupt_streams() {
    let corrupt = |frames: &[&[u8]]| inflate_all(&mut Inflater::new(&TAKEOVER), frames, 1 << 16);
    // BTYPE 11 is reserved.
    assert_eq!(corrupt(&[&[0xff, 0xff, 0xff]]), Err(InflateError::Corrupt));
    // A stored block whose NLEN is not LEN's complement.
    assert_eq!(corrupt(&[&[0x00, 0x05, 0x00, 0x00, 0x00, b'H']]), Err(InflateError::Corrupt));
    // Bytes after a final block are not inflated (zlib stops at the end of the stream).
    assert_eq!(corrupt(&[&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x01]]).unwrap(), b"Hello");
    assert_eq!(corrupt(&[&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &[0xff; 100]]).unwrap(), b"Hello");
    // A distance before the start of the stream.
    assert_eq!(corrupt(&[&[0xf2, 0x00, 0x11, 0x00, 0x00]]), Err(InflateError::Corrupt));
    assert_eq!(InflateError::Corrupt.close_code(), 1007);
}

#[test]
fn a_final_block_resets_a_context_takeover_stream() {
    let mut inf = Inflater::new(&TAKEOVER);
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(inflate_all(&mut inf, &[&bfinal], 100).unwrap(), b"Hello");
    assert_eq!(inflate_all(&mut inf, &[&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]], 100).unwrap(), b"Hello");
}

#[test]
fn shared_compression_is_the_same_bytes_for_every_connection() {
    let message = br#"{"channel":"prices","id":"1700000000000-0","data":{"bid":101.25,"ask":101.5}}"#.repeat(10);
    let key = SharedKey { window_bits: 15, level: 1 };
    let mut shared = SharedCompressor::new();
    let a = shared.deflate_shared(key, &message).unwrap();
    let b = shared.deflate_shared(key, &message).unwrap();
    assert_eq!(a, b, "reset after each message: no message depends on the one before");
    let mut own = vec![];
    Deflater::new(&NO_TAKEOVER, 1).deflate(&message, &mut own);
    assert_eq!(a.as_ref(), own.as_slice(), "what a connection's own deflater would send");
    assert!(a.len() * 3 < message.len());
    for _ in 0..3 {
        assert_eq!(inflate_all(&mut Inflater::new(&NO_TAKEOVER), &[&a], 1 << 16).unwrap(), message);
    }
    let small = SharedKey { window_bits: 9, level: 1 };
    let c = shared.deflate_shared(small, &message).unwrap();
    assert_eq!(raw_inflate(9, &c).unwrap(), message);
    // Messages under 16 KiB take no zlib state; larger ones one per key, kept for the next.
    assert_eq!(shared.keys().count(), 0);
    let large = message.repeat(30);
    for k in [key, small, key] {
        let z = shared.deflate_shared(k, &large).unwrap();
        assert_eq!(raw_inflate(k.window_bits, &z).unwrap(), large);
    }
    assert_eq!(shared.keys().collect::<Vec<_>>(), [key, small]);
    // Random bytes do not shrink: better sent uncompressed.
    let mut rng = 1u32;
    let noise: Vec<u8> = (0..2000).map(|_| { rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345); (rng >> 16) as u8 }).collect();
    assert_eq!(shared.deflate_shared(key, &noise), None);
}

/// The peer's deflate as flate2 does it, with a sync flush and the tail removed.
fn flate2_deflate(c: &mut flate2::Compress, m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 64);
    let start = c.total_in() as usize;
    loop {
        let done = c.total_in() as usize - start;
        c.compress_vec(&m[done..], &mut out, flate2::FlushCompress::Sync).unwrap();
        if c.total_in() as usize - start == m.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.len() + 64);
    }
    // An empty message after another: zlib writes nothing, and the peer sends an empty payload.
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - 4);
    }
    out
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3000),
        // Compressible: a few words repeated.
        prop::collection::vec(prop::sample::select(vec![&b"{\"id\":"[..], b"\"data\"", b"1700000", b",", b"}", b"hello "]), 0..400)
            .prop_map(|w| w.concat()),
    ]
}

fn cut(payload: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    at.extend([0, payload.len()]);
    at.sort_unstable();
    at.windows(2).map(|w| payload[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_through_our_deflater_and_inflater(
        messages in prop::collection::vec(message(), 1..5),
        takeover in any::<bool>(),
        bits in 9u8..=15,
        level in 0u32..=9,
        cuts in prop::collection::vec(any::<usize>(), 0..5),
    ) {
        let params = Params { server_max_window_bits: bits, client_max_window_bits: bits, ..if takeover { TAKEOVER } else { NO_TAKEOVER } };
        // The server's deflater sends; an inflater of the same window, as the client has, reads.
        let client_view = Params { client_no_context_takeover: params.server_no_context_takeover, client_max_window_bits: bits, ..params };
        let mut d = Deflater::new(&params, level);
        let mut inf = Inflater::new(&client_view);
        for m in &messages {
            let mut wire = vec![];
            d.deflate(m, &mut wire);
            // flate2's own raw inflate of the same bytes agrees (with takeover, given the window).
            if !takeover {
                prop_assert_eq!(&raw_inflate(bits, &wire).unwrap(), m);
            }
            let frames = cut(&wire, &cuts);
            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&inflate_all(&mut inf, &frames, m.len()).unwrap(), m);
        }
    }

    #[test]
    fn inflates_what_flate2_deflates(messages in prop::collection::vec(message(), 1..5), takeover in any::<bool>(), cuts in prop::collection::vec(any::<usize>(), 0..5)) {
        let params = if takeover { TAKEOVER } else { NO_TAKEOVER };
        let mut inf = Inflater::new(&params);
        let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
        for m in &messages {
            if !takeover {
                c.reset();
            }
            let wire = flate2_deflate(&mut c, m);
            let frames = cut(&wire, &cuts);
            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&inflate_all(&mut inf, &frames, m.len()).unwrap(), m);
        }
    }

    #[test]
    fn a_limit_below_the_size_is_always_found(m in message(), less in 1usize..100) {
        prop_assume!(!m.is_empty());
        let max = m.len().saturating_sub(less);
        let mut wire = vec![];
        Deflater::new(&TAKEOVER, 6).deflate(&m, &mut wire);
        let mut out = vec![];
        prop_assert_eq!(Inflater::new(&TAKEOVER).inflate(&wire, true, &mut out, max), Err(InflateError::TooBig { max }));
        prop_assert!(out.len() <= max);
    }

    #[test]
    fn garbage_is_an_error_or_bytes_within_the_limit(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4)) {
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        match inflate_all(&mut Inflater::new(&TAKEOVER), &frames, 1000) {
            Ok(out) => prop_assert!(out.len() <= 1000),
            Err(e) => {
                let known = matches!(e, InflateError::Corrupt | InflateError::TooBig { max: 1000 });
                prop_assert!(known, "{:?}", e);
            }
        }
    }
}


#[test]
fn final_frames_around_the_one_call_size_inflate_alike() {
    // Stored blocks (level 0): the payload is the message and 5 bytes, so these cross the size
    // under which a final frame is inflated with the tail in one call.
    for n in 240..270usize {
        let m: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
        let mut wire = vec![];
        Deflater::new(&NO_TAKEOVER, 0).deflate(&m, &mut wire);
        let mut inf = Inflater::new(&NO_TAKEOVER);
        assert_eq!(inflate_all(&mut inf, &[&wire], n).unwrap(), m, "{} payload bytes", wire.len());
        assert_eq!(inflate_all(&mut inf, &[&wire[..10], &wire[10..]], n).unwrap(), m);
        let mut out = vec![];
        assert_eq!(inf.inflate(&wire, true, &mut out, n - 1), Err(InflateError::TooBig { max: n - 1 }));
    }
}
