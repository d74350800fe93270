//! The in-process counters: O(1) per check (amortised), bounded keys.

use std::collections::{HashMap, VecDeque};

use super::Limit;

/// Why a call was refused.
pub(super) enum Refusal {
    /// The key's budget is spent; nanoseconds until a call would pass.
    Limited(u64),
    /// Every tracked key is still active and this one is new.
    Full,
}

/// Slots per window for limits that count in slots.
const SLOTS: u64 = Limit::WINDOW_SLOTS as u64;

/// A key's calls in the last window.
enum Window {
    /// The time of each call in the last window.
    Exact(VecDeque<u64>),
    /// Calls per slot of `window / SLOTS`.
    Slotted(Box<Slots>),
}

/// Counters for the `SLOTS + 1` slots that cover the last window: every
/// call counted is at most one window and one slot old, so the count is
/// never below the true one (a call may be refused up to one slot early,
/// never admitted beyond the limit).
struct Slots {
    width: u64,
    /// The slot index (time / width) of the newest counter.
    head: u64,
    counts: [u32; SLOTS as usize + 1],
    total: u64,
    last_call: u64,
}

/// The length of one slot of a window of `window` nanoseconds.
pub(super) fn slot_width(window: u64) -> u64 {
    window.div_ceil(SLOTS).max(1)
}

impl Slots {
    fn new(window: u64, now: u64) -> Self {
        let width = slot_width(window);
        Self {
            width,
            head: now / width,
            counts: [0; SLOTS as usize + 1],
            total: 0,
            last_call: now,
        }
    }

    fn ring(index: u64) -> usize {
        // The remainder is at most SLOTS, so it fits.
        (index % (SLOTS + 1)) as usize
    }

    /// Drops the counters of slots that left the window by `now`.
    fn advance(&mut self, now: u64) {
        let slot = now / self.width;
        if slot <= self.head {
            return;
        }
        let stale = (slot - self.head).min(SLOTS + 1);
        for k in 1..=stale {
            let c = &mut self.counts[Self::ring(self.head + k)];
            self.total -= u64::from(*c);
            *c = 0;
        }
        self.head = slot;
    }

    /// Takes up to `n` (at least 1) cells in the current slot; returns
    /// how many.
    fn acquire(&mut self, now: u64, max_calls: u32, n: u32) -> Result<u32, u64> {
        self.advance(now);
        let room = u64::from(max_calls).saturating_sub(self.total);
        if room == 0 {
            return Err(self.until_room(now));
        }
        let taken = u32::try_from(room.min(u64::from(n.max(1)))).unwrap_or(1);
        let count = &mut self.counts[Self::ring(self.head)];
        *count = count.saturating_add(taken);
        self.total += u64::from(taken);
        self.last_call = now;
        Ok(taken)
    }

    /// Nanoseconds until the oldest counted slot leaves the window.
    fn until_room(&self, now: u64) -> u64 {
        let oldest = (self.head.saturating_sub(SLOTS)..=self.head)
            .find(|&i| self.counts[Self::ring(i)] > 0)
            .unwrap_or(self.head);
        ((oldest + SLOTS + 1) * self.width)
            .saturating_sub(now)
            .max(1)
    }

    fn release(&mut self) {
        let c = &mut self.counts[Self::ring(self.head)];
        if *c > 0 {
            *c -= 1;
            self.total -= 1;
        }
    }
}

impl Window {
    fn new(limit: Limit, window: u64, now: u64) -> Self {
        if limit.counts_in_slots() {
            Self::Slotted(Box::new(Slots::new(window, now)))
        } else {
            Self::Exact(VecDeque::new())
        }
    }

    /// Takes a cell (up to `n` of a slotted window); returns how many.
    fn acquire(&mut self, now: u64, max_calls: u32, window: u64, n: u32) -> Result<u32, u64> {
        match self {
            Self::Exact(log) => {
                while log.front().is_some_and(|t| t + window <= now) {
                    log.pop_front();
                }
                if log.len() >= max_calls as usize {
                    let oldest = log.front().copied().unwrap_or(now);
                    return Err((oldest + window).saturating_sub(now).max(1));
                }
                log.push_back(now);
                Ok(1)
            }
            Self::Slotted(slots) => slots.acquire(now, max_calls, n),
        }
    }

    /// Whether no call inside the window is counted any more.
    fn recovered(&self, now: u64, window: u64) -> bool {
        match self {
            Self::Exact(log) => log.back().is_none_or(|t| t + window <= now),
            // The slot of the last call has left the counted range.
            Self::Slotted(s) => (s.last_call / s.width + SLOTS + 1) * s.width <= now,
        }
    }

    fn release(&mut self) {
        match self {
            Self::Exact(log) => {
                log.pop_back();
            }
            Self::Slotted(slots) => slots.release(),
        }
    }
}

/// Per key: its calls in the last window (window limits), or the
/// theoretical arrival time (GCRA), in nanoseconds since the policy's
/// base instant.
#[derive(Default)]
pub(super) struct State {
    logs: HashMap<Box<str>, Window>,
    tats: HashMap<Box<str>, u64>,
}

impl State {
    pub(super) fn keys(&self) -> usize {
        self.logs.len() + self.tats.len()
    }

    /// The calls counted for `key` under a window limit.
    #[cfg(test)]
    pub(super) fn logs_total(&self, key: &str) -> Option<u64> {
        match self.logs.get(key)? {
            Window::Exact(log) => u64::try_from(log.len()).ok(),
            Window::Slotted(s) => Some(s.total),
        }
    }

    /// Takes a cell of `limit` for `key` at `now`: up to `n` of a window
    /// counted in slots, one otherwise. Returns how many.
    pub(super) fn acquire(
        &mut self,
        key: &str,
        now: u64,
        limit: Limit,
        max_keys: usize,
        n: u32,
    ) -> Result<u32, Refusal> {
        match limit {
            Limit::Window { max_calls, window } => {
                let w = nanos(window);
                // A known key is looked up without allocating its name.
                if let Some(log) = self.logs.get_mut(key) {
                    return log.acquire(now, max_calls, w, n).map_err(Refusal::Limited);
                }
                if self.logs.len() >= max_keys {
                    // Keys with no call inside the window have recovered.
                    self.logs.retain(|_, log| !log.recovered(now, w));
                    if self.logs.len() >= max_keys {
                        return Err(Refusal::Full);
                    }
                }
                let mut log = Window::new(limit, w, now);
                let taken = log.acquire(now, max_calls, w, n);
                self.logs.insert(key.into(), log);
                taken.map_err(Refusal::Limited)
            }
            Limit::Gcra {
                interval,
                tolerance,
            } => {
                let (t, tau) = (nanos(interval), nanos(tolerance));
                if let Some(tat) = self.tats.get_mut(key) {
                    let at = (*tat).max(now);
                    if at - now > tau {
                        return Err(Refusal::Limited(at - now - tau));
                    }
                    *tat = at.saturating_add(t);
                    return Ok(1);
                }
                if self.tats.len() >= max_keys {
                    self.tats.retain(|_, tat| *tat > now);
                    if self.tats.len() >= max_keys {
                        return Err(Refusal::Full);
                    }
                }
                self.tats.insert(key.into(), now.saturating_add(t));
                Ok(1)
            }
        }
    }

    /// Gives back the cell most recently taken for `key`.
    pub(super) fn release(&mut self, key: &str, limit: Limit) {
        match limit {
            Limit::Window { .. } => {
                if let Some(log) = self.logs.get_mut(key) {
                    log.release();
                }
            }
            Limit::Gcra { interval, .. } => {
                if let Some(tat) = self.tats.get_mut(key) {
                    *tat = tat.saturating_sub(nanos(interval));
                }
            }
        }
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    fn window(max_calls: u32, secs: u64) -> Limit {
        Limit::Window {
            max_calls,
            window: Duration::from_secs(secs),
        }
    }

    /// Calls every `step` ns for `span` ns; returns the admitted times.
    fn admitted_times(limit: Limit, step: u64, span: u64) -> Vec<u64> {
        let mut state = State::default();
        (0..span / step)
            .map(|i| i * step)
            .filter(|&t| state.acquire("k", t, limit, 10, 1).is_ok())
            .collect()
    }

    fn most_in_any_window(times: &[u64], w: u64) -> usize {
        let mut most = 0;
        let mut start = 0;
        for (end, &t) in times.iter().enumerate() {
            while times[start] + w <= t {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }

    #[test]
    fn a_high_limit_never_admits_more_than_max_calls_in_any_window() {
        let max = Limit::EXACT_WINDOW_CALLS * 3;
        // 100 calls a second for 20 minutes against 3,072 per 60 s.
        let times = admitted_times(window(max, 60), SECOND / 100, 1_200 * SECOND);
        let most = most_in_any_window(&times, 60 * SECOND);
        assert!(most <= max as usize, "{most} calls in one window");
        // Slots only ever refuse early by one slot (60 s / 64) per window:
        // 20 minutes admit at least 20 windows' worth minus that.
        let floor = f64::from(max) * 20.0 * (1.0 - 2.0 / 64.0);
        assert!(times.len() as f64 >= floor, "{} admitted", times.len());
    }

    #[test]
    fn a_high_limit_keeps_a_fixed_number_of_counters() {
        let mut state = State::default();
        let limit = window(1_000_000, 3_600);
        for i in 0..200_000 {
            assert!(state.acquire("k", i * 1_000, limit, 10, 1).is_ok());
        }
        match state.logs.get("k") {
            Some(Window::Slotted(s)) => assert_eq!(s.total, 200_000),
            _ => panic!("a limit of a million calls must use slots"),
        }
    }

    #[test]
    fn a_full_slotted_window_says_when_the_oldest_slot_leaves() {
        let mut state = State::default();
        let limit = window(Limit::EXACT_WINDOW_CALLS + 1, 64);
        for _ in 0..=Limit::EXACT_WINDOW_CALLS {
            assert!(state.acquire("k", 0, limit, 10, 1).is_ok());
        }
        let Err(Refusal::Limited(wait)) = state.acquire("k", 10 * SECOND, limit, 10, 1) else {
            panic!("the window is full")
        };
        // Slot 0 leaves once slot 65 begins: 65 s after the first call.
        assert_eq!(wait, 55 * SECOND);
        assert!(state.acquire("k", 64 * SECOND, limit, 10, 1).is_err());
        assert!(state.acquire("k", 65 * SECOND, limit, 10, 1).is_ok());
        // Given back, the cell can be taken again at once.
        state.release("k", limit);
        assert!(state.acquire("k", 65 * SECOND, limit, 10, 1).is_ok());
    }

    #[test]
    fn a_slotted_window_hands_out_up_to_n_cells_within_its_room() {
        let mut state = State::default();
        let limit = window(Limit::EXACT_WINDOW_CALLS + 10, 64);
        let mut taken = 0;
        while let Ok(n) = state.acquire("k", SECOND, limit, 10, 64) {
            assert!((1..=64).contains(&n));
            taken += n;
        }
        assert_eq!(taken, Limit::EXACT_WINDOW_CALLS + 10);
        // An exact window and a rate take one at a time.
        let exact = window(10, 64);
        assert!(matches!(state.acquire("e", 0, exact, 10, 64), Ok(1)));
    }

    #[test]
    fn a_known_key_is_found_without_a_new_entry() {
        let mut state = State::default();
        let gcra = Limit::Gcra {
            interval: Duration::from_secs(1),
            tolerance: Duration::from_secs(2),
        };
        for t in 0..3 {
            assert!(state.acquire("k", t, gcra, 1, 1).is_ok());
        }
        assert!(matches!(
            state.acquire("k", 3, gcra, 1, 1),
            Err(Refusal::Limited(_))
        ));
        assert_eq!(state.keys(), 1);
    }
}
