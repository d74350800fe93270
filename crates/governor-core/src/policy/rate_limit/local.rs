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

/// Per key: the times of the calls in the last window (window limits), or
/// the theoretical arrival time (GCRA), in nanoseconds since the policy's
/// base instant.
#[derive(Default)]
pub(super) struct State {
    logs: HashMap<Box<str>, VecDeque<u64>>,
    tats: HashMap<Box<str>, u64>,
}

impl State {
    pub(super) fn keys(&self) -> usize {
        self.logs.len() + self.tats.len()
    }

    /// Takes a cell of `limit` for `key` at `now`.
    pub(super) fn acquire(
        &mut self,
        key: &str,
        now: u64,
        limit: Limit,
        max_keys: usize,
    ) -> Result<(), Refusal> {
        match limit {
            Limit::Window { max_calls, window } => {
                let w = nanos(window);
                let fresh = !self.logs.contains_key(key);
                if fresh && self.logs.len() >= max_keys {
                    // Keys with no call inside the window have recovered.
                    self.logs
                        .retain(|_, log| log.back().is_some_and(|t| t + w > now));
                    if self.logs.len() >= max_keys {
                        return Err(Refusal::Full);
                    }
                }
                let log = self.logs.entry(key.into()).or_default();
                while log.front().is_some_and(|t| t + w <= now) {
                    log.pop_front();
                }
                if log.len() >= max_calls as usize {
                    let oldest = log.front().copied().unwrap_or(now);
                    return Err(Refusal::Limited((oldest + w).saturating_sub(now).max(1)));
                }
                log.push_back(now);
                Ok(())
            }
            Limit::Gcra {
                interval,
                tolerance,
            } => {
                let (t, tau) = (nanos(interval), nanos(tolerance));
                let tat = match self.tats.get(key) {
                    Some(tat) => (*tat).max(now),
                    None => {
                        if self.tats.len() >= max_keys {
                            self.tats.retain(|_, tat| *tat > now);
                            if self.tats.len() >= max_keys {
                                return Err(Refusal::Full);
                            }
                        }
                        now
                    }
                };
                if tat - now > tau {
                    return Err(Refusal::Limited(tat - now - tau));
                }
                self.tats.insert(key.into(), tat.saturating_add(t));
                Ok(())
            }
        }
    }

    /// Gives back the cell most recently taken for `key`.
    pub(super) fn release(&mut self, key: &str, limit: Limit) {
        match limit {
            Limit::Window { .. } => {
                if let Some(log) = self.logs.get_mut(key) {
                    log.pop_back();
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
