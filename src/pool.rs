//! Spare byte buffers, shared by the connections of one thread (an nginx worker).
//!
//! A connection that is not in the middle of a frame, and has nothing left to send, needs no
//! buffers; it gives them back here and takes one again when bytes arrive. Many connections then
//! share a few buffers that stay in the CPU's caches, instead of each keeping its own cold ones,
//! and idle connections hold no memory beyond their state.

use std::cell::RefCell;

/// Buffers kept at most: enough for the connections that complete a frame between two reads,
/// few enough that the pool adds little to a worker's memory.
const KEEP: usize = 4;
/// Larger buffers go back to the allocator, so a burst of big messages leaves no lasting mark.
const MAX_CAPACITY: usize = 4 << 20;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer, with the capacity of the one given back last if there is one.
pub fn take() -> Vec<u8> {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

/// Gives `buf` back (its contents are dropped).
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_CAPACITY {
        return;
    }
    buf.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(buf);
        }
    });
}

/// Replaces `buf` with a spare one when it has no allocation.
pub fn refill(buf: &mut Vec<u8>) {
    if buf.capacity() == 0 {
        *buf = take();
    }
}

/// Gives the allocation of `buf` back, leaving it empty.
pub fn release(buf: &mut Vec<u8>) {
    give(std::mem::take(buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_the_last_given_first() {
        let mut a = Vec::with_capacity(100);
        a.extend_from_slice(b"abc");
        let b = Vec::with_capacity(200);
        give(a);
        give(b);
        let got = take();
        assert!(got.is_empty());
        assert_eq!(got.capacity(), 200);
        let got2 = take();
        assert!(got2.is_empty() && got2.capacity() >= 100);
    }

    #[test]
    fn huge_and_surplus_buffers_are_not_kept() {
        give(Vec::with_capacity(MAX_CAPACITY + 1));
        assert!(take().capacity() <= MAX_CAPACITY);
        for _ in 0..KEEP + 5 {
            give(Vec::with_capacity(10));
        }
        let n = SPARE.with(|s| s.borrow().len());
        assert_eq!(n, KEEP);
    }
}
