//! "Work is due" wake-ups between a backend and the workers that lease from it.
//!
//! Owns: one `Notify` per kind of work. A backend wakes them after a commit that
//! made work due (or when another replica says so); dispatch and the outbox wait
//! on them between claims; reload wakes dispatch when a plugin appears.
//! Never: carries data: a wake-up only says "look again".

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// What became due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Deliveries,
    Forwards,
}

#[derive(Debug, Default)]
pub struct Wake {
    deliveries: Notify,
    forwards: Notify,
}

impl Wake {
    fn of(&self, work: Work) -> &Notify {
        match work {
            Work::Deliveries => &self.deliveries,
            Work::Forwards => &self.forwards,
        }
    }

    /// Wakes every worker waiting for `work`.
    pub fn notify(&self, work: Work) {
        self.of(work).notify_waiters();
    }

    /// A future that completes at the next [`Wake::notify`] of `work`. Enable it
    /// (or poll it once) before looking for work, so a notify in between is kept.
    pub fn notified(&self, work: Work) -> Notified<'_> {
        self.of(work).notified()
    }
}
