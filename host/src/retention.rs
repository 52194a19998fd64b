//! Retention: prunes finished events past `[store] retention` and dedupe records
//! past `dedupe_horizon`, in small batches, off the ack path.
//!
//! Owns: when pruning runs (every `retention / 4`, between once a second and
//! once a minute), how long one round goes on (until a batch comes back
//! short), and its pace (small batches, each followed by a pause as long as
//! it took), so a backlog of prunable events drains without starving ingest.
//! Never: decides what may be deleted (the store does: nothing pending or dead,
//! no tree with unfinished descendants), or blocks on a failing store: it waits
//! for the next round.

use std::time::Duration;

use tokio::sync::watch;

use crate::live::Shared;
use crate::metrics::METRICS;
use crate::store::{Retention, SharedStore};

/// Events per prune command. Small: the writer runs a prune in the same
/// group commit as the ingests queued beside it, so a batch's time is added to
/// their `202`.
pub const BATCH: usize = 100;

/// Runs until `stop` turns true.
pub(crate) async fn run(store: SharedStore, live: Shared, mut stop: watch::Receiver<bool>) {
    loop {
        let config = live.load().config.store.clone();
        tokio::select! {
            _ = tokio::time::sleep(config.prune_interval()) => {}
            _ = stop.changed() => return,
        }
        let policy = Retention {
            retention: config.retention,
            dedupe_horizon: config.dedupe_horizon,
            batch: BATCH,
        };
        loop {
            let started = tokio::time::Instant::now();
            match store.prune(policy).await {
                Ok(p) => {
                    METRICS.pruned.inc_by((p.events + p.dedupe) as u64);
                    if p.events > 0 || p.dedupe > 0 {
                        tracing::debug!(events = p.events, dedupe = p.dedupe, "pruned");
                    }
                    if p.events < BATCH && p.dedupe < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning failed; trying again next round");
                    break;
                }
            }
            // Let queued ingests in between two batches: pruning takes at most
            // about half of the writer's time (a batch's time, then as long again).
            tokio::time::sleep(started.elapsed().max(Duration::from_millis(5))).await;
            if *stop.borrow() {
                return;
            }
        }
    }
}
