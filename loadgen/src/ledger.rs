//! The ledger of `pubsub-loadgen subscribe --publishers P` (channels only): what every publish
//! became and what every subscriber got, by publish counter and by Redis stream id.
//!
//! Publishes run P at a time, so the stream's order is not the counters' order: a subscriber's
//! order is checked on the `channel_message` ids, which must rise. A publish that fails (an HTTP
//! error, a connection lost) is not sent again: it is *unacknowledged*, and if Redis stored it
//! anyway (its answer lost in a restart) its deliveries are counted apart, as neither lost nor
//! duplicated. "Lost" is an acknowledged publish that a subscriber did not get; "duplicated" a
//! counter that a subscriber got twice; "stored twice" a counter that reached subscribers under two
//! stream ids (one publish, two entries: never expected, since nothing is retried); "id mismatch"
//! an acknowledged publish whose answer named another id than its deliveries carried.

/// A stream id `<ms>-<seq>`, compared as Redis orders them.
pub type StreamId = (u64, u64);

/// Parses `<ms>-<seq>` (surrounding white space ignored).
pub fn parse_id(s: &str) -> Option<StreamId> {
    let (ms, seq) = s.trim().split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What became of a publish counter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fate {
    /// Not yet answered (or not yet sent).
    Pending,
    /// Answered with this id.
    Acked(StreamId),
    /// Failed: no id given.
    Failed,
}

/// One subscriber's view.
#[derive(Debug, Default)]
struct Seen {
    /// Bit `c` set: counter `c` was received.
    got: Vec<u64>,
    /// The highest stream id received.
    last: StreamId,
    /// A real message (counter >= 1) was received.
    started: bool,
    synced: bool,
}

impl Seen {
    /// Marks counter `c`; false if it was marked already.
    fn mark(&mut self, c: u64) -> bool {
        let (w, b) = ((c / 64) as usize, c % 64);
        if w >= self.got.len() {
            self.got.resize(w + 1 + w / 2, 0);
        }
        let fresh = self.got[w] & (1 << b) == 0;
        self.got[w] |= 1 << b;
        fresh
    }

    fn has(&self, c: u64) -> bool {
        self.got.get((c / 64) as usize).is_some_and(|w| w & (1 << (c % 64)) != 0)
    }
}

/// What a delivery was.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// The first sync message of this subscriber.
    Synced,
    /// A sync message again (the publisher repeats them until all are synced): ignored.
    SyncAgain,
    /// A counter's first arrival at this subscriber; `unacked` if its publish failed.
    New { unacked: bool },
    /// A counter this subscriber had already.
    Duplicate,
}

/// The ledger. Counters index `fates` and `first_ids` directly (they start at 0, the sync).
#[derive(Debug)]
pub struct Ledger {
    fates: Vec<Fate>,
    /// The id under which each counter first reached a subscriber ((0, 0): not yet).
    first_ids: Vec<StreamId>,
    subs: Vec<Seen>,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub stored_twice: u64,
    pub acked: u64,
    pub failed: u64,
}

impl Ledger {
    pub fn new(subscribers: usize) -> Ledger {
        Ledger {
            fates: Vec::new(),
            first_ids: Vec::new(),
            subs: (0..subscribers).map(|_| Seen::default()).collect(),
            duplicated: 0,
            out_of_order: 0,
            stored_twice: 0,
            acked: 0,
            failed: 0,
        }
    }

    fn grow(&mut self, c: u64) {
        let c = c as usize;
        if c >= self.fates.len() {
            self.fates.resize(c + 1, Fate::Pending);
            self.first_ids.resize(c + 1, (0, 0));
        }
    }

    pub fn fate(&self, c: u64) -> Fate {
        self.fates.get(c as usize).copied().unwrap_or(Fate::Pending)
    }

    /// The answer to the publish of counter `c`.
    pub fn answered(&mut self, c: u64, id: Option<StreamId>) {
        self.grow(c);
        self.fates[c as usize] = match id {
            Some(id) => {
                self.acked += 1;
                Fate::Acked(id)
            }
            None => {
                self.failed += 1;
                Fate::Failed
            }
        };
    }

    /// Counter `c` under stream id `id` reached subscriber `sub`.
    pub fn deliver(&mut self, sub: usize, c: u64, id: StreamId) -> Delivery {
        self.grow(c);
        let s = &mut self.subs[sub];
        if c == 0 {
            if s.started {
                self.out_of_order += 1;
            } else if !s.synced {
                s.synced = true;
                s.last = s.last.max(id);
                return Delivery::Synced;
            }
            return Delivery::SyncAgain;
        }
        s.started = true;
        if !s.mark(c) {
            self.duplicated += 1;
            return Delivery::Duplicate;
        }
        if id <= s.last {
            self.out_of_order += 1;
        }
        s.last = s.last.max(id);
        let first = &mut self.first_ids[c as usize];
        if *first == (0, 0) {
            *first = id;
        } else if *first != id {
            self.stored_twice += 1;
        }
        Delivery::New { unacked: self.fates[c as usize] == Fate::Failed }
    }

    /// The counts over counters 1 to `last`, once publishing is over: (lost: acknowledged publishes
    /// a subscriber did not get; deliveries of unacknowledged publishes; acknowledged publishes
    /// whose deliveries carried another id than their answer).
    pub fn tally(&self, last: u64) -> (u64, u64, u64) {
        let (mut lost, mut unacked, mut mismatch) = (0, 0, 0);
        for c in 1..=last {
            match self.fate(c) {
                Fate::Acked(id) => {
                    lost += self.subs.iter().filter(|s| !s.has(c)).count() as u64;
                    let first = self.first_ids[c as usize];
                    if first != (0, 0) && first != id {
                        mismatch += 1;
                    }
                }
                Fate::Failed => unacked += self.subs.iter().filter(|s| s.has(c)).count() as u64,
                Fate::Pending => {}
            }
        }
        (lost, unacked, mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_order() {
        assert_eq!(parse_id("1700000000000-3\n"), Some((1700000000000, 3)));
        assert_eq!(parse_id("17"), None);
        assert!(parse_id("9-10").unwrap() > parse_id("9-9").unwrap());
        assert!(parse_id("10-0").unwrap() > parse_id("9-99").unwrap());
    }

    #[test]
    fn lost_duplicated_unacked_and_order() {
        let mut l = Ledger::new(2);
        assert_eq!(l.deliver(0, 0, (1, 0)), Delivery::Synced);
        assert_eq!(l.deliver(0, 0, (1, 1)), Delivery::SyncAgain);
        l.answered(1, Some((5, 0)));
        l.answered(2, None); // failed, yet stored: it arrives
        l.answered(3, Some((7, 0)));
        assert_eq!(l.deliver(0, 1, (5, 0)), Delivery::New { unacked: false });
        assert_eq!(l.deliver(0, 2, (6, 0)), Delivery::New { unacked: true });
        assert_eq!(l.deliver(0, 3, (7, 0)), Delivery::New { unacked: false });
        assert_eq!(l.deliver(0, 3, (7, 0)), Delivery::Duplicate);
        // Subscriber 1 misses 1, gets 3 before 2 (out of order by id).
        assert_eq!(l.deliver(1, 3, (7, 0)), Delivery::New { unacked: false });
        assert_eq!(l.deliver(1, 2, (6, 0)), Delivery::New { unacked: true });
        assert_eq!((l.duplicated, l.out_of_order, l.stored_twice), (1, 1, 0));
        assert_eq!(l.tally(3), (1, 2, 0));
        // A second entry for a counter, and an answer naming another id.
        l.answered(4, Some((9, 0)));
        l.deliver(0, 4, (8, 0));
        l.deliver(1, 4, (10, 0));
        assert_eq!(l.stored_twice, 1);
        assert_eq!(l.tally(4), (1, 2, 1));
        // A sync after real messages is out of order.
        l.deliver(1, 0, (11, 0));
        assert_eq!(l.out_of_order, 2);
    }
}
