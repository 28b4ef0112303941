//! How many generations wait for a place in the batch, bounded by `--max-queue`. The HTTP
//! side reserves places before it queues a job (so a full queue is a 429 at once, before
//! any work); the engine thread releases them as it starts or drops the generations.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Admission {
    waiting: AtomicUsize,
    max: usize,
}

impl Admission {
    pub fn new(max: usize) -> Self {
        Admission {
            waiting: AtomicUsize::new(0),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Reserves `n` places; false (reserving none) when they do not all fit.
    pub fn try_reserve(&self, n: usize) -> bool {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                w.checked_add(n).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    /// Gives `n` places back.
    pub fn release(&self, n: usize) {
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(w.saturating_sub(n))
            });
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_come_back() {
        let a = Admission::new(4);
        assert!(a.try_reserve(3));
        assert!(!a.try_reserve(2), "3 + 2 is over 4");
        assert_eq!(a.waiting(), 3);
        assert!(a.try_reserve(1));
        a.release(2);
        assert_eq!(a.waiting(), 2);
        a.release(5);
        assert_eq!(a.waiting(), 0);
    }
}
