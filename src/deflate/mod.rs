//! permessage-deflate (RFC 7692), without I/O: the negotiation and the data transform.
//!
//! - [`negotiate`] reads a handshake's `Sec-WebSocket-Extensions` values and picks the first offer
//!   it can accept under a server [`Config`], giving the agreed [`Params`] and the response value.
//! - [`Inflater`] inflates the frames of a received compressed message (RSV1 on its first frame),
//!   never producing more than the caller's `max_message_len`: a bomb costs at most the limit in
//!   memory and stops as soon as it would pass it.
//! - [`Deflater`] compresses a connection's messages with context takeover; [`SharedCompressor`]
//!   compresses, once, the messages of every connection that agreed to no context takeover (the
//!   server's default) with the same window and level, and hands them out as [`bytes::Bytes`] to be
//!   shared by all of them.
//!
//! A message compressed on its own (no context takeover) under 16 KiB goes through [`encoder`],
//! which costs what the message's size does: zlib's reset between messages (a 128 KiB table
//! cleared) cost more than compressing a 1 KiB message.
//!
//! A received message without context (client no context takeover, the default) that comes whole
//! in one frame of up to 4 KiB goes through [`decoder`], a DEFLATE decoder that builds a dynamic
//! block's tables for the message's size: zlib-rs's, built for a stream, cost more than the rest
//! of inflating a 1 KiB message.
//!
//! The backend otherwise is flate2's `zlib-rs`: it compresses with windows of 9 to 15 bits, which a
//! client's `server_max_window_bits` may ask for (miniz_oxide only has 15), and inflates messages
//! with context takeover, fragmented ones and those over 4 KiB; BENCHMARKS.md has the figures.
//! Checking RSV1 against the negotiation (control frames, continuation frames, no extension) is
//! the framing layer's job; this module sees payloads only.

mod compress;
mod decoder;
mod encoder;
mod inflate;
mod negotiate;
pub(crate) mod sender;

pub use compress::{Deflater, SharedCompressor, SharedKey};
pub use inflate::Inflater;
pub use sender::{with_shared, Sender};
pub use negotiate::{negotiate, parse_offers, Config, ConfigError, Offer, OfferError, Params, LARGE_MESSAGE};

/// The empty stored block a sync flush ends with, which RFC 7692 §7.2.1 has the sender remove and
/// §7.2.2 the receiver append again.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The message inflates to more than the limit; found while inflating, at the limit.
    #[error("exceeding max message len ({max}) when inflated")]
    TooBig {
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid DEFLATE stream.
    #[error("invalid compressed data")]
    Corrupt,
}

impl InflateError {
    /// The close code to fail the connection with: 1009 for too big, 1007 for corrupt data (the
    /// message's data is not consistent with its framing, as for invalid UTF-8).
    pub fn close_code(self) -> u16 {
        match self {
            InflateError::TooBig { .. } => crate::frame::close_code::TOO_BIG,
            InflateError::Corrupt => crate::frame::close_code::INVALID_DATA,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod session_tests;
