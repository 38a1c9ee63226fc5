//! The connection's socket as nginx holds it, so that `send` can write a push itself when nothing
//! stands before it: the one file that reads nginx's structs.
//!
//! Why: a push sent from another Lua context (a channel's fan-out timer, another request) reaches
//! the socket otherwise only through the connection's writer thread (lua/apisix_pubsub_rs/
//! writer.lua): a semaphore post, the thread's resume, a cosocket `send`, and the timer its next
//! wait arms, about 1,500 instructions per delivery, most of a fan-out's user-space cost. nginx
//! runs a worker's connections on one thread, and a cosocket `send` of a plain TCP connection
//! ends in `ngx_unix_send`, a non-blocking `send(2)` on the connection's descriptor, from
//! whatever context the Lua code runs in. A `writev(2)` on that descriptor from the worker's Lua
//! code is the same system call, under these conditions, which the session FFI checks per write:
//!
//! 1. no write of the queue is under way (a cosocket `send` may be waiting for the socket; bytes
//!    taken and not confirmed: `Session::writing`), so writes never overlap;
//! 2. what is written is the front of the queue, so the order is the queue's;
//! 3. the connection is still the request's: nginx's request cleanup ([`link_gone`]) says when it
//!    goes, and a connection whose request ended without `wait()` returning (a client abort with
//!    `lua_check_client_abort`, an `ngx.exit` from another thread) is then refused as closed;
//! 4. the connection is plain TCP (`c->send` is `ngx_unix_send`): TLS keeps state a raw write
//!    would corrupt, so such a connection, and one whose structs do not look as expected, is not
//!    attached and is written by its writer thread only.
//!
//! What the socket does not take at once (it is full) stays queued and the writer thread sends
//! it, waiting for the socket as a cosocket does; an error is left for the writer to meet, which
//! then ends the connection the usual way.
//!
//! The layout read here (`ngx_http_request_t.connection`; `ngx_connection_t.data`, `.fd`,
//! `.send`) has stood in nginx since its first versions; attaching checks that the request and
//! its connection point at each other and that `send` is `ngx_unix_send` before any of it is
//! trusted. Nothing of nginx's is written (not even `c->sent`: adding to it kept an exiting worker
//! from running its pending timers early, t/channels/exit.t showed), so the bytes written here are
//! not in the access log's `$bytes_sent`.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::io::IoSlice;
use std::rc::Rc;

/// Offsets in nginx's structs, 64-bit builds: `ngx_http_request_t.connection` (after a `uint32_t`
/// signature), and `ngx_connection_t`'s `data`, `fd` and `send` (after `data`, `read`, `write`,
/// `fd`, `recv`).
const R_CONNECTION: usize = 8;
const C_DATA: usize = 0;
const C_FD: usize = 24;
const C_SEND: usize = 40;

/// nginx's `ngx_http_cleanup_t`: a handler called with `data` when the request is freed.
#[repr(C)]
struct Cleanup {
    handler: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
    next: *mut c_void,
}

/// `ngx_http_cleanup_add(r, size)`.
type CleanupAdd = unsafe extern "C" fn(*mut c_void, usize) -> *mut Cleanup;

extern "C" {
    fn writev(fd: c_int, iov: *const IoSlice<'_>, iovcnt: c_int) -> isize;
    fn send(fd: c_int, buf: *const c_void, len: usize, flags: c_int) -> isize;
}

/// Why a connection was not attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAttached {
    /// Not a 64-bit build, or a null pointer.
    Unsupported,
    /// The request and its connection do not point at each other as expected.
    Layout,
    /// The connection is not written by `ngx_unix_send` (TLS).
    NotPlain,
    /// nginx gave no cleanup record.
    NoCleanup,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrote {
    /// This many bytes reached the socket (0: it is full).
    Bytes(usize),
    /// The socket failed: nothing more is tried here.
    Failed,
}

/// A connection's descriptor, while its request lives.
#[derive(Debug)]
pub struct Socket {
    fd: c_int,
    /// Cleared by nginx's request cleanup ([`link_gone`]).
    alive: Rc<Cell<bool>>,
    failed: bool,
}

/// nginx's request cleanup: the request (and with it, soon, the connection) is gone.
///
/// # Safety
/// `data` is the pointer [`Socket::attach`] gave nginx, passed once.
unsafe extern "C" fn link_gone(data: *mut c_void) {
    // SAFETY: the reference attach leaked into the cleanup record, taken back once.
    let alive = unsafe { Rc::from_raw(data as *const Cell<bool>) };
    alive.set(false);
}

impl Socket {
    /// The socket of request `r`, checked as the module comment says; `unix_send` is nginx's
    /// `ngx_unix_send`, `cleanup_add` its `ngx_http_cleanup_add`.
    ///
    /// # Safety
    /// `r` is the `ngx_http_request_t *` of the running request and the two functions are nginx's,
    /// in this process; called from the worker's thread.
    pub unsafe fn attach(r: *mut c_void, unix_send: *const c_void, cleanup_add: *const c_void) -> Result<Socket, NotAttached> {
        if cfg!(not(target_pointer_width = "64")) || r.is_null() || unix_send.is_null() || cleanup_add.is_null() {
            return Err(NotAttached::Unsupported);
        }
        let r = r.cast::<u8>();
        // SAFETY: `r` is a live request (the caller's promise): its connection pointer is at
        // R_CONNECTION, and the connection, when non-null, is a live ngx_connection_t whose
        // fields read here lie within it.
        let (data, send, fd) = unsafe {
            let conn = *(r.add(R_CONNECTION) as *const *mut u8);
            if conn.is_null() {
                return Err(NotAttached::Layout);
            }
            let data = *(conn.add(C_DATA) as *const *mut u8);
            let send = *(conn.add(C_SEND) as *const *const c_void);
            let fd = *(conn.add(C_FD) as *const c_int);
            (data, send, fd)
        };
        if data != r || fd < 0 {
            return Err(NotAttached::Layout);
        }
        if send != unix_send {
            return Err(NotAttached::NotPlain);
        }
        // SAFETY: the caller's promise: nginx's ngx_http_cleanup_add, of this signature.
        let cleanup_add: CleanupAdd = unsafe { std::mem::transmute(cleanup_add) };
        // SAFETY: a live request; nginx allocates the record from its pool.
        let cln = unsafe { cleanup_add(r.cast(), 0) };
        if cln.is_null() {
            return Err(NotAttached::NoCleanup);
        }
        let alive = Rc::new(Cell::new(true));
        // SAFETY: a fresh record of the request, ours to fill; nginx calls the handler once, when
        // the request is freed, and the reference leaked into it is taken back there.
        unsafe {
            (*cln).data = Rc::into_raw(alive.clone()) as *mut c_void;
            (*cln).handler = Some(link_gone);
        }
        Ok(Socket { fd, alive, failed: false })
    }

    /// Whether the request still lives.
    pub fn alive(&self) -> bool {
        self.alive.get()
    }

    /// Whether writes may be tried: the request lives and no write failed.
    pub fn usable(&self) -> bool {
        self.alive.get() && !self.failed
    }

    /// One gathered, non-blocking write of `pieces`: `send(2)` for one piece (as `ngx_unix_send`
    /// does; the kernel's path for it is shorter than writev's, a few per cent of a small push's
    /// system time on loopback), `writev(2)` for more.
    pub fn write(&mut self, pieces: &[IoSlice<'_>]) -> Wrote {
        if !self.usable() {
            return Wrote::Failed;
        }
        let n = loop {
            let n = match pieces {
                // SAFETY: the descriptor of a live connection (checked above); the piece's bytes
                // are valid for its length.
                [one] => unsafe { send(self.fd, one.as_ptr().cast(), one.len(), 0) },
                // SAFETY: as above, and `pieces` is a valid array of iovec-compatible slices
                // (IoSlice's documented ABI).
                _ => unsafe { writev(self.fd, pieces.as_ptr(), pieces.len().min(1024) as c_int) },
            };
            if n >= 0 {
                break n as usize;
            }
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Wrote::Bytes(0),
                _ => {
                    self.failed = true;
                    return Wrote::Failed;
                }
            }
        };
        Wrote::Bytes(n)
    }
}
