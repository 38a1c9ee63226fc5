//! A Redis protocol (RESP2 and RESP3) codec, without I/O, for the channels subsystem.
//!
//! - [`encode_command`] writes a command, given as its arguments, into an output buffer.
//! - [`ReplyDecoder`] takes bytes as they arrive from the socket, in chunks of any size, and hands
//!   back complete replies as a flat list of [`Item`]s pointing into the reply's bytes, the shape the
//!   Lua side reads through the FFI without a Lua C API call (as `message::Op` is for requests).
//! - [`xread_entries`] / [`xrange_entries`] turn an `XREAD` / `XRANGE` reply into stream entries
//!   whose ids, fields and values are spans of the reply, not copies.
//!
//! Parsing is the `redis-protocol` crate's. In front of it sits a resumable scanner of our own
//! ([`scan`]) that finds where a reply ends as its bytes arrive, so that a reply arriving in many
//! reads is scanned once, not once per read, and so that the limits ([`Limits`]: size, element
//! count, nesting) are enforced from the announced lengths before any of it is buffered or parsed.
//! A reply that passes them is handed to `redis-protocol` once, complete.

mod command;
mod reply;
pub mod scan;
mod stream;

pub use command::{encode_command, encoded_len};
pub use reply::{item, Item, Limits, Poll, Protocol, Reply, ReplyDecoder};
pub use stream::{xrange_entries, xread_entries, Span, StreamEntry};

/// Why a reply could not be decoded or read. After a decoding error the [`ReplyDecoder`] keeps
/// returning it: the byte stream has lost its framing and the connection is to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A reply announced or reached a size over [`Limits::max_reply_len`].
    #[error("redis reply larger than {max} bytes")]
    ReplyTooLarge {
        /// The limit.
        max: usize,
    },
    /// A reply announced more elements than [`Limits::max_elements`].
    #[error("redis reply with more than {max} elements")]
    TooManyElements {
        /// The limit.
        max: usize,
    },
    /// Aggregates nested deeper than [`scan::MAX_DEPTH`].
    #[error("redis reply nested deeper than {} levels", scan::MAX_DEPTH)]
    TooDeep,
    /// A byte that starts no reply type of the protocol in use.
    #[error("invalid redis reply type byte {0:#04x}")]
    InvalidType(u8),
    /// A length or count that is not a decimal number, or negative other than the RESP2 null `-1`.
    #[error("invalid length in redis reply")]
    InvalidLength,
    /// A bulk value not followed by CRLF.
    #[error("missing CRLF after a redis bulk value")]
    MissingCrlf,
    /// RESP3 streamed strings and aggregates (`$?`, `*?`): Redis does not send them.
    #[error("streamed RESP3 replies are not supported")]
    Streamed,
    /// Framing was fine but `redis-protocol` refused the content (a bad integer, double, boolean...).
    #[error("malformed redis reply")]
    Malformed,
    /// The reply is a Redis error (`-ERR ...`); its message is the first item's bytes.
    #[error("redis replied with an error")]
    ErrorReply,
    /// The reply has not the shape the command's reply has (e.g. `XREAD` entries).
    #[error("unexpected redis reply shape")]
    UnexpectedShape,
}

#[cfg(test)]
mod tests;
