//! Deleting: pruning finished event trees past the retention, expired dedupe
//! records, and purged dead letters.
//!
//! Owns: which rows may go and the order they go in (search index entry,
//! attempts, forwards, deliveries, then events), inside the writer's transaction.
//! Never: deletes anything pending or dead, or an event whose emitted
//! descendants are not finished (their emit budget lives on the root).

use rusqlite::{Connection, OptionalExtension, params};

use super::ops::adjust;
use crate::store::DeadId;

/// Deletes one event (not its descendants) with its rows.
fn delete_event(tx: &Connection, id: &str) -> rusqlite::Result<usize> {
    for sql in [
        // The indexer removes it from the search index (see `search`).
        "INSERT OR IGNORE INTO search_gone (seq) SELECT seq FROM events WHERE id = ?1",
        "DELETE FROM attempts WHERE event_id = ?1",
        "DELETE FROM outbox WHERE event_id = ?1",
        "DELETE FROM deliveries WHERE event_id = ?1",
    ] {
        tx.prepare_cached(sql)?.execute([id])?;
    }
    tx.prepare_cached("DELETE FROM events WHERE id = ?1")?
        .execute([id])
}

/// The emitted descendants of a root, through the partial index events_root
/// (which holds only events with a parent).
pub(super) const DESCENDANTS: &str =
    "SELECT id FROM events WHERE root_id = ?1 AND parent_id IS NOT NULL";

/// Whether a descendant of a root is pending or dead, read from events_root.
pub(super) const DESCENDANT_OPEN: &str = "SELECT EXISTS (SELECT 1 FROM events
     WHERE root_id = ?1 AND parent_id IS NOT NULL AND status IN ('pending', 'dead'))";

/// Deletes every event of the tree rooted at `root`, with their rows.
fn delete_tree(tx: &Connection, root: &str) -> rusqlite::Result<usize> {
    let descendants: Vec<String> = tx
        .prepare_cached(DESCENDANTS)?
        .query_map([root], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for id in &descendants {
        n += delete_event(tx, id)?;
    }
    Ok(n + delete_event(tx, root)?)
}

/// Whether anything of the tree rooted at `root` is still pending or dead.
fn tree_open(tx: &Connection, root: &str) -> rusqlite::Result<bool> {
    let own: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1 AND status IN ('pending', 'dead'))",
        )?
        .query_row([root], |r| r.get(0))?;
    if own {
        return Ok(true);
    }
    tx.prepare_cached(DESCENDANT_OPEN)?
        .query_row([root], |r| r.get(0))
}

/// The oldest finished roots. The partial index events_prunable holds exactly
/// them; it is named because without statistics the planner prefers
/// events_status and sorts every finished event (0.86 s a batch on a 400 MB
/// store, against 2.5 ms), which stalled ingest behind each prune.
pub(super) const PRUNABLE_ROOTS: &str = "SELECT id FROM events INDEXED BY events_prunable
     WHERE root_id = id AND status IN ('done', 'unrouted') AND received_at < ?1
     ORDER BY received_at LIMIT ?2";

/// Deletes up to `batch` finished trees whose root arrived before `cutoff`
/// (unix ms); returns how many events went.
pub(super) fn prune_events(tx: &Connection, cutoff: i64, batch: usize) -> rusqlite::Result<usize> {
    let roots: Vec<String> = tx
        .prepare_cached(PRUNABLE_ROOTS)?
        .query_map(params![cutoff, batch as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for root in roots {
        if !tree_open(tx, &root)? {
            n += delete_tree(tx, &root)?;
        }
    }
    Ok(n)
}

/// Deletes up to `batch` dedupe records older than `cutoff` whose event is gone
/// (a kept event is always its own duplicate, however old).
pub(super) fn prune_dedupe(tx: &Connection, cutoff: i64, batch: usize) -> rusqlite::Result<usize> {
    tx.prepare_cached(PRUNE_DEDUPE)?
        .execute(params![cutoff, batch as i64])
}

/// (`LIMIT ?2 + 0`: a bare parameter as a subquery's LIMIT makes SQLite
/// compile the statement again at every run; see `ops::CLAIM_DELIVERIES`.)
pub(super) const PRUNE_DEDUPE: &str = "DELETE FROM dedupe WHERE (source, external_id) IN (
     SELECT source, external_id FROM dedupe
     WHERE received_at < ?1 AND NOT EXISTS (SELECT 1 FROM events WHERE id = dedupe.event_id)
     LIMIT ?2 + 0)";

/// Deletes one dead entry; then its event, if nothing else of it (and, for a
/// root, of its tree) is pending or dead. Returns (entry deleted, events deleted).
pub(super) fn purge_one(tx: &Connection, id: DeadId) -> rusqlite::Result<(bool, usize)> {
    let (delete, attempts, key) = match id {
        DeadId::Delivery(d) => (
            "DELETE FROM deliveries WHERE id = ?1 AND state = 'dead' RETURNING event_id",
            "DELETE FROM attempts WHERE delivery_id = ?1",
            d.key(),
        ),
        DeadId::Forward(o) => (
            "DELETE FROM outbox WHERE id = ?1 AND state = 'dead' RETURNING event_id",
            "DELETE FROM attempts WHERE forward_id = ?1",
            o.key(),
        ),
    };
    let event_id: Option<String> = tx
        .prepare_cached(delete)?
        .query_row([key], |r| r.get(0))
        .optional()?;
    let Some(event_id) = event_id else {
        return Ok((false, 0));
    };
    tx.prepare_cached(attempts)?.execute([key])?;
    adjust(tx, &event_id, 0, -1)?;
    let (root, status): (String, String) = tx
        .prepare_cached("SELECT root_id, status FROM events WHERE id = ?1")?
        .query_row([&event_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if status != "done" {
        return Ok((true, 0));
    }
    let gone = if root == event_id {
        if tree_open(tx, &root)? {
            0
        } else {
            delete_tree(tx, &root)?
        }
    } else {
        delete_event(tx, &event_id)?
    };
    Ok((true, gone))
}
