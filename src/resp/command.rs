//! Commands: an array of bulk strings, the only form Redis reads from clients (RESP2 and RESP3 alike).

use redis_protocol::resp2::{encode::encode_borrowed, types::BorrowedFrame};

/// Bytes that [`encode_command`] appends for `args`.
pub fn encoded_len<'a, I>(args: I) -> usize
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let (n, len) = args.into_iter().fold((0, 0), |(n, len), a| (n + 1, len + bulk_len(a)));
    array_header_len(n) + len
}

fn bulk_len(a: &[u8]) -> usize {
    1 + digits(a.len()) + 2 + a.len() + 2
}

fn array_header_len(n: usize) -> usize {
    1 + digits(n) + 2
}

fn digits(mut v: usize) -> usize {
    let mut d = 1;
    while v >= 10 {
        v /= 10;
        d += 1;
    }
    d
}

/// Appends the command made of `args` (`[b"XADD", b"key", b"*", b"data", payload]`) to `out`,
/// as RESP: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument. Each argument is copied once,
/// straight into `out`. Integers go as their decimal text, as Redis expects them.
pub fn encode_command<'a, I>(out: &mut Vec<u8>, args: I)
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut len = 0;
    let frames: Vec<BorrowedFrame<'a>> = args
        .into_iter()
        .map(|a| {
            len += bulk_len(a);
            BorrowedFrame::BulkString(a)
        })
        .collect();
    len += array_header_len(frames.len());
    let start = out.len();
    out.resize(start + len, 0);
    // The room is exactly the frame's length, so encoding cannot run short of it.
    let written = encode_borrowed(&mut out[start..], &BorrowedFrame::Array(&frames), false)
        .expect("room for the command was reserved");
    debug_assert_eq!(written, len);
    out.truncate(start + written);
}
