//! Copies of shared values, one per thread.
//!
//! An `Arc` every call clones (an action's name, its shared decision
//! list, fixed event data) keeps its count on one cache line; calls on
//! two cores then pass that line back and forth at every clone and drop,
//! which cost more than the rest of the call. Each thread (by its shard,
//! see [`crate::ids::shard_of`]) clones a copy of its own instead.

use std::sync::OnceLock;

use crate::ids::SHARDS;

/// One lazily made copy of a value per shard of threads, each on cache
/// lines of its own: a copy one thread writes (a lock in it) does not
/// take the line its neighbour reads.
pub(crate) struct PerThread<T>([Slot<T>; SHARDS]);

#[repr(align(128))]
struct Slot<T>(OnceLock<T>);

impl<T> PerThread<T> {
    /// No copies yet.
    pub(crate) const fn new() -> Self {
        Self([const { Slot(OnceLock::new()) }; SHARDS])
    }

    /// This thread's copy, made by `make` (on this thread, so in its
    /// memory) the first time.
    pub(crate) fn get(&self, make: impl FnOnce() -> T) -> &T {
        self.0[crate::ids::current_shard()].0.get_or_init(make)
    }
}

impl<T> Default for PerThread<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for PerThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerThread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_thread_gets_its_own_copy_every_time() {
        let copies: PerThread<Arc<str>> = PerThread::new();
        let here = Arc::clone(copies.get(|| Arc::from("a")));
        assert!(Arc::ptr_eq(&here, copies.get(|| Arc::from("b"))));
        let copies = Arc::new(copies);
        let there = {
            let copies = Arc::clone(&copies);
            std::thread::spawn(move || Arc::clone(copies.get(|| Arc::from("a"))))
                .join()
                .unwrap()
        };
        assert_eq!(here, there);
    }
}
