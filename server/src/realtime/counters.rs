//! The per-frame counters, `mkondo_frames_in_total` and
//! `mkondo_frames_out_total`, counted without sharing a cache line.
//!
//! Every push delivered counts a frame out. A metrics counter is one atomic
//! that every worker thread adds to, so under fan-out its cache line moves
//! between cores on nearly every delivery (about 1.5% of the server's CPU in a
//! profile of the fan-out benchmark). Here each thread adds to a slot of its
//! own; the sums go to the metrics recorder when `/metrics` is rendered
//! ([`publish`]), so a scrape reads the same totals as before.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// More slots than the server has worker threads, so that threads rarely share one.
const SLOTS: usize = 16;

/// A slot to itself: one cache line (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
struct Slot(AtomicU64);

struct Sharded([Slot; SLOTS]);

impl Sharded {
    const fn new() -> Self {
        Self([const { Slot(AtomicU64::new(0)) }; SLOTS])
    }

    fn add(&self, n: u64) {
        let slot = SLOT.with(|slot| *slot);
        self.0[slot].0.fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

static FRAMES_IN: Sharded = Sharded::new();
static FRAMES_OUT: Sharded = Sharded::new();
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

/// Client frames read.
pub fn frames_in(n: u64) {
    FRAMES_IN.add(n);
}

/// Server frames written (replies and pushes).
pub fn frames_out(n: u64) {
    FRAMES_OUT.add(n);
}

/// Hands the totals to the metrics recorder; called before rendering `/metrics`.
pub fn publish() {
    metrics::counter!("mkondo_frames_in_total").absolute(FRAMES_IN.sum());
    metrics::counter!("mkondo_frames_out_total").absolute(FRAMES_OUT.sum());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_are_summed() {
        let counter = Sharded::new();
        std::thread::scope(|s| {
            for _ in 0..(SLOTS + 4) {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                });
            }
        });
        counter.add(5);
        assert_eq!(counter.sum(), (SLOTS as u64 + 4) * 1000 + 5);
    }
}
