//! LISTEN/NOTIFY: the other replicas' commits wake this one's workers.
//!
//! Owns: one connection kept apart from the pool (a pooled connection's
//! notifications would go to whoever holds it), LISTEN on the work channels,
//! and turning each notification from another replica into a wake-up. When the
//! connection is lost it reconnects with backoff, listens again, and wakes
//! every worker once, so that a full poll finds what was notified meanwhile.
//! Never: reads or writes rows; a notification only says "look again".

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::connect::Target;
use super::writer::{CHANNEL_DELIVERIES, CHANNEL_FORWARDS};
use crate::store::{Wake, Work};

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
