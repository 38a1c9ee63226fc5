//! Stream entries out of `XREAD` and `XRANGE` replies, as spans of the reply's bytes.

use super::{item, Item, Reply, RespError};

/// A run of bytes of a reply: `reply.bytes[offset..offset + len]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// Where the bytes start.
    pub offset: usize,
    /// How many.
    pub len: usize,
}

impl Span {
    fn of(item: &Item) -> Span {
        Span { offset: item.offset, len: item.len }
    }

    /// The bytes of this span in `reply`.
    pub fn get<'a>(&self, reply: &Reply<'a>) -> &'a [u8] {
        &reply.bytes[self.offset..self.offset + self.len]
    }
}

/// One entry of a stream. `#[repr(C)]`, for the Lua side.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The stream's key (`XREAD`); empty for `XRANGE`, whose reply does not name it.
    pub key: Span,
    /// The entry id, `<ms>-<seq>`.
    pub id: Span,
    /// Index in [`Reply::items`] of the first field name; field `i` is item `fields + 2i`, its
    /// value item `fields + 2i + 1`, both bulk strings.
    pub fields: usize,
    /// How many field-value pairs.
    pub pairs: usize,
}

impl StreamEntry {
    /// Field-value pair `i` (below [`StreamEntry::pairs`]).
    pub fn pair<'a>(&self, reply: &Reply<'a>, i: usize) -> (&'a [u8], &'a [u8]) {
        let at = self.fields + 2 * i;
        (reply.bytes_of(&reply.items[at]), reply.bytes_of(&reply.items[at + 1]))
    }

    /// The value of the first field named `name`.
    pub fn value<'a>(&self, reply: &Reply<'a>, name: &[u8]) -> Option<&'a [u8]> {
        (0..self.pairs).map(|i| self.pair(reply, i)).find(|(f, _)| *f == name).map(|(_, v)| v)
    }
}

fn is_string(it: &Item) -> bool {
    matches!(it.kind, item::BULK | item::SIMPLE)
}

/// Appends the entries of an `XREAD` reply to `out`, stream by stream, each stream's in order.
/// A nil reply (`BLOCK` timed out) has none. RESP2 (an array of `[key, entries]`) and RESP3 (a map
/// of key to entries) alike. An error reply is [`RespError::ErrorReply`].
pub fn xread_entries(reply: &Reply, out: &mut Vec<StreamEntry>) -> Result<(), RespError> {
    let items = reply.items;
    let top = &items[0];
    match top.kind {
        item::NIL => Ok(()),
        item::ERROR => Err(RespError::ErrorReply),
        item::ARRAY => {
            let mut at = 1;
            for _ in 0..top.count {
                let pair = &items[at];
                if pair.kind != item::ARRAY || pair.count != 2 {
                    return Err(RespError::UnexpectedShape);
                }
                entries_of(items, at + 1, out)?;
                at = pair.end;
            }
            Ok(())
        }
        item::MAP => {
            let mut at = 1;
            for _ in 0..top.count / 2 {
                at = entries_of(items, at, out)?;
            }
            Ok(())
        }
        _ => Err(RespError::UnexpectedShape),
    }
}

/// A key item at `at` followed by its entries array; returns the index after them.
fn entries_of(items: &[Item], at: usize, out: &mut Vec<StreamEntry>) -> Result<usize, RespError> {
    let key = items.get(at).filter(|k| is_string(k)).ok_or(RespError::UnexpectedShape)?;
    entry_list(items, at + 1, Span::of(key), out)
}

/// Appends the entries of an `XRANGE` / `XREVRANGE` reply to `out` (with an empty key).
pub fn xrange_entries(reply: &Reply, out: &mut Vec<StreamEntry>) -> Result<(), RespError> {
    match reply.items[0].kind {
        item::ERROR => Err(RespError::ErrorReply),
        _ => entry_list(reply.items, 0, Span::default(), out).map(|_| ()),
    }
}

/// An array of `[id, [field, value, ...]]` at `at`; returns the index after it.
fn entry_list(items: &[Item], at: usize, key: Span, out: &mut Vec<StreamEntry>) -> Result<usize, RespError> {
    let list = items.get(at).filter(|l| l.kind == item::ARRAY).ok_or(RespError::UnexpectedShape)?;
    let mut e = at + 1;
    for _ in 0..list.count {
        let entry = &items[e];
        let id = items.get(e + 1).filter(|i| is_string(i));
        let (Some(id), true) = (id, entry.kind == item::ARRAY && entry.count == 2) else {
            return Err(RespError::UnexpectedShape);
        };
        let fields = &items[e + 2];
        let pairs = match fields.kind {
            // An entry deleted since it was delivered (XREADGROUP's pending list) has no fields.
            item::NIL => 0,
            item::ARRAY if fields.count % 2 == 0 && items[e + 3..fields.end].iter().all(is_string) => {
                fields.count as usize / 2
            }
            _ => return Err(RespError::UnexpectedShape),
        };
        out.push(StreamEntry { key, id: Span::of(id), fields: e + 3, pairs });
        e = entry.end;
    }
    Ok(list.end)
}
