//! A worker's counters of what its sessions see, and their Prometheus text exposition.
//!
//! The figures are one flat array of `u64` slots ([`Figures`]), laid out by the constants of
//! [`slot`]: a sample is an add to a slot, a snapshot is a copy of the array, and the figures of
//! several workers are summed slot by slot (high-water marks take the maximum). The worker's own
//! array is [`WORKER`], process-global because an nginx worker is one process with one thread
//! running Lua. It is written with a relaxed load and store, not an atomic read-modify-write:
//! exact where one thread writes (a worker), never undefined behaviour elsewhere (two threads
//! adding at once may lose an add, as in the crate's own tests, which use a [`Metrics`] of their
//! own). Counters wrap at 2^64 ([`u64::wrapping_add`]); Prometheus takes a counter that goes down
//! as a reset.
//!
//! Built without the `metrics` feature, every sample is a no-op and the figures stay 0 (only to
//! measure what the samples cost).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::frame::ProtocolError;
use crate::schema::Schema;

/// Whether this build samples at all (the `metrics` feature, on by default).
pub const ENABLED: bool = cfg!(feature = "metrics");

/// Command field numbers below this have a slot of their own; larger ones share slot 0 ("other").
pub const COMMAND_SLOTS: usize = 64;

/// Upper bounds of the handler-time buckets, in microseconds (the last bucket, `+Inf`, is implied).
pub const HANDLER_BUCKETS_US: [u64; 18] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];
/// Slots of one command's histogram: the buckets, `+Inf`, then the sum in microseconds.
const HISTOGRAM_LEN: usize = HANDLER_BUCKETS_US.len() + 2;

/// Why a connection ended, as Lua tells [`Metrics::ended`] (the `reason` label).
pub mod end_reason {
    /// The peer sent a close frame (its code is counted too).
    pub const PEER_CLOSE: usize = 0;
    /// The peer broke the protocol (the kind is in `protocol_errors`).
    pub const PROTOCOL_ERROR: usize = 1;
    /// The peer stalled in the middle of a frame past the read timeout.
    pub const TIMEOUT: usize = 2;
    /// The socket failed or the peer went away without a close frame.
    pub const RECEIVE_ERROR: usize = 3;
    /// A write failed.
    pub const SEND_ERROR: usize = 4;
    /// The worker is exiting (reload, shutdown): closed with 1001.
    pub const WORKER_EXITING: usize = 5;
    /// A push found the queue full with `on_full = "close"`: closed with 1008.
    pub const QUEUE_FULL: usize = 6;
    /// An internal error of the library.
    pub const INTERNAL: usize = 7;
    /// The label values, by reason.
    pub const NAMES: [&str; 8] =
        ["peer_close", "protocol_error", "timeout", "receive_error", "send_error", "worker_exiting", "queue_full", "internal"];
}

/// Kinds of error replies (the `kind` label).
pub mod error_kind {
    /// The handler returned `nil, err` (or nothing, or not a table).
    pub const HANDLER_ERROR: usize = 0;
    /// The handler raised a Lua error.
    pub const HANDLER_RAISED: usize = 1;
    /// No handler is registered for the command.
    pub const UNKNOWN_COMMAND: usize = 2;
    /// The request was not a `PubSubReq` (`wrong command`).
    pub const UNDECODABLE: usize = 3;
    /// The handler's reply did not encode.
    pub const ENCODE_FAILURE: usize = 4;
    /// The label values, by kind.
    pub const NAMES: [&str; 5] = ["handler_error", "handler_raised", "unknown_command", "undecodable", "encode_failure"];
}

/// Kinds of WebSocket messages received and sent (the `type` label).
pub mod message_type {
    /// A binary message (a request), however many frames it came in.
    pub const BINARY: usize = 0;
    /// A text message.
    pub const TEXT: usize = 1;
    /// A ping control frame.
    pub const PING: usize = 2;
    /// A pong control frame.
    pub const PONG: usize = 3;
    /// A close frame.
    pub const CLOSE: usize = 4;
    /// The label values, by type.
    pub const NAMES: [&str; 5] = ["binary", "text", "ping", "pong", "close"];
}

/// Label values of `protocol_errors`, by [`protocol_error_kind`].
pub const PROTOCOL_ERROR_NAMES: [&str; 20] = [
    "reserved_bits",
    "reserved_data_opcode",
    "reserved_control_opcode",
    "unmasked",
    "control_too_long",
    "fragmented_control",
    "length_top_bit",
    "payload_too_big",
    "message_too_big",
    "unexpected_continuation",
    "unfinished_message",
    "close_one_byte",
    "bad_close_code",
    "invalid_close_reason",
    "invalid_text",
    "compressed_control",
    "compressed_continuation",
    "inflated_too_big",
    "bad_compressed_data",
    "other",
];

/// Close codes a peer sends that have a label value of their own (`code`); others are "other".
const CLOSE_CODES: std::ops::RangeInclusive<u16> = 1000..=1015;
const CLOSE_CODE_SLOTS: usize = 17;

/// The slot of each figure in [`Figures`].
pub mod slot {
    use super::*;
    /// Connections made (`pubsub.new` succeeded).
    pub const ACCEPTED: usize = 0;
    /// Bytes read from sockets.
    pub const BYTES_IN: usize = 1;
    /// Bytes written to sockets.
    pub const BYTES_OUT: usize = 2;
    /// Replies queued (error replies and replies made in Rust included).
    pub const REPLIES: usize = 3;
    /// Pushes wholly written.
    pub const PUSHES_SENT: usize = 4;
    /// Pushes refused: the queue was full.
    pub const PUSHES_FULL: usize = 5;
    /// Pushes refused: the connection had ended.
    pub const PUSHES_CLOSED: usize = 6;
    /// The most bytes one connection's queue held (a maximum, not a counter).
    pub const QUEUE_HIGH_WATER: usize = 7;
    /// Pongs sent (answers to pings).
    pub const PONGS_OUT: usize = 8;
    /// WebSocket frames received whole (a fragmented message's each, control frames too).
    pub const FRAMES_IN: usize = 9;
    /// WebSocket frames queued to send (each fragment, control frames too).
    pub const FRAMES_OUT: usize = 10;
    /// Writes made without the connection's writer thread, by `send` or the reader (see src/ffi/socket.rs).
    pub const DIRECT_WRITES: usize = 11;
    /// Messages received, by [`message_type`].
    pub const RECEIVED: usize = 12;
    /// Connections ended, by [`end_reason`].
    pub const ENDED: usize = RECEIVED + message_type::NAMES.len();
    /// Close codes received, 1000-1015 then "other".
    pub const CLOSE_CODES: usize = ENDED + end_reason::NAMES.len();
    /// Protocol errors, by [`PROTOCOL_ERROR_NAMES`].
    pub const PROTOCOL_ERRORS: usize = CLOSE_CODES + super::CLOSE_CODE_SLOTS;
    /// Error replies, by [`error_kind`].
    pub const ERROR_REPLIES: usize = PROTOCOL_ERRORS + PROTOCOL_ERROR_NAMES.len();
    /// Commands received, by field number (0: numbers from [`COMMAND_SLOTS`] on).
    pub const COMMANDS: usize = ERROR_REPLIES + error_kind::NAMES.len();
    /// Handler-time histograms, by command slot.
    pub const HANDLER: usize = COMMANDS + COMMAND_SLOTS;
    /// The number of slots.
    pub const COUNT: usize = HANDLER + COMMAND_SLOTS * HISTOGRAM_LEN;
}

/// Tags a snapshot's layout: snapshots of another layout (another build) are not summed.
const LAYOUT: u64 = 0x7075_6273_0000_0000 | slot::COUNT as u64;

/// The slot of the command with field number `number`.
fn command_slot(number: u32) -> usize {
    let n = number as usize;
    if n < COMMAND_SLOTS {
        n
    } else {
        0
    }
}

/// The index of `e` in [`PROTOCOL_ERROR_NAMES`].
pub fn protocol_error_kind(e: &ProtocolError) -> usize {
    #[allow(unreachable_patterns)]
    match e {
        ProtocolError::ReservedBits => 0,
        ProtocolError::ReservedDataOpcode(_) => 1,
        ProtocolError::ReservedControlOpcode(_) => 2,
        ProtocolError::Unmasked => 3,
        ProtocolError::ControlTooLong => 4,
        ProtocolError::FragmentedControl => 5,
        ProtocolError::LengthTopBit => 6,
        ProtocolError::PayloadTooBig { .. } => 7,
        ProtocolError::MessageTooBig { .. } => 8,
        ProtocolError::UnexpectedContinuation => 9,
        ProtocolError::UnfinishedMessage => 10,
        ProtocolError::CloseOneByte => 11,
        ProtocolError::BadCloseCode(_) => 12,
        ProtocolError::InvalidCloseReason => 13,
        ProtocolError::InvalidText => 14,
        ProtocolError::CompressedControl => 15,
        ProtocolError::CompressedContinuation => 16,
        ProtocolError::InflatedTooBig { .. } => 17,
        ProtocolError::BadCompressedData => 18,
        _ => 19,
    }
}

/// Microseconds on the monotonic clock (0, and no clock read, in a build without the feature).
#[inline]
pub fn now_us() -> u64 {
    if ENABLED {
        clock::monotonic_us()
    } else {
        0
    }
}

/// `clock_gettime(CLOCK_MONOTONIC)` called directly: the vDSO's few instructions, without the
/// checks of `std::time::Instant` arithmetic.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod clock {
    /// `struct timespec` of 64-bit Linux.
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }

    const CLOCK_MONOTONIC: i32 = 1;

    pub fn monotonic_us() -> u64 {
        let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: libc's clock_gettime writes one timespec of this layout (64-bit Linux) to a
        // valid pointer; CLOCK_MONOTONIC always exists there, so it cannot fail.
        unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64).wrapping_mul(1_000_000).wrapping_add(ts.tv_nsec as u64 / 1_000)
    }
}

/// Elsewhere: `std::time::Instant`, from the first reading.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
mod clock {
    pub fn monotonic_us() -> u64 {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        EPOCH.get_or_init(std::time::Instant::now).elapsed().as_micros() as u64
    }
}

/// The live figures of one worker.
#[derive(Debug)]
pub struct Metrics {
    slots: [AtomicU64; slot::COUNT],
}

/// The figures of this worker: what the sessions sample into.
pub static WORKER: Metrics = Metrics::new();

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All figures 0.
    pub const fn new() -> Metrics {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        Metrics { slots: [ZERO; slot::COUNT] }
    }

    /// Adds `n` to slot `i` (wrapping). A load and a store: see the module's words on threads.
    #[inline(always)]
    fn add(&self, i: usize, n: u64) {
        if ENABLED {
            let s = &self.slots[i];
            s.store(s.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }

    /// A connection was made.
    pub fn accepted(&self) {
        self.add(slot::ACCEPTED, 1);
    }

    /// A connection ended for `reason` ([`end_reason`]); `code` is the peer's close code for
    /// [`end_reason::PEER_CLOSE`].
    pub fn ended(&self, reason: usize, code: u16) {
        if reason < end_reason::NAMES.len() {
            self.add(slot::ENDED + reason, 1);
        }
        if reason == end_reason::PEER_CLOSE {
            let i = if CLOSE_CODES.contains(&code) { usize::from(code - CLOSE_CODES.start()) } else { CLOSE_CODE_SLOTS - 1 };
            self.add(slot::CLOSE_CODES + i, 1);
        }
    }

    /// `n` bytes were read.
    #[inline(always)]
    pub fn bytes_in(&self, n: usize) {
        self.add(slot::BYTES_IN, n as u64);
    }

    /// `n` bytes were written.
    #[inline(always)]
    pub fn bytes_out(&self, n: usize) {
        self.add(slot::BYTES_OUT, n as u64);
    }

    /// A whole frame was received.
    #[inline(always)]
    pub fn frame_in(&self) {
        self.add(slot::FRAMES_IN, 1);
    }

    /// A frame was queued to send.
    #[inline(always)]
    pub fn frame_out(&self) {
        self.add(slot::FRAMES_OUT, 1);
    }

    /// A message of type `t` ([`message_type`]) was received.
    #[inline(always)]
    pub fn received(&self, t: usize) {
        self.add(slot::RECEIVED + t, 1);
    }

    /// A ping was answered.
    #[inline(always)]
    pub fn pong(&self) {
        self.add(slot::PONGS_OUT, 1);
    }

    /// A command with field number `number` was received.
    #[inline(always)]
    pub fn command(&self, number: u32) {
        self.add(slot::COMMANDS + command_slot(number), 1);
    }

    /// A reply was queued.
    #[inline(always)]
    pub fn reply(&self) {
        self.add(slot::REPLIES, 1);
    }

    /// An error reply of `kind` ([`error_kind`]) was queued (count it as a reply too).
    pub fn error_reply(&self, kind: usize) {
        if kind < error_kind::NAMES.len() {
            self.add(slot::ERROR_REPLIES + kind, 1);
        }
    }

    /// The peer broke the protocol.
    pub fn protocol_error(&self, e: &ProtocolError) {
        self.add(slot::PROTOCOL_ERRORS + protocol_error_kind(e), 1);
    }

    /// A write was made without the writer thread.
    #[inline(always)]
    pub fn direct_write(&self) {
        self.add(slot::DIRECT_WRITES, 1);
    }

    /// `n` pushes were wholly written.
    #[inline(always)]
    pub fn pushes_sent(&self, n: usize) {
        self.add(slot::PUSHES_SENT, n as u64);
    }

    /// A push was refused: the queue was full (`full`) or the connection had ended.
    pub fn push_refused(&self, full: bool) {
        self.add(if full { slot::PUSHES_FULL } else { slot::PUSHES_CLOSED }, 1);
    }

    /// A queue holds `pending` bytes: raises the high-water mark.
    #[inline(always)]
    pub fn queue_depth(&self, pending: usize) {
        if ENABLED {
            let s = &self.slots[slot::QUEUE_HIGH_WATER];
            if pending as u64 > s.load(Relaxed) {
                s.store(pending as u64, Relaxed);
            }
        }
    }

    /// The command with field number `number` was out to its handler for `us` microseconds.
    pub fn handler_time(&self, number: u32, us: u64) {
        let base = slot::HANDLER + command_slot(number) * HISTOGRAM_LEN;
        let bucket = HANDLER_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(HANDLER_BUCKETS_US.len());
        self.add(base + bucket, 1);
        self.add(base + HISTOGRAM_LEN - 1, us);
    }

    /// Sets slot `i` (tests of overflow and of sums).
    pub fn set(&self, i: usize, v: u64) {
        if let Some(s) = self.slots.get(i) {
            s.store(v, Relaxed);
        }
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> Figures {
        Figures(self.slots.iter().map(|s| s.load(Relaxed)).collect())
    }
}

/// A copy of the figures of one worker, or the sum of several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures(Vec<u64>);

impl Default for Figures {
    fn default() -> Self {
        Figures(vec![0; slot::COUNT])
    }
}

impl Figures {
    /// The value of slot `i`.
    pub fn get(&self, i: usize) -> u64 {
        self.0[i]
    }

    /// Open connections: accepted less ended (both wrap alike, so the difference holds).
    pub fn open(&self) -> u64 {
        let ended = (0..end_reason::NAMES.len()).fold(0u64, |a, r| a.wrapping_add(self.0[slot::ENDED + r]));
        self.0[slot::ACCEPTED].wrapping_sub(ended)
    }

    /// Adds another worker's figures: counters summed (wrapping), high-water marks the larger.
    pub fn merge(&mut self, other: &Figures) {
        for (i, (a, b)) in self.0.iter_mut().zip(&other.0).enumerate() {
            *a = if i == slot::QUEUE_HIGH_WATER { (*a).max(*b) } else { a.wrapping_add(*b) };
        }
    }

    /// The figures as bytes (a layout tag, then every slot, little-endian), for a shared dict.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 * (slot::COUNT + 1));
        b.extend_from_slice(&LAYOUT.to_le_bytes());
        for v in &self.0 {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Figures from [`Figures::to_bytes`]; `None` for bytes of another length or layout.
    pub fn from_bytes(b: &[u8]) -> Option<Figures> {
        if b.len() != 8 * (slot::COUNT + 1) {
            return None;
        }
        let mut words = b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        if words.next() != Some(LAYOUT) {
            return None;
        }
        Some(Figures(words.collect()))
    }

    /// `(label value, slot)` of every command: the schema's commands by name, then slots counted
    /// under no name of it (`field_<number>`, and `other` for numbers past [`COMMAND_SLOTS`]).
    fn commands(&self, schema: &Schema) -> Vec<(String, usize)> {
        let mut named = [false; COMMAND_SLOTS];
        let mut out = Vec::new();
        for f in schema.commands() {
            let s = command_slot(f.number);
            if s != 0 && !named[s] {
                named[s] = true;
                out.push((schema.field_name(f.id).to_string(), s));
            }
        }
        let hist_count = |s: usize| (0..=HANDLER_BUCKETS_US.len()).map(|b| self.0[slot::HANDLER + s * HISTOGRAM_LEN + b]).sum::<u64>();
        for (s, seen) in named.iter().enumerate() {
            if !seen && (self.0[slot::COMMANDS + s] != 0 || hist_count(s) != 0) {
                out.push((if s == 0 { "other".to_string() } else { format!("field_{s}") }, s));
            }
        }
        out
    }

    /// The Prometheus text exposition (format 0.0.4) of these figures; command names from `schema`.
    /// `workers` is how many workers' figures they hold.
    pub fn prometheus(&self, schema: &Schema, workers: usize) -> String {
        let mut s = String::with_capacity(8192);
        let head = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = write!(s, "# HELP apisix_pubsub_{name} {help}\n# TYPE apisix_pubsub_{name} {kind}\n");
        };
        let one = |s: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            head(s, name, kind, help);
            let _ = writeln!(s, "apisix_pubsub_{name} {v}");
        };
        let labelled = |s: &mut String, name: &str, help: &str, label: &str, names: &[&str], base: usize| {
            head(s, name, "counter", help);
            for (i, n) in names.iter().enumerate() {
                let _ = writeln!(s, "apisix_pubsub_{name}{{{label}=\"{n}\"}} {}", self.0[base + i]);
            }
        };
        one(&mut s, "workers_reporting", "gauge", "Workers whose figures are in this exposition.", workers as u64);
        one(&mut s, "connections_accepted_total", "counter", "Pubsub connections made (handshake done).", self.0[slot::ACCEPTED]);
        one(&mut s, "connections_open", "gauge", "Pubsub connections open now.", self.open());
        labelled(&mut s, "connections_ended_total", "Pubsub connections ended, by reason.", "reason", &end_reason::NAMES, slot::ENDED);
        head(&mut s, "peer_close_codes_total", "counter", "Close frames received, by status code.");
        for i in 0..CLOSE_CODE_SLOTS {
            let code = if i + 1 == CLOSE_CODE_SLOTS { "other".to_string() } else { (CLOSE_CODES.start() + i as u16).to_string() };
            let _ = writeln!(s, "apisix_pubsub_peer_close_codes_total{{code=\"{code}\"}} {}", self.0[slot::CLOSE_CODES + i]);
        }
        labelled(&mut s, "protocol_errors_total", "Connections failed for breaking RFC 6455 or the limits, by kind.", "kind", &PROTOCOL_ERROR_NAMES, slot::PROTOCOL_ERRORS);
        let commands = self.commands(schema);
        head(&mut s, "commands_total", "counter", "Commands received, by command (pings answered in the library included).");
        for (name, i) in &commands {
            let _ = writeln!(s, "apisix_pubsub_commands_total{{command=\"{name}\"}} {}", self.0[slot::COMMANDS + i]);
        }
        one(&mut s, "replies_total", "counter", "Replies queued, error replies included.", self.0[slot::REPLIES]);
        labelled(&mut s, "error_replies_total", "Error replies queued, by kind.", "kind", &error_kind::NAMES, slot::ERROR_REPLIES);
        one(&mut s, "pushes_sent_total", "counter", "Pushes wholly written to the socket.", self.0[slot::PUSHES_SENT]);
        labelled(&mut s, "pushes_refused_total", "Pushes refused, by reason.", "reason", &["queue_full", "closed"], slot::PUSHES_FULL);
        labelled(&mut s, "messages_received_total", "WebSocket messages received, by type (a fragmented message counts once).", "type", &message_type::NAMES, slot::RECEIVED);
        one(&mut s, "pongs_sent_total", "counter", "Pong frames sent in answer to pings.", self.0[slot::PONGS_OUT]);
        one(&mut s, "frames_received_total", "counter", "WebSocket frames received (each fragment and control frame).", self.0[slot::FRAMES_IN]);
        one(&mut s, "frames_sent_total", "counter", "WebSocket frames queued to send (each fragment and control frame).", self.0[slot::FRAMES_OUT]);
        one(&mut s, "direct_writes_total", "counter", "Writes made without the connection's writer thread, by send() or by the reader after a read.", self.0[slot::DIRECT_WRITES]);
        one(&mut s, "received_bytes_total", "counter", "Bytes read from pubsub sockets (after the handshake).", self.0[slot::BYTES_IN]);
        one(&mut s, "sent_bytes_total", "counter", "Bytes written to pubsub sockets.", self.0[slot::BYTES_OUT]);
        one(&mut s, "queue_high_water_bytes", "gauge", "The most bytes one connection's output queue held (the maximum over workers).", self.0[slot::QUEUE_HIGH_WATER]);
        head(&mut s, "handler_seconds", "histogram", "Time Lua handlers took, by command (pings answered in the library not included).");
        for (name, i) in &commands {
            let base = slot::HANDLER + i * HISTOGRAM_LEN;
            let mut cumulative = 0u64;
            for (b, bound) in HANDLER_BUCKETS_US.iter().enumerate() {
                cumulative = cumulative.wrapping_add(self.0[base + b]);
                let _ = writeln!(s, "apisix_pubsub_handler_seconds_bucket{{command=\"{name}\",le=\"{}\"}} {cumulative}", seconds(*bound));
            }
            cumulative = cumulative.wrapping_add(self.0[base + HANDLER_BUCKETS_US.len()]);
            let _ = writeln!(s, "apisix_pubsub_handler_seconds_bucket{{command=\"{name}\",le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(s, "apisix_pubsub_handler_seconds_sum{{command=\"{name}\"}} {}", seconds(self.0[base + HISTOGRAM_LEN - 1]));
            let _ = writeln!(s, "apisix_pubsub_handler_seconds_count{{command=\"{name}\"}} {cumulative}");
        }
        s
    }

    /// A Lua chunk returning these figures as a plain table (see `pubsub.metrics` in the README).
    pub fn lua_table(&self, schema: &Schema) -> String {
        let mut s = String::from("return {\n");
        let map = |s: &mut String, key: &str, names: &[&str], base: usize| {
            let _ = write!(s, "  {key} = {{");
            for (i, n) in names.iter().enumerate() {
                let _ = write!(s, " {n} = {},", self.0[base + i]);
            }
            s.push_str(" },\n");
        };
        for (key, i) in [
            ("connections_accepted", slot::ACCEPTED),
            ("replies", slot::REPLIES),
            ("pushes_sent", slot::PUSHES_SENT),
            ("pongs_sent", slot::PONGS_OUT),
            ("frames_received", slot::FRAMES_IN),
            ("frames_sent", slot::FRAMES_OUT),
            ("direct_writes", slot::DIRECT_WRITES),
            ("received_bytes", slot::BYTES_IN),
            ("sent_bytes", slot::BYTES_OUT),
            ("queue_high_water_bytes", slot::QUEUE_HIGH_WATER),
        ] {
            let _ = writeln!(s, "  {key} = {},", self.0[i]);
        }
        let _ = writeln!(s, "  connections_open = {},", self.open());
        map(&mut s, "connections_ended", &end_reason::NAMES, slot::ENDED);
        map(&mut s, "protocol_errors", &PROTOCOL_ERROR_NAMES, slot::PROTOCOL_ERRORS);
        map(&mut s, "error_replies", &error_kind::NAMES, slot::ERROR_REPLIES);
        map(&mut s, "pushes_refused", &["queue_full", "closed"], slot::PUSHES_FULL);
        map(&mut s, "messages_received", &message_type::NAMES, slot::RECEIVED);
        s.push_str("  peer_close_codes = {");
        for i in 0..CLOSE_CODE_SLOTS {
            let key = if i + 1 == CLOSE_CODE_SLOTS { "other".to_string() } else { format!("[{}]", CLOSE_CODES.start() + i as u16) };
            let _ = write!(s, " {key} = {},", self.0[slot::CLOSE_CODES + i]);
        }
        s.push_str(" },\n");
        let commands = self.commands(schema);
        s.push_str("  commands = {");
        for (name, i) in &commands {
            let _ = write!(s, " {name} = {},", self.0[slot::COMMANDS + i]);
        }
        s.push_str(" },\n  handler = {");
        for (name, i) in &commands {
            let base = slot::HANDLER + i * HISTOGRAM_LEN;
            let count: u64 = (0..=HANDLER_BUCKETS_US.len()).map(|b| self.0[base + b]).sum();
            let _ = write!(s, " {name} = {{ count = {count}, sum_us = {}, buckets = {{", self.0[base + HISTOGRAM_LEN - 1]);
            for b in 0..=HANDLER_BUCKETS_US.len() {
                let _ = write!(s, " {},", self.0[base + b]);
            }
            s.push_str(" } },");
        }
        s.push_str(" },\n}\n");
        s
    }
}

/// Microseconds as seconds, exactly (`1500` → `0.0015`).
fn seconds(us: u64) -> String {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:06}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the exposition line that starts with `series ` (exactly).
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).map(str::to_string))
    }

    #[test]
    fn slots_do_not_overlap_and_names_match_kinds() {
        let kinds = [
            ProtocolError::ReservedBits,
            ProtocolError::ReservedDataOpcode(3),
            ProtocolError::ReservedControlOpcode(11),
            ProtocolError::Unmasked,
            ProtocolError::ControlTooLong,
            ProtocolError::FragmentedControl,
            ProtocolError::LengthTopBit,
            ProtocolError::PayloadTooBig { len: 2, max: 1 },
            ProtocolError::MessageTooBig { len: 2, max: 1 },
            ProtocolError::UnexpectedContinuation,
            ProtocolError::UnfinishedMessage,
            ProtocolError::CloseOneByte,
            ProtocolError::BadCloseCode(5),
            ProtocolError::InvalidCloseReason,
            ProtocolError::InvalidText,
            ProtocolError::CompressedControl,
            ProtocolError::CompressedContinuation,
            ProtocolError::InflatedTooBig { max: 1 },
            ProtocolError::BadCompressedData,
        ];
        let got: Vec<usize> = kinds.iter().map(protocol_error_kind).collect();
        assert_eq!(got, (0..kinds.len()).collect::<Vec<_>>());
        assert_eq!(PROTOCOL_ERROR_NAMES.len(), kinds.len() + 1, "a name for each kind, and other");
        let bases = [slot::RECEIVED, slot::ENDED, slot::CLOSE_CODES, slot::PROTOCOL_ERRORS, slot::ERROR_REPLIES, slot::COMMANDS, slot::HANDLER, slot::COUNT];
        assert!(bases.windows(2).all(|w| w[0] < w[1]) && slot::PONGS_OUT < slot::FRAMES_IN && slot::FRAMES_OUT < slot::RECEIVED);
    }

    #[test]
    fn each_sample_moves_its_own_figure() {
        let m = Metrics::new();
        m.accepted();
        m.accepted();
        m.accepted();
        m.accepted();
        m.ended(end_reason::PEER_CLOSE, 1001);
        m.ended(end_reason::PEER_CLOSE, 4000);
        m.ended(end_reason::TIMEOUT, 0);
        m.command(32);
        m.command(32);
        m.command(1000);
        m.reply();
        m.error_reply(error_kind::UNKNOWN_COMMAND);
        m.bytes_in(10);
        m.bytes_out(7);
        m.pushes_sent(3);
        m.push_refused(true);
        m.queue_depth(500);
        m.queue_depth(100);
        m.handler_time(32, 30);
        m.handler_time(32, 20_000_000);
        let t = now_us();
        assert!(now_us() >= t, "monotonic");
        m.protocol_error(&ProtocolError::Unmasked);
        m.received(message_type::PING);
        m.frame_in();
        m.frame_out();
        m.frame_out();
        let f = m.snapshot();
        if !ENABLED {
            assert_eq!(f, Figures::default());
            return;
        }
        let text = f.prometheus(&Schema::builtin(), 1);
        for (series, want) in [
            ("apisix_pubsub_connections_accepted_total", "4"),
            ("apisix_pubsub_connections_open", "1"),
            ("apisix_pubsub_connections_ended_total{reason=\"peer_close\"}", "2"),
            ("apisix_pubsub_connections_ended_total{reason=\"timeout\"}", "1"),
            ("apisix_pubsub_peer_close_codes_total{code=\"1001\"}", "1"),
            ("apisix_pubsub_peer_close_codes_total{code=\"other\"}", "1"),
            ("apisix_pubsub_commands_total{command=\"cmd_ping\"}", "2"),
            ("apisix_pubsub_commands_total{command=\"cmd_empty\"}", "0"),
            ("apisix_pubsub_commands_total{command=\"other\"}", "1"),
            ("apisix_pubsub_error_replies_total{kind=\"unknown_command\"}", "1"),
            ("apisix_pubsub_pushes_refused_total{reason=\"queue_full\"}", "1"),
            ("apisix_pubsub_queue_high_water_bytes", "500"),
            ("apisix_pubsub_protocol_errors_total{kind=\"unmasked\"}", "1"),
            ("apisix_pubsub_messages_received_total{type=\"ping\"}", "1"),
            ("apisix_pubsub_frames_received_total", "1"),
            ("apisix_pubsub_frames_sent_total", "2"),
            ("apisix_pubsub_handler_seconds_bucket{command=\"cmd_ping\",le=\"0.000025\"}", "0"),
            ("apisix_pubsub_handler_seconds_bucket{command=\"cmd_ping\",le=\"0.00005\"}", "1"),
            ("apisix_pubsub_handler_seconds_bucket{command=\"cmd_ping\",le=\"10\"}", "1"),
            ("apisix_pubsub_handler_seconds_bucket{command=\"cmd_ping\",le=\"+Inf\"}", "2"),
            ("apisix_pubsub_handler_seconds_sum{command=\"cmd_ping\"}", "20.00003"),
            ("apisix_pubsub_handler_seconds_count{command=\"cmd_ping\"}", "2"),
        ] {
            assert_eq!(value(&text, series).as_deref(), Some(want), "{series} in\n{text}");
        }
    }

    #[test]
    fn workers_sum_counters_and_take_the_largest_high_water_mark() {
        let (a, b) = (Metrics::new(), Metrics::new());
        if !ENABLED {
            return;
        }
        a.accepted();
        a.accepted();
        b.accepted();
        b.ended(end_reason::RECEIVE_ERROR, 0);
        a.queue_depth(10);
        b.queue_depth(99);
        a.set(slot::BYTES_OUT, u64::MAX);
        b.bytes_out(5);
        let mut sum = a.snapshot();
        sum.merge(&Figures::from_bytes(&b.snapshot().to_bytes()).unwrap());
        assert_eq!(sum.get(slot::ACCEPTED), 3);
        assert_eq!(sum.open(), 2);
        assert_eq!(sum.get(slot::QUEUE_HIGH_WATER), 99);
        assert_eq!(sum.get(slot::BYTES_OUT), 4, "a sum past 2^64 wraps, as a counter does");
        assert!(Figures::from_bytes(&[0; 16]).is_none());
        let mut other_layout = sum.to_bytes();
        other_layout[0] ^= 1;
        assert!(Figures::from_bytes(&other_layout).is_none());
    }

    #[test]
    fn a_counter_wraps_to_zero_past_2_to_the_64() {
        let m = Metrics::new();
        if !ENABLED {
            return;
        }
        m.set(slot::REPLIES, u64::MAX);
        m.reply();
        assert_eq!(m.snapshot().get(slot::REPLIES), 0);
    }

    #[test]
    fn commands_are_named_by_the_schema() {
        let m = Metrics::new();
        m.command(33);
        m.command(40);
        let text = m.snapshot().prometheus(&Schema::builtin(), 1);
        let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("apisix_pubsub_commands_total{command=\"")).map(|l| l.split('"').next().unwrap()).collect();
        let mut want = vec!["cmd_empty", "cmd_ping", "cmd_kafka_fetch", "cmd_kafka_list_offset"];
        if ENABLED {
            want.push("field_40");
        }
        assert_eq!(names, want);
        let lua = m.snapshot().lua_table(&Schema::builtin());
        assert!(lua.contains("commands = { cmd_empty = 0, cmd_ping = 0, cmd_kafka_fetch = "), "{lua}");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(25), "0.000025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(0), "0");
    }
}
