//! Fast, monotonic UUIDv7 ids.
//!
//! `Uuid::now_v7` asks the OS for randomness on every id (a syscall); a
//! governed call creates several ids, so that dominated its cost. Here the
//! 48-bit millisecond timestamp and a 12-bit sequence form a stamp, taken
//! from a counter of the thread's shard (strictly increasing on each
//! thread); of the 62 bits left, 58 come from a per-thread xorshift
//! generator seeded once from the OS and 4 name the thread's shard
//! ([`shard_of`]).
//!
//! Two ways to take stamps keep an execution's events in the order they
//! were made. [`Stamps::reserve`] sorts after every stamp any thread
//! handed out before it (it reads every shard's counter): for writes that
//! may follow another thread's on the same execution (a decision, a
//! resume). [`Stamps::reserve_after`] only reads its own shard's counter:
//! for a run that has had its execution to itself since its last stamp,
//! which it passes as the floor. A governed call on the straight path
//! takes all its stamps this way, so two callers on two cores never write
//! the same cache line for their ids.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

/// A counter on cache lines of its own.
#[repr(align(128))]
struct Counter(AtomicU64);

/// Per shard, `(unix_ms << 12) | sequence` of the last stamp its threads
/// handed out.
static LAST: [Counter; SHARDS] = [const { Counter(AtomicU64::new(0)) }; SHARDS];

/// Number of shards an id can name (see [`shard_of`]).
pub(crate) const SHARDS: usize = 16;

/// Hands each thread its shard, in turn.
static NEXT_SHARD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
    /// This thread's shard, in the low bits of every id it makes.
    static SHARD: u64 = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS as u64;
}

/// This thread's shard.
pub(crate) fn current_shard() -> usize {
    // Below `SHARDS`.
    SHARD.with(|s| *s) as usize
}

/// The shard an id names: ids made on one thread name the same one, so
/// a store sharded by it (the memory store) keeps each thread's
/// executions apart from the others'.
pub(crate) fn shard_of(id: Uuid) -> usize {
    // The low bits are below `SHARDS`, so the cast keeps them whole.
    (id.as_u128() % SHARDS as u128) as usize
}

fn random() -> u64 {
    RNG.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A new v7 id for an event happening at `unix_ms`, after every id
/// handed out before.
pub(crate) fn v7(unix_ms: u64) -> Uuid {
    Stamps::reserve(unix_ms, 1).next_id()
}

/// A run of consecutive stamps taken with one atomic operation, for the
/// ids of the events one store write carries: they sort in the order
/// given.
#[derive(Debug)]
pub(crate) struct Stamps {
    next: u64,
    end: u64,
    /// The thread's shard and a random number, read once for the run (two
    /// thread-local reads per id were a quarter of a call's id costs).
    shard: u64,
    seed: u64,
}

impl Stamps {
    /// `n` stamps (at least 1), none earlier than `unix_ms`, after every
    /// stamp any thread handed out before.
    pub(crate) fn reserve(unix_ms: u64, n: usize) -> Self {
        let newest = LAST.iter().map(|c| c.0.load(Ordering::Relaxed)).max();
        Self::take(unix_ms, n, newest.unwrap_or(0))
    }

    /// `n` stamps (at least 1), none earlier than `unix_ms`, after
    /// `after` and after every stamp this thread's shard handed out
    /// before; other threads' are not looked at.
    pub(crate) fn reserve_after(unix_ms: u64, n: usize, after: u64) -> Self {
        Self::take(unix_ms, n, after)
    }

    fn take(unix_ms: u64, n: usize, after: u64) -> Self {
        let floor = ((unix_ms & 0xFFFF_FFFF_FFFF) << 12).max(after.saturating_add(1));
        let span = u64::try_from(n.max(1)).unwrap_or(u64::MAX >> 16);
        // Threads of one shard share its counter (more threads than
        // shards): the exchange keeps their stamps apart.
        let shard = current_shard();
        let own = &LAST[shard].0;
        let mut prev = own.load(Ordering::Relaxed);
        loop {
            let first = floor.max(prev + 1);
            let last = first + (span - 1);
            match own.compare_exchange_weak(prev, last, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    return Self {
                        next: first,
                        end: last + 1,
                        shard: shard as u64,
                        seed: random(),
                    };
                }
                Err(actual) => prev = actual,
            }
        }
    }

    /// Whether `n` more stamps are left, none earlier than `unix_ms`.
    pub(crate) fn cover(&self, unix_ms: u64, n: usize) -> bool {
        let left = self.end.saturating_sub(self.next);
        u64::try_from(n).is_ok_and(|n| n <= left) && self.next >> 12 >= unix_ms & 0xFFFF_FFFF_FFFF
    }

    /// The last stamp handed out of this run (the one before its first
    /// if none was).
    pub(crate) fn last_given(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// The next id of the run (past its end, ids stay unique but may
    /// sort after later ones).
    pub(crate) fn next_id(&mut self) -> Uuid {
        let stamp = self.next;
        self.next += 1;
        let ms = u128::from(stamp >> 12);
        let seq = u128::from(stamp & 0xFFF);
        // 58 random bits and the thread's shard: the stamp and the shard
        // make ids unique within the process, the random bits across
        // processes (the run's random seed, mixed with the stamp by an odd
        // multiplier, so each id of the run gets different bits).
        let mixed = self
            .seed
            .wrapping_add(stamp)
            .wrapping_mul(0x2545_F491_4F6C_DD1D);
        let rand = u128::from((mixed >> 2) & !(SHARDS as u64 - 1) | self.shard);
        Uuid::from_u128((ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_strictly_increasing_on_each_thread() {
        let ms = 1_700_000_000_000;
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || (0..10_000).map(|_| v7(ms)).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<Uuid> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        for per_thread in all.chunks(10_000) {
            assert!(per_thread.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(all.iter().all(|u| u.get_version_num() == 7));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        let later = v7(ms + 10_000_000);
        assert!(later > all[n - 1]);
    }

    #[test]
    fn ids_of_one_thread_name_one_shard() {
        let here = shard_of(v7(1_700_000_000_000));
        assert!((0..100).all(|_| shard_of(v7(1_700_000_000_000)) == here));
        let shards: std::collections::BTreeSet<usize> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let first = shard_of(v7(1_700_000_000_000));
                    assert!((0..100).all(|_| shard_of(v7(1_700_000_000_000)) == first));
                    first
                })
                .join()
                .unwrap()
            })
            .collect();
        // Each thread takes the next shard (other tests' threads may take
        // some in between, but never all in one pattern).
        assert!(shards.len() > 1);
    }

    #[test]
    fn a_run_of_stamps_sorts_in_order_between_the_ids_around_it() {
        let ms = 1_800_000_000_000;
        let before = v7(ms);
        let mut run = Stamps::reserve(ms, 3);
        let ids: Vec<Uuid> = (0..3).map(|_| run.next_id()).collect();
        let after = v7(ms);
        assert!(before < ids[0] && ids[0] < ids[1] && ids[1] < ids[2] && ids[2] < after);
        assert!(ids.iter().all(|u| u.get_version_num() == 7));
    }

    fn stamp_of(id: Uuid) -> u64 {
        let high = u64::try_from(id.as_u128() >> 64).unwrap();
        (high >> 16) << 12 | (high & 0xFFF)
    }

    #[test]
    fn a_floor_orders_a_local_run_and_a_reservation_sorts_after_every_thread() {
        let ms = 1_900_000_000_000;
        let on_thread = |f: fn() -> Uuid| std::thread::spawn(f).join().unwrap();
        // A run on another thread, far ahead of this thread's shard.
        let theirs = on_thread(|| {
            let mut run = Stamps::reserve_after(1_900_000_000_000, 100, 0);
            (0..100).map(|_| run.next_id()).last().unwrap()
        });
        // The same run going on here (moved between threads) stays in
        // order through its floor.
        let mut here = Stamps::reserve_after(ms, 2, stamp_of(theirs));
        assert_eq!(here.last_given(), stamp_of(theirs));
        let next = here.next_id();
        assert!(next > theirs);
        assert_eq!(here.last_given(), stamp_of(next));
        // A decision made on a third thread sorts after both.
        let decision = on_thread(|| v7(1_900_000_000_000));
        assert!(decision > next && decision > theirs);
    }
}

thread_local! {
    /// Days since the epoch and their calendar date, for [`now`].
    static TODAY: Cell<(i64, Option<chrono::NaiveDate>)> = const { Cell::new((i64::MIN, None)) };
}

/// One reading of the clock, as a date-time and as microseconds since
/// the epoch: the lifecycle needs both (records hold the first, ids, the
/// pause cache and durations the second), and turning a `DateTime` back
/// into a count walks the calendar again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    pub(crate) unix_us: i64,
}

impl Reading {
    /// Milliseconds since the epoch (0 before it).
    pub(crate) fn unix_ms(&self) -> u64 {
        u64::try_from(self.unix_us.div_euclid(1000)).unwrap_or(0)
    }

    /// Microseconds from `earlier` to this reading.
    pub(crate) fn micros_since(&self, earlier: i64) -> i64 {
        self.unix_us.saturating_sub(earlier)
    }
}

/// The current time, like `Utc::now()` but converting the day number to a
/// calendar date only when the day changes (that conversion is most of
/// `Utc::now()`'s cost).
pub(crate) fn read() -> Reading {
    use chrono::{NaiveDateTime, NaiveTime};
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let date = TODAY.with(|today| match today.get() {
        (d, Some(date)) if d == days => Some(date),
        _ => {
            let date = chrono::DateTime::from_timestamp(days * 86_400, 0).map(|t| t.date_naive());
            today.set((days, date));
            date
        }
    });
    let time = u32::try_from(second_of_day)
        .ok()
        .and_then(|s| NaiveTime::from_num_seconds_from_midnight_opt(s, since.subsec_nanos()));
    match (date, time) {
        (Some(date), Some(time)) => Reading {
            at: NaiveDateTime::new(date, time).and_utc(),
            unix_us: secs
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(since.subsec_micros())),
        },
        _ => Reading::of(chrono::Utc::now()),
    }
}

impl Reading {
    /// The reading of a time given as a date-time.
    pub(crate) fn of(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            at,
            unix_us: at.timestamp_micros(),
        }
    }
}

#[cfg(test)]
mod clock_tests {
    #[test]
    fn now_matches_chrono() {
        let a = chrono::Utc::now();
        let ours = super::read();
        let b = chrono::Utc::now();
        assert!(a <= ours.at && ours.at <= b, "{a} {} {b}", ours.at);
        assert_eq!(ours.unix_us, ours.at.timestamp_micros());
        assert_eq!(ours.unix_ms(), ours.at.timestamp_millis() as u64);
    }
}
