//! The in-flight budget: bytes of request bodies held in memory at once, over
//! every request of the ingress (`server.max_inflight_bytes`).
//!
//! Owns: reserving and releasing bytes against the budget. A request with a
//! `Content-Length` reserves it before reading a byte; a chunked one grows its
//! reservation as it reads.
//! Never: reads bodies or answers requests; the ingress turns a refused
//! reservation into `503` with `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Reserves `bytes`, or `None` when that would pass the budget.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|n| *n <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes held against the budget until this drops.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `more` bytes; `false` (and nothing reserved) past the budget.
    pub(crate) fn grow(&mut self, more: u64) -> bool {
        let ok = self.budget.take(more);
        if ok {
            self.bytes += more;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_give_back_on_drop() {
        let b = Budget::new(100);
        let a = b.reserve(60).unwrap();
        assert!(b.reserve(41).is_none(), "past the budget");
        let mut c = b.reserve(0).unwrap();
        assert!(c.grow(40));
        assert!(!c.grow(1));
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        assert!(c.grow(60));
        drop(c);
        assert_eq!(b.used(), 0);
        assert!(b.reserve(u64::MAX).is_none(), "no overflow");
    }
}
