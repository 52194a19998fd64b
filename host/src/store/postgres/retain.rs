//! Deleting: pruning finished event trees past the retention, expired dedupe
//! records, and purged dead letters.
//!
//! Owns: which rows may go and the order they go in (attempts, forwards,
//! deliveries, then events), inside a writer's transaction. The events of a
//! tree are locked before anything of them is deleted, so a replay running on
//! another replica at the same moment either waits and finds nothing, or wins
//! and keeps the tree.
//! Never: deletes anything pending or dead, or an event whose emitted
//! descendants are not finished (their emit budget lives on the root).

use std::sync::LazyLock;

use deadpool_postgres::ClientWrapper as Conn;
use uuid::Uuid;

use super::Fail;
use crate::store::DeadId;

/// Deletes the given events with their rows; returns how many events went.
async fn delete_events(c: &Conn, ids: &[Uuid]) -> Result<usize, Fail> {
    if ids.is_empty() {
        return Ok(0);
    }
    let rows = c
        .prepare_cached(
            "WITH a AS (DELETE FROM attempts WHERE event_id = ANY($1)),
                  o AS (DELETE FROM outbox WHERE event_id = ANY($1))
             DELETE FROM deliveries WHERE event_id = ANY($1)",
        )
        .await?;
    c.execute(&rows, &[&ids]).await?;
    let events = c
        .prepare_cached("DELETE FROM events WHERE id = ANY($1)")
        .await?;
    Ok(c.execute(&events, &[&ids]).await? as usize)
}

/// The members of the trees rooted at `roots` in which nothing is pending or
/// dead, locked.
async fn closed_members(c: &Conn, roots: &[Uuid]) -> Result<Vec<Uuid>, Fail> {
    let stmt = c
        .prepare_cached(
            "SELECT m.id FROM events m
             WHERE m.root_id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM events o
                               WHERE o.root_id = m.root_id AND o.status IN ('pending', 'dead'))
             ORDER BY m.id FOR UPDATE",
        )
        .await?;
    let rows = c.query(&stmt, &[&roots]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Deletes up to `batch` finished trees whose root arrived before `cutoff`
/// (unix ms); returns how many events went.
pub(super) async fn prune_events(c: &Conn, cutoff: i64, batch: usize) -> Result<usize, Fail> {
    // The partial index events_prunable holds exactly the finished roots;
    // roots another replica is pruning right now are skipped.
    let stmt = c
        .prepare_cached(
            "SELECT id FROM events
             WHERE root_id = id AND status IN ('done', 'unrouted') AND received_at < $1
             ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let roots: Vec<Uuid> = c
        .query(&stmt, &[&cutoff, &(batch as i64)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if roots.is_empty() {
        return Ok(0);
    }
    let members = closed_members(c, &roots).await?;
    delete_events(c, &members).await
}

/// Deletes up to `batch` dedupe records older than `cutoff` whose event is gone
/// (a kept event is always its own duplicate, however old).
pub(super) async fn prune_dedupe(c: &Conn, cutoff: i64, batch: usize) -> Result<usize, Fail> {
    let stmt = c
        .prepare_cached(
            "DELETE FROM dedupe WHERE (source, external_id) IN (
                 SELECT source, external_id FROM dedupe d
                 WHERE received_at < $1 AND NOT EXISTS (SELECT 1 FROM events WHERE id = d.event_id)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .await?;
    Ok(c.execute(&stmt, &[&cutoff, &(batch as i64)]).await? as usize)
}

/// Deletes one dead entry; then its event, if nothing else of it (and, for a
/// root, of its tree) is pending or dead. Returns (entry deleted, events deleted).
pub(super) async fn purge_one(c: &Conn, id: DeadId) -> Result<(bool, usize), Fail> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
        [("deliveries", "delivery_id"), ("outbox", "forward_id")].map(|(table, key)| {
            format!(
                "WITH x AS (DELETE FROM {table} WHERE id = $1 AND state = 'dead' RETURNING event_id),
                      a AS (DELETE FROM attempts WHERE {key} = $1 AND EXISTS (SELECT 1 FROM x))
                 UPDATE events SET {} FROM x WHERE events.id = x.event_id
                 RETURNING events.id, events.root_id, events.status",
                super::ops::adjust("0", "-1")
            )
        })
    });
    let (sql, key) = match id {
        DeadId::Delivery(d) => (&SQL[0], d.key()),
        DeadId::Forward(o) => (&SQL[1], o.key()),
    };
    let stmt = c.prepare_cached(sql).await?;
    let Some(row) = c.query_opt(&stmt, &[&key]).await? else {
        return Ok((false, 0));
    };
    let (event, root, status): (Uuid, Uuid, String) = (row.get(0), row.get(1), row.get(2));
    if status != "done" {
        return Ok((true, 0));
    }
    let gone = if root == event {
        let members = closed_members(c, &[root]).await?;
        delete_events(c, &members).await?
    } else {
        delete_events(c, &[event]).await?
    };
    Ok((true, gone))
}
