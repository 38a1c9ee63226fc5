//! A native replacement for Apache APISIX's `core.pubsub`.
//!
//! The crate is a pure core and one boundary:
//! - [`frame`]: RFC 6455 framing, server side, without I/O;
//! - [`wire`], [`schema`], [`message`]: the protobuf codec of `PubSubReq` / `PubSubResp`;
//! - [`proto_file`]: a proto file compiled at run time and laid over the built-in schema;
//! - [`queue`]: a connection's output queue and its write-size policy;
//! - [`session`]: one connection's state, tying framing, messages and the queue together;
//! - [`fanout`]: a channel's audience: who takes each stream entry, with which sequence;
//! - [`metrics`]: the worker's counters of what the sessions see, and their Prometheus exposition;
//! - `pool` (private): spare buffers the connections of a worker share;
//! - [`proto`]: prost types of the same proto, for Rust clients and tests;
//! - `ffi` (private): where Rust meets Lua; the only module that knows about Lua (`src/ffi/`).

#![deny(warnings, missing_debug_implementations, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod deflate;
pub mod fanout;
pub mod frame;
pub mod message;
pub mod metrics;
pub mod resp;
mod pool;
pub mod proto_file;
pub mod queue;
pub mod schema;
pub mod session;
pub mod wire;

mod ffi;

/// prost types generated from `proto/pubsub.proto`.
#[allow(missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/pubsub.rs"));
}
