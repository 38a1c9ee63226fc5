//! Where a reply ends: a resumable scan of RESP framing, ahead of parsing.
//!
//! [`Scanner::scan`] walks the headers of a reply as far as its bytes go and remembers where it
//! stopped, so bytes arriving in many reads are each looked at about once. It only frames: it
//! follows type bytes, lines and announced lengths and counts, and checks [`Limits`] against what
//! is announced, so a reply that would pass a limit is refused before its bytes arrive. What the
//! lines say (integers, doubles, booleans) is checked by `redis-protocol` once the reply is whole.

use super::{Limits, RespError};

/// Deepest nesting of aggregates accepted. Redis's deepest replies (`XREAD`: reply, stream,
/// entries, entry, fields) are five levels; parsing recurses per level, so the bound also keeps
/// the stack of a hostile or broken peer's reply small.
pub const MAX_DEPTH: usize = 32;

/// The smallest encoding of an element (`_\r\n`, `:0` is 4): what a count announces at least.
const MIN_ELEMENT_LEN: usize = 3;

/// What [`Scanner::scan`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The reply is complete and is this many bytes long.
    Complete(usize),
    /// At least this many more bytes are needed.
    NeedMore(usize),
}

#[derive(Clone, Copy, Debug)]
struct Open {
    /// Elements still to come.
    remaining: usize,
    /// An attribute (`|`): when it is complete the frame it describes is still to come.
    attribute: bool,
}

/// The scan of one reply, resumable across reads. [`Scanner::reset`] starts the next reply.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Offset of the next element's type byte, from the reply's start.
    pos: usize,
    /// Where to resume looking for the CRLF of the header line at `pos`.
    line_from: usize,
    open: Vec<Open>,
    /// Elements announced so far, the reply itself included.
    elements: usize,
}

impl Scanner {
    /// A scanner at the start of a reply.
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Forgets the reply scanned so far; the next byte scanned starts a reply.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.line_from = 0;
        self.open.clear();
        self.elements = 0;
    }

    /// Scans `buf`, the bytes of the reply so far (from its first byte on; bytes past its end
    /// are allowed). `resp3` admits RESP3's types. Call again with the same bytes plus more after
    /// [`Scan::NeedMore`]; after [`Scan::Complete`] call [`Scanner::reset`] before the next reply.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits, resp3: bool) -> Result<Scan, RespError> {
        let max = limits.max_reply_len;
        loop {
            if self.elements == 0 {
                self.count_elements(1, limits)?;
            }
            let Some(&kind) = buf.get(self.pos) else { return Ok(Scan::NeedMore(1)) };
            let from = self.line_from.max(self.pos + 1);
            let Some(cr) = find_crlf(buf, from) else {
                if buf.len() > max {
                    return Err(RespError::ReplyTooLarge { max });
                }
                // A CR at the very end may be the first half of the CRLF.
                self.line_from = buf.len().saturating_sub(1).max(self.pos + 1);
                return Ok(Scan::NeedMore(if buf.last() == Some(&b'\r') { 1 } else { 2 }));
            };
            let next = cr + 2;
            if next > max {
                return Err(RespError::ReplyTooLarge { max });
            }
            let line = &buf[self.pos + 1..cr];
            let complete = match kind {
                b'+' | b'-' | b':' => self.scalar(next),
                b'_' | b',' | b'#' | b'(' if resp3 => self.scalar(next),
                b'$' | b'!' | b'=' if kind == b'$' || resp3 => match length(line, kind == b'$' && !resp3)? {
                    None => self.scalar(next),
                    Some(len) => {
                        let end = next.checked_add(len).and_then(|e| e.checked_add(2)).filter(|&e| e <= max);
                        let Some(end) = end else { return Err(RespError::ReplyTooLarge { max }) };
                        if buf.len() < end {
                            self.line_from = self.pos + 1;
                            return Ok(Scan::NeedMore(end - buf.len()));
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(RespError::MissingCrlf);
                        }
                        self.scalar(end)
                    }
                },
                b'*' | b'%' | b'~' | b'>' | b'|' if kind == b'*' || resp3 => {
                    match length(line, kind == b'*' && !resp3)? {
                        None => self.scalar(next),
                        Some(count) => {
                            let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                            let count = count.checked_mul(per).ok_or(RespError::ReplyTooLarge { max })?;
                            self.aggregate(next, count, kind == b'|', limits)?
                        }
                    }
                }
                _ => return Err(RespError::InvalidType(kind)),
            };
            if complete {
                return Ok(Scan::Complete(self.pos));
            }
        }
    }

    fn count_elements(&mut self, n: usize, limits: &Limits) -> Result<(), RespError> {
        self.elements = self.elements.saturating_add(n);
        if self.elements > limits.max_elements {
            return Err(RespError::TooManyElements { max: limits.max_elements });
        }
        Ok(())
    }

    /// An element without children ends at `end`. True when that completes the reply.
    fn scalar(&mut self, end: usize) -> bool {
        self.pos = end;
        self.line_from = end;
        self.element_done()
    }

    fn aggregate(&mut self, next: usize, count: usize, attribute: bool, limits: &Limits) -> Result<bool, RespError> {
        let max = limits.max_reply_len;
        if count.checked_mul(MIN_ELEMENT_LEN).and_then(|n| n.checked_add(next)).map_or(true, |end| end > max) {
            return Err(RespError::ReplyTooLarge { max });
        }
        self.count_elements(count, limits)?;
        if count == 0 {
            // An empty attribute describes the frame that follows; an empty aggregate is whole.
            self.pos = next;
            self.line_from = next;
            return Ok(!attribute && self.element_done());
        }
        if self.open.len() >= MAX_DEPTH {
            return Err(RespError::TooDeep);
        }
        self.open.push(Open { remaining: count, attribute });
        self.pos = next;
        self.line_from = next;
        Ok(false)
    }

    /// One element is complete: count it against the aggregates it closes. True when the reply is.
    fn element_done(&mut self) -> bool {
        while let Some(top) = self.open.last_mut() {
            top.remaining -= 1;
            if top.remaining > 0 {
                return false;
            }
            let attribute = top.attribute;
            self.open.pop();
            if attribute {
                return false;
            }
        }
        true
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match buf[i + 1..].iter().position(|&b| b == b'\n') {
            None => return None,
            Some(p) => {
                let lf = i + 1 + p;
                if buf[lf - 1] == b'\r' {
                    return Some(lf - 1);
                }
                i = lf;
            }
        }
    }
    None
}

/// The length or count of a header line: `None` for the RESP2 null (`-1`, when `null_allowed`).
fn length(line: &[u8], null_allowed: bool) -> Result<Option<usize>, RespError> {
    match line {
        b"?" => Err(RespError::Streamed),
        b"-1" if null_allowed => Ok(None),
        _ if line.is_empty() || line.len() > 18 || !line.iter().all(u8::is_ascii_digit) => Err(RespError::InvalidLength),
        _ => Ok(Some(line.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))),
    }
}
