//! A channel's audience: who takes each entry of a stream, and the bytes each member is sent.
//!
//! Without I/O: members are keys of the caller's choosing (the boundary uses sessions). An entry
//! goes to every member, but to one that joined with an `after` id (it had read up to there
//! already) only once the stream is past that id: after that, the member takes every entry. Each
//! member is sent the entry as a `PubSubResp` carrying its own sequence (the subscribe request's),
//! which only changes the message's first field: [`Payload`] writes that field before bytes
//! encoded once without it.
//!
//! Joining and leaving are O(1) (a slot table over a dense list), and a delivery walks the dense
//! list: the per-entry loop touches nothing else of the audience.

/// A Redis stream id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// The milliseconds part.
    pub ms: u64,
    /// The sequence part.
    pub seq: u64,
}

impl StreamId {
    /// An id as Redis writes it, `<ms>-<seq>`, each part a decimal of at most 20 digits within
    /// `u64`; `None` for anything else.
    pub fn parse(s: &[u8]) -> Option<StreamId> {
        let dash = s.iter().position(|&b| b == b'-')?;
        Some(StreamId { ms: decimal(&s[..dash])?, seq: decimal(&s[dash + 1..])? })
    }
}

/// A `u64` written in decimal (digits only, at least one).
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A member of an [`Audience`].
#[derive(Debug)]
pub struct Member<K> {
    /// The caller's key.
    pub key: K,
    /// The sequence its messages carry.
    pub sequence: i64,
    /// Entries up to this id are not for it (it has them); cleared by the first entry past it.
    after: Option<StreamId>,
    /// Its slot, by which the caller names it.
    slot: u32,
}

/// The members of one channel.
#[derive(Debug)]
pub struct Audience<K> {
    members: Vec<Member<K>>,
    /// Slot -> index in `members`, `FREE` for a free slot.
    index: Vec<u32>,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
}

const FREE: u32 = u32::MAX;

impl<K> Default for Audience<K> {
    fn default() -> Self {
        Audience { members: Vec::new(), index: Vec::new(), free: Vec::new() }
    }
}

/// What [`Audience::deliver`] tells of a member taking an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taker {
    /// The member's slot.
    pub slot: u32,
    /// The member's sequence.
    pub sequence: i64,
    /// This is the first entry the member takes since it joined with an `after` id: what it had
    /// before is that id, not the entry before this one on the channel.
    pub first_past_after: bool,
}

impl<K> Audience<K> {
    /// An audience without members.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member; returns its slot, which names it until it leaves (then it may be reused).
    pub fn join(&mut self, key: K, sequence: i64, after: Option<StreamId>) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.index.push(FREE);
                (self.index.len() - 1) as u32
            }
        };
        self.index[slot as usize] = self.members.len() as u32;
        self.members.push(Member { key, sequence, after, slot });
        slot
    }

    /// Removes the member of `slot`; its key, or `None` when the slot holds no member.
    pub fn leave(&mut self, slot: u32) -> Option<K> {
        let i = *self.index.get(slot as usize)?;
        if i == FREE {
            return None;
        }
        let m = self.members.swap_remove(i as usize);
        if let Some(moved) = self.members.get(i as usize) {
            self.index[moved.slot as usize] = i;
        }
        self.index[slot as usize] = FREE;
        self.free.push(slot);
        Some(m.key)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The key of the member of `slot`.
    pub fn key(&self, slot: u32) -> Option<&K> {
        let i = *self.index.get(slot as usize)?;
        self.members.get(i as usize).map(|m| &m.key)
    }

    /// The keys of every member, for the caller's clean-up.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.members.iter().map(|m| &m.key)
    }

    /// Calls `take` for each member that takes entry `id` (every member, but one whose `after`
    /// id the stream is not past yet), with its key. Members must not join or leave meanwhile:
    /// `take` collects what is to be done about them.
    pub fn deliver(&mut self, id: StreamId, mut take: impl FnMut(&K, Taker)) {
        for m in &mut self.members {
            let mut first_past_after = false;
            if let Some(after) = m.after {
                if id <= after {
                    continue;
                }
                m.after = None;
                first_past_after = true;
            }
            take(&m.key, Taker { slot: m.slot, sequence: m.sequence, first_past_after });
        }
    }
}

/// The `PubSubResp` of one entry for one sequence: the `sequence` field (field 1, omitted when 0,
/// as the encoder does) followed by the rest, encoded once with sequence 0. Made again only when
/// the sequence changes from one member to the next.
#[derive(Debug, Default)]
pub struct Payload {
    bytes: Vec<u8>,
    /// The sequence `bytes` were made for (None: not made for this body yet).
    made: Option<i64>,
}

impl Payload {
    /// Forgets the last payload: the next [`Payload::for_sequence`] makes it anew.
    pub fn reset(&mut self) {
        self.made = None;
    }

    /// The message for `sequence` of `body` (the same body as the last call, or after [`reset`]).
    ///
    /// [`reset`]: Payload::reset
    pub fn for_sequence(&mut self, sequence: i64, body: &[u8]) -> &[u8] {
        if self.made != Some(sequence) {
            self.bytes.clear();
            if sequence != 0 {
                self.bytes.push(0x08);
                let mut v = sequence as u64;
                while v >= 0x80 {
                    self.bytes.push(v as u8 | 0x80);
                    v >>= 7;
                }
                self.bytes.push(v as u8);
            }
            self.bytes.extend_from_slice(body);
            self.made = Some(sequence);
        }
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    #[test]
    fn ids_parse_as_redis_writes_them() {
        assert_eq!(StreamId::parse(b"1700000000000-0"), Some(id(1_700_000_000_000, 0)));
        assert_eq!(StreamId::parse(b"18446744073709551615-18446744073709551615"), Some(id(u64::MAX, u64::MAX)));
        for bad in [&b""[..], b"1", b"-1", b"1-", b"1-2-3", b"a-1", b"1- 2", b"18446744073709551616-0", b"+1-0", b"000000000000000000001-0"] {
            assert_eq!(StreamId::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn ids_order_by_milliseconds_then_sequence() {
        assert!(id(2, 0) > id(1, 99));
        assert!(id(1, 10) > id(1, 9));
        assert_eq!(StreamId::parse(b"10-2").unwrap().cmp(&StreamId::parse(b"9-30").unwrap()), std::cmp::Ordering::Greater);
    }

    #[test]
    fn a_member_joined_after_an_id_takes_only_what_follows_it() {
        let mut a = Audience::new();
        let early = a.join("early", 1, None);
        let late = a.join("late", 2, Some(id(5, 0)));
        let mut seen = Vec::new();
        for ms in [4, 5, 6, 7] {
            a.deliver(id(ms, 0), |k, t| seen.push((ms, *k, t.slot, t.first_past_after)));
        }
        assert_eq!(seen, vec![
            (4, "early", early, false),
            (5, "early", early, false),
            (6, "early", early, false),
            (6, "late", late, true),
            (7, "early", early, false),
            (7, "late", late, false),
        ]);
    }

    #[test]
    fn slots_are_reused_and_name_their_member_only() {
        let mut a = Audience::new();
        let x = a.join('x', 0, None);
        let y = a.join('y', 0, None);
        assert_eq!(a.leave(x), Some('x'));
        assert_eq!(a.leave(x), None);
        assert_eq!(a.key(y), Some(&'y'));
        let z = a.join('z', 0, None);
        assert_eq!(z, x);
        assert_eq!((a.key(z), a.key(y), a.len()), (Some(&'z'), Some(&'y'), 2));
        assert_eq!(a.leave(99), None);
    }

    #[test]
    fn a_payload_is_what_the_encoder_makes_for_that_sequence() {
        use crate::message::ReplyEncoder;
        use crate::schema::Schema;
        let schema = Schema::builtin();
        let body = {
            let mut e = ReplyEncoder::new(schema.clone());
            e.begin(0);
            e.put_pong(b"hello");
            e.finish().unwrap().to_vec()
        };
        let mut p = Payload::default();
        for seq in [0i64, 1, 127, 128, 300, -1, i64::MIN, i64::MAX, 1, 0] {
            let mut e = ReplyEncoder::new(schema.clone());
            e.begin(seq);
            e.put_pong(b"hello");
            let want = e.finish().unwrap().to_vec();
            assert_eq!(p.for_sequence(seq, &body), &want[..], "sequence {seq}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(i64, Option<(u64, u64)>),
        Leave(usize),
        Deliver(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<i64>(), proptest::option::of((0u64..8, 0u64..3))).prop_map(|(s, a)| Op::Join(s, a)),
            (0usize..40).prop_map(Op::Leave),
            (0u64..8, 0u64..3).prop_map(|(m, s)| Op::Deliver(m, s)),
        ]
    }

    proptest! {
        /// Against a model (a map of key -> (sequence, after)): every member takes exactly the
        /// entries past its `after`, once; leaving removes exactly that member.
        #[test]
        fn the_audience_follows_its_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut a = Audience::new();
            let mut model: BTreeMap<u32, (usize, i64, Option<StreamId>)> = BTreeMap::new();
            let mut next_key = 0usize;
            for op in ops {
                match op {
                    Op::Join(seq, after) => {
                        let after = after.map(|(m, s)| id(m, s));
                        let slot = a.join(next_key, seq, after);
                        prop_assert!(!model.contains_key(&slot));
                        model.insert(slot, (next_key, seq, after));
                        next_key += 1;
                    }
                    Op::Leave(n) => {
                        let slot = model.keys().nth(n % (model.len() + 1)).copied().unwrap_or(1000);
                        let want = model.remove(&slot).map(|m| m.0);
                        prop_assert_eq!(a.leave(slot), want);
                    }
                    Op::Deliver(ms, seq) => {
                        let e = id(ms, seq);
                        let mut got = BTreeMap::new();
                        a.deliver(e, |k, t| { got.insert(t.slot, (*k, t.sequence, t.first_past_after)); });
                        let mut want = BTreeMap::new();
                        for (slot, m) in model.iter_mut() {
                            match m.2 {
                                Some(after) if e <= after => {}
                                Some(_) => { want.insert(*slot, (m.0, m.1, true)); m.2 = None; }
                                None => { want.insert(*slot, (m.0, m.1, false)); }
                            }
                        }
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(a.len(), model.len());
                for (slot, m) in &model {
                    prop_assert_eq!(a.key(*slot), Some(&m.0));
                }
            }
        }

        /// Parsing agrees with the decimal formatting of the two parts.
        #[test]
        fn ids_parse_what_they_print(ms in any::<u64>(), seq in any::<u64>()) {
            prop_assert_eq!(StreamId::parse(format!("{ms}-{seq}").as_bytes()), Some(id(ms, seq)));
        }
    }
}
