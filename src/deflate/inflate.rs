//! Inflating received messages, bounded by the caller's message limit.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

use super::{decoder, InflateError, Params, TAIL};

/// Output is produced in pieces of at most this size, each checked against the limit, so
/// neither memory nor CPU goes past the limit by more than one piece's work.
const CHUNK: usize = 16 << 10;

/// Final frames' payloads up to this size are inflated with the tail in one call.
const SMALL: usize = 256;

/// A message without context to keep, whole in one frame of up to this many bytes, is inflated by
/// [`decoder`] in one pass: it builds a dynamic block's tables for the message's size where
/// zlib-rs builds them for a stream's. Past a few KiB the tables no longer weigh, and zlib-rs
/// decodes the symbols as fast or faster (BENCHMARKS.md: 16 KB of JSON, 2.2 KB at level 6, 0.88×
/// zlib-rs's instructions; 3.4 KB at level 1, 1.03×; 58 KB, 7.3 and 11.4 KB: 0.99× and 1.06×).
const ONE_PASS: usize = 4 << 10;

thread_local! {
    /// Inflate states between messages of connections without client context takeover, one per
    /// window size, reset: a message takes one and gives it back when it ends, so such messages
    /// do not each allocate and set up a state (~47 KiB), and idle connections hold none. An nginx
    /// worker is one thread: this is one set per worker.
    static SPARE: RefCell<Vec<(u8, Box<Decompress>)>> = const { RefCell::new(Vec::new()) };
}

/// A reset state for `window_bits`: a spare one, or a new one.
fn take_state(window_bits: u8) -> Box<Decompress> {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let i = s.iter().position(|(w, _)| *w == window_bits)?;
        Some(s.swap_remove(i).1)
    });
    spare.unwrap_or_else(|| Box::new(Decompress::new_with_window_bits(false, window_bits)))
}

/// Gives a state back, reset, for the next message of any connection with this window (one
/// kept per window size: a worker's messages are inflated one at a time).
fn give_back(window_bits: u8, mut state: Box<Decompress>) {
    state.reset(false);
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if !s.iter().any(|(w, _)| *w == window_bits) {
            s.push((window_bits, state));
        }
    });
}

/// Inflates a connection's compressed messages (RFC 7692 §7.2.2): feed [`Inflater::inflate`] the
/// payload of each frame of a message whose first frame had RSV1, `fin` on the last.
///
/// With client context takeover the state (a window of `2^client_max_window_bits` bytes and
/// zlib's tables) lives as long as the connection; without it, it goes back to the worker's
/// spare states at the end of each message and the next message takes one, so an idle
/// connection holds nothing.
#[derive(Debug)]
pub struct Inflater {
    window_bits: u8,
    context_takeover: bool,
    state: Option<Box<Decompress>>,
    /// Bytes inflated of the current message.
    produced: usize,
    /// Payload bytes received of the current message.
    received: usize,
    /// The current message's stream had a final block (BFINAL): nothing more is inflated.
    ended: bool,
    failed: Option<InflateError>,
}

impl Inflater {
    /// An inflater for the client's side of `params`. A window of 8 bits is inflated with 9:
    /// a larger window reads any stream a smaller one made.
    pub fn new(params: &Params) -> Inflater {
        Inflater {
            window_bits: params.client_max_window_bits.max(9),
            context_takeover: !params.client_no_context_takeover,
            state: None,
            produced: 0,
            received: 0,
            ended: false,
            failed: None,
        }
    }

    /// True while a state is allocated (between messages only with context takeover).
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Appends the inflated bytes of one frame's `payload` to `out`; `fin` ends the message. At
    /// most `max_message_len` bytes are produced for a message, counting its earlier frames: as
    /// soon as one more would be, [`InflateError::TooBig`]. After an error every call fails:
    /// the connection is to be closed ([`InflateError::close_code`]).
    pub fn inflate(&mut self, payload: &[u8], fin: bool, out: &mut Vec<u8>, max_message_len: usize) -> Result<(), InflateError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.received += payload.len();
        // A message of no payload at all is the empty message: zlib-based senders write nothing
        // for it after another message, and the tail alone would leave the stream in the middle
        // of a block header.
        let tail = fin && self.received > 0;
        if tail && !self.context_takeover && self.received == payload.len() && payload.len() <= ONE_PASS {
            if let Some(result) = self.inflate_alone(payload, out, max_message_len) {
                return result;
            }
        }
        let result = if tail && payload.len() <= SMALL {
            // The payload and the tail in one call: for a small message the inflate state's
            // setup for a second call cost as much as its payload.
            let mut joined = [0u8; SMALL + TAIL.len()];
            joined[..payload.len()].copy_from_slice(payload);
            joined[payload.len()..payload.len() + TAIL.len()].copy_from_slice(&TAIL);
            self.run(&joined[..payload.len() + TAIL.len()], out, max_message_len)
        } else {
            self.run(payload, out, max_message_len).and_then(|()| {
                if tail && !self.ended {
                    self.run(&TAIL, out, max_message_len)
                } else {
                    Ok(())
                }
            })
        };
        match result {
            Err(e) => {
                self.failed = Some(e);
                self.state = None;
                Err(e)
            }
            Ok(()) => {
                if fin {
                    self.end_message();
                }
                Ok(())
            }
        }
    }

    /// A whole message without context (its only frame), by [`decoder`]; `None` (and `out` as it
    /// was) for a stream that needs more than its bytes, which is left to zlib-rs: it takes such a
    /// stream as it does a message's first frames, inflating what there is. (Such a stream, which
    /// no sender makes, costs two passes within the limit.) Fragmented messages stay with zlib-rs,
    /// which inflates each frame as it comes: buffering them for one pass would hold a message's
    /// compressed frames per connection.
    fn inflate_alone(&mut self, payload: &[u8], out: &mut Vec<u8>, max: usize) -> Option<Result<(), InflateError>> {
        let start = out.len();
        let result = match decoder::inflate_alone(payload, &TAIL, self.window_bits, out, max) {
            Ok(()) => Ok(()),
            Err(decoder::Error::Corrupt) => Err(InflateError::Corrupt),
            Err(decoder::Error::TooBig) => Err(InflateError::TooBig { max }),
            Err(decoder::Error::Truncated) => {
                out.truncate(start);
                return None;
            }
        };
        match result {
            Ok(()) => self.end_message(),
            Err(e) => self.failed = Some(e),
        }
        Some(result)
    }

    fn end_message(&mut self) {
        self.produced = 0;
        self.received = 0;
        if !self.context_takeover {
            if let Some(state) = self.state.take() {
                give_back(self.window_bits, state);
            }
        } else if self.ended {
            // A final block ended the stream; the next message starts a new one. A client that
            // kept its window across it would refer back past this reset, and fail as corrupt.
            if let Some(s) = self.state.as_mut() {
                s.reset(false);
            }
        }
        self.ended = false;
    }

    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        let window_bits = self.window_bits;
        let state = self.state.get_or_insert_with(|| take_state(window_bits));
        loop {
            if self.ended {
                // After a final block (BFINAL) the stream is over: what follows, the appended
                // tail or a sender's padding (RFC 7692 §7.2.3.4 shows one), is not inflated.
                return Ok(());
            }
            let room = max - self.produced;
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let (status, want) = if room == 0 {
                // At the limit: one more byte of output, were there any, is too many.
                let mut probe = [0u8; 1];
                let status = state.decompress(input, &mut probe, FlushDecompress::Sync).map_err(|_| InflateError::Corrupt)?;
                if state.total_out() > out_before {
                    return Err(InflateError::TooBig { max });
                }
                (status, 1)
            } else {
                let want = room.min(CHUNK);
                let at = out.len();
                reserve_within(out, want, at + room);
                // Into the spare capacity as it is: zeroing a piece first cost as much as
                // inflating a 1 KiB message into it.
                let status = state.decompress_uninit(input, &mut out.spare_capacity_mut()[..want], FlushDecompress::Sync);
                let written = (state.total_out() - out_before) as usize;
                debug_assert!(written <= want);
                // SAFETY: `written` (what total_out counts, at most the `want` bytes of room it
                // was given) bytes of the spare capacity from `at` on are the ones the inflate
                // state has just written, so they are initialised.
                unsafe { out.set_len(at + written) };
                (status.map_err(|_| InflateError::Corrupt)?, want)
            };
            let consumed = (state.total_in() - in_before) as usize;
            let written = (state.total_out() - out_before) as usize;
            self.produced += written;
            input = &input[consumed..];
            match status {
                Status::StreamEnd => self.ended = true,
                // Output room left over with all input taken: nothing is pending.
                _ if input.is_empty() && written < want => return Ok(()),
                _ if consumed == 0 && written == 0 => {
                    return if input.is_empty() { Ok(()) } else { Err(InflateError::Corrupt) };
                }
                _ => {}
            }
        }
    }
}

/// Makes room for `want` more bytes in `out`, growing it geometrically as `Vec` does but never
/// past `cap` bytes (the message limit, from where the message started): memory stays within
/// the limit, not twice it.
fn reserve_within(out: &mut Vec<u8>, want: usize, cap: usize) {
    let need = out.len() + want;
    if need > out.capacity() {
        let target = (out.capacity() * 2).clamp(need, cap.max(need));
        out.reserve_exact(target - out.len());
    }
}
