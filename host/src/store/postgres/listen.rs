//! LISTEN/NOTIFY: one replica's commits wake the others' workers.
//!
//! Owns: the notifier, which tells the other replicas that work became due,
//! after the commit that made it and outside it: a NOTIFY inside a data
//! transaction would hold PostgreSQL's global notification lock through that
//! transaction's WAL flush, and so serialize every replica's group commits. It
//! sends one NOTIFY per burst of commits, in a transaction of its own that does
//! not wait for the flush (a lost wake-up costs at most one poll interval).
//! And the listener: one connection kept apart from the pool (a pooled
//! connection's notifications would go to whoever holds it), LISTEN on the
//! work channels, and each notification from another replica turned into a
//! wake-up. When that connection is lost it reconnects with backoff, listens
//! again, and wakes every worker once, so that a full poll finds what was
//! notified meanwhile.
//! Never: reads or writes rows; a notification only says "look again".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc};

use super::connect::Target;
use super::ops::Made;
use crate::store::{Wake, Work};

/// The channels replicas listen on.
const CHANNEL_DELIVERIES: &str = "hookrouter_deliveries";
const CHANNEL_FORWARDS: &str = "hookrouter_forwards";

/// The notifier waits this long after a NOTIFY, so that a burst of commits
/// costs one.
const COALESCE: Duration = Duration::from_millis(5);

/// What the next NOTIFY will say; set by the writers after each commit.
#[derive(Debug, Default)]
pub(super) struct Notifier {
    deliveries: AtomicBool,
    forwards: AtomicBool,
    poke: Notify,
}

impl Notifier {
    /// Notes what a committed batch made due, for the other replicas.
    pub(super) fn tell(&self, made: Made) {
        if made.deliveries {
            self.deliveries.store(true, Ordering::Relaxed);
        }
        if made.forwards {
            self.forwards.store(true, Ordering::Relaxed);
        }
        if made.deliveries || made.forwards {
            self.poke.notify_one();
        }
    }
}

/// Sends what the writers noted, until the returned task is aborted.
pub(super) fn notifier(
    pool: Pool,
    owner: Arc<str>,
) -> (Arc<Notifier>, tokio::task::JoinHandle<()>) {
    let n = Arc::new(Notifier::default());
    let notes = n.clone();
    let task = tokio::spawn(async move {
        loop {
            notes.poke.notified().await;
            let d = notes.deliveries.swap(false, Ordering::Relaxed);
            let f = notes.forwards.swap(false, Ordering::Relaxed);
            let mut sql = String::from("BEGIN; SET LOCAL synchronous_commit = off; ");
            for (made, channel) in [(d, CHANNEL_DELIVERIES), (f, CHANNEL_FORWARDS)] {
                if made {
                    // The payload names the sender, whose own listener skips it.
                    sql.push_str(&format!("NOTIFY {channel}, '{owner}'; "));
                }
            }
            sql.push_str("COMMIT");
            let sent = match pool.get().await {
                Ok(c) => c.batch_execute(&sql).await.map_err(|e| super::describe(&e)),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "cannot notify the other replicas; they find the work by polling");
            }
            tokio::time::sleep(COALESCE).await;
        }
    });
    (n, task)
}

/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens until the returned task is aborted.
pub(super) fn spawn(
    target: Target,
    wake: Arc<Wake>,
    owner: Arc<str>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut down_since: Option<std::time::Instant> = None;
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let listening = match target.connect_listener(tx).await {
                Ok(client) => client
                    .batch_execute(&format!(
                        "LISTEN {CHANNEL_DELIVERIES}; LISTEN {CHANNEL_FORWARDS}"
                    ))
                    .await
                    .map(|()| client),
                Err(e) => Err(e),
            };
            match listening {
                Ok(client) => {
                    if let Some(t) = down_since.take() {
                        tracing::info!(after = ?t.elapsed(), "database listener reconnected");
                    }
                    backoff = Duration::from_millis(100);
                    // Whatever was notified while nobody listened is found by one full look.
                    wake.notify(Work::Deliveries);
                    wake.notify(Work::Forwards);
                    while let Some((channel, from)) = rx.recv().await {
                        if from == *owner {
                            continue; // this replica's own commit: its workers were woken already
                        }
                        match channel.as_str() {
                            CHANNEL_DELIVERIES => wake.notify(Work::Deliveries),
                            CHANNEL_FORWARDS => wake.notify(Work::Forwards),
                            _ => {}
                        }
                    }
                    drop(client);
                    tracing::warn!("database listener connection lost; reconnecting");
                    down_since = Some(std::time::Instant::now());
                }
                Err(e) => {
                    if down_since.is_none() {
                        tracing::warn!(error = %super::describe(&e), "database listener cannot connect; retrying");
                        down_since = Some(std::time::Instant::now());
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}
