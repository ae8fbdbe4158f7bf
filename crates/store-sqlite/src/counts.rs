//! Counts of events in sequence ranges, remembered so that the next count of a range that
//! has moved walks only what moved.
//!
//! A destination's backlog is the number of events after its cursor, up to the store's
//! head. Counting it walks every one of them: about a second per 10,000,000 from the page
//! cache, many more from disk. `/metrics`, the status page and `export`'s progress ask for it
//! again and again, and between two asks the cursor and the head move by what was exported
//! and stored meanwhile, which is little beside a backlog that a stopped sink has grown.
//!
//! The count of `(after, head]` follows from a remembered count of `(after0, head0]` when
//! `after0 <= after` and `head0 <= head`, because in SQLite
//! - events are only ever added above the head (`AUTOINCREMENT` hands out sequence numbers
//!   in increasing order, one writer at a time, and readers see none above an open bulk
//!   load), so no event appears later inside a counted range;
//! - events are only ever deleted by GC (a failed bulk load deletes only events no reader
//!   saw), and each GC step that deletes counts one more *collection* in the same
//!   transaction. A remembered count is used only while the collections are those it was
//!   taken at.
//!
//! A tenant's events follow the same rules, so the counts of each tenant's events are
//! remembered the same way, apart ([`StoreCounts`]).

/// How many counted ranges are remembered: one per destination counted, and the store's
/// total; the least recently used is forgotten first.
const REMEMBERED: usize = 32;

/// A count of the events in `(after, head]`, taken after `collections` GC steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    after: u64,
    head: u64,
    collections: u64,
    events: u64,
    /// When it was last used, for forgetting the least recently used.
    used: u64,
}

/// The counts remembered by a store ([`RememberedCounts::count`]).
#[derive(Debug, Default)]
pub(crate) struct RememberedCounts {
    counted: Vec<Counted>,
    uses: u64,
}

impl RememberedCounts {
    /// The number of events in `(after, head]`, after `collections` GC steps:
    /// `count_range(lo, hi)` counts the events in `(lo, hi]` (called only with `lo < hi`),
    /// for the whole range or only for what moved since a remembered count, whichever
    /// spans fewer sequence numbers. All of it must be read in one snapshot of the store.
    pub(crate) fn count<E>(
        &mut self,
        after: u64,
        head: u64,
        collections: u64,
        mut count_range: impl FnMut(u64, u64) -> Result<u64, E>,
    ) -> Result<u64, E> {
        let mut range = |lo: u64, hi: u64| if lo < hi { count_range(lo, hi) } else { Ok(0) };
        let whole = head.saturating_sub(after);
        let from = self
            .counted
            .iter()
            .filter(|c| c.collections == collections && c.after <= after && c.head <= head)
            .map(|c| (*c, span_from(c, after, head)))
            .filter(|(_, span)| *span < whole)
            .min_by_key(|(_, span)| *span)
            .map(|(c, _)| c);
        let events = match from {
            Some(c) => {
                // (after, head] = (c.after, c.head] - (c.after, after] + (c.head, head],
                // each clipped to the other: `after` may be past `c.head`.
                let left = range(c.after, after.min(c.head))?;
                let added = range(c.head.max(after), head)?;
                match c.events.checked_sub(left) {
                    Some(kept) => kept + added,
                    // More left than were counted: events appeared inside a counted range,
                    // against the rules above. The whole range is counted instead.
                    None => range(after, head)?,
                }
            }
            None => range(after, head)?,
        };
        self.remember(after, head, collections, events);
        Ok(events)
    }

    fn remember(&mut self, after: u64, head: u64, collections: u64, events: u64) {
        self.uses += 1;
        let counted = Counted {
            after,
            head,
            collections,
            events,
            used: self.uses,
        };
        // One count per `after`: the latest (its head is the highest).
        if let Some(same) = self.counted.iter_mut().find(|c| c.after == after) {
            *same = counted;
        } else if self.counted.len() < REMEMBERED {
            self.counted.push(counted);
        } else if let Some(oldest) = self.counted.iter_mut().min_by_key(|c| c.used) {
            *oldest = counted;
        }
    }
}

/// How many tenants' counts are remembered: with more tenants than this, all are forgotten
/// when one more is counted, and their next counts walk their whole ranges again.
const REMEMBERED_TENANTS: usize = 4_096;

/// The counts a store remembers: of all its events, and of each tenant's apart (a tenant
/// destination's backlog is counted over its tenant's events alone, which follow the same
/// rules).
#[derive(Debug, Default)]
pub(crate) struct StoreCounts {
    all: RememberedCounts,
    by_tenant: std::collections::HashMap<String, RememberedCounts>,
}

impl StoreCounts {
    /// The counts remembered for `tenant`'s events, or for all events.
    pub(crate) fn of(&mut self, tenant: Option<&str>) -> &mut RememberedCounts {
        let Some(tenant) = tenant else {
            return &mut self.all;
        };
        if !self.by_tenant.contains_key(tenant) && self.by_tenant.len() >= REMEMBERED_TENANTS {
            self.by_tenant.clear();
        }
        self.by_tenant.entry(tenant.to_owned()).or_default()
    }
}

/// How many sequence numbers counting `(after, head]` from `c` walks.
fn span_from(c: &Counted, after: u64, head: u64) -> u64 {
    let left = after.min(c.head) - c.after;
    let added = head - c.head.max(after);
    left + added
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A store's events as a set of sequence numbers, with what a count walked.
    #[derive(Default)]
    struct Model {
        seqs: BTreeSet<u64>,
        head: u64,
        collections: u64,
        walked: u64,
    }

    impl Model {
        fn append(&mut self, n: u64) {
            for _ in 0..n {
                self.head += 1;
                self.seqs.insert(self.head);
            }
        }

        /// A sequence number handed out and never stored (an ignored duplicate).
        fn skip(&mut self) {
            self.head += 1;
        }

        fn collect(&mut self, mut doomed: impl FnMut(u64) -> bool) {
            let before = self.seqs.len();
            self.seqs.retain(|s| !doomed(*s));
            if self.seqs.len() != before {
                self.collections += 1;
            }
        }

        fn direct(&self, after: u64) -> u64 {
            self.seqs.range(after + 1..=self.head).count() as u64
        }

        fn count(&mut self, counts: &mut RememberedCounts, after: u64) -> u64 {
            let (seqs, head, collections) = (&self.seqs, self.head, self.collections);
            let mut walked = 0;
            let n = counts
                .count(after, head, collections, |lo, hi| {
                    assert!(lo < hi, "asked for an empty range ({lo}, {hi}]");
                    walked += hi - lo;
                    Ok::<_, ()>(seqs.range(lo + 1..=hi).count() as u64)
                })
                .unwrap();
            self.walked = walked;
            n
        }
    }

    #[test]
    fn a_count_after_a_small_move_walks_only_what_moved() {
        let (mut store, mut counts) = (Model::default(), RememberedCounts::default());
        store.append(1_000_000);
        assert_eq!(store.count(&mut counts, 10), 999_990);
        assert_eq!(store.walked, 999_990);
        // 500 stored, 300 exported.
        store.append(500);
        assert_eq!(store.count(&mut counts, 310), 1_000_190);
        assert_eq!(store.walked, 800);
        // Nothing moved: nothing walked.
        assert_eq!(store.count(&mut counts, 310), 1_000_190);
        assert_eq!(store.walked, 0);
        // A second destination far behind starts from nothing, then from its own count.
        assert_eq!(store.count(&mut counts, 0), 1_000_500);
        store.append(7);
        assert_eq!(store.count(&mut counts, 0), 1_000_507);
        assert_eq!(store.walked, 7);
    }

    #[test]
    fn a_collection_makes_the_next_count_walk_its_whole_range() {
        let (mut store, mut counts) = (Model::default(), RememberedCounts::default());
        store.append(1_000);
        assert_eq!(store.count(&mut counts, 100), 900);
        // A paused destination's bound deletes events past another's cursor.
        store.collect(|s| s <= 400);
        assert_eq!(store.count(&mut counts, 100), 600);
        assert_eq!(store.walked, 900);
    }

    #[test]
    fn counts_match_a_direct_count_through_appends_gaps_moves_and_collections() {
        let (mut store, mut counts) = (Model::default(), RememberedCounts::default());
        let mut cursors = [0u64; 40];
        // A small deterministic generator: the same sequence each run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for step in 0..5_000 {
            match next(10) {
                0..=3 => store.append(next(50)),
                4 => store.skip(),
                5 | 6 => {
                    let d = next(cursors.len() as u64) as usize;
                    cursors[d] = (cursors[d] + next(80)).min(store.head);
                }
                7 => {
                    // GC: below every cursor, or (a pause's bound) past some of them.
                    let bound = if next(2) == 0 {
                        *cursors.iter().min().unwrap()
                    } else {
                        store.head.saturating_sub(next(200))
                    };
                    let odd_only = next(3) == 0;
                    store.collect(|s| s <= bound && (!odd_only || s % 2 == 1));
                }
                _ => {}
            }
            let d = next(cursors.len() as u64) as usize;
            let after = cursors[d];
            assert_eq!(
                store.count(&mut counts, after),
                store.direct(after),
                "step {step}, after {after}, head {}",
                store.head
            );
        }
    }

    #[test]
    fn a_count_that_would_go_below_zero_is_counted_again_whole() {
        let (mut store, mut counts) = (Model::default(), RememberedCounts::default());
        store.seqs = (91..=100).collect();
        store.head = 100;
        assert_eq!(store.count(&mut counts, 0), 10);
        // Events appear inside the counted range, against the rules.
        store.seqs.extend(1..=90);
        assert_eq!(store.count(&mut counts, 30), 70);
        assert_eq!(store.walked, 30 + 70);
    }

    #[test]
    fn tenant_counts_are_forgotten_all_at_once_past_the_cap() {
        let mut counts = StoreCounts::default();
        for t in 0..REMEMBERED_TENANTS {
            counts.of(Some(&format!("t{t}"))).remember(0, 10, 0, 10);
        }
        // A tenant already remembered is found without forgetting any.
        assert_eq!(counts.of(Some("t7")).counted.len(), 1);
        assert_eq!(counts.by_tenant.len(), REMEMBERED_TENANTS);
        // One more: all are forgotten, and it is the only one.
        assert!(counts.of(Some("one more")).counted.is_empty());
        assert_eq!(counts.by_tenant.len(), 1);
    }
}
