//! The SQL of each store operation, run by the writer inside its transaction.
//!
//! Owns: what each command does to the tables (rows, states, leases).
//! Never: opens or commits transactions; the writer does, around whole batches.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::writer::Wake;
use super::{
    ClaimedDelivery, ClaimedForward, DeliveryOutcome, ForwardOutcome, Ingested, ReplayTarget,
};
use crate::event::{Event, from_unix_ms, unix_ms};

fn headers_json(h: &[(String, String)]) -> String {
    serde_json::to_string(h).unwrap_or_else(|_| "[]".into())
}

pub(super) fn headers_from_json(s: &str) -> Vec<(String, String)> {
    serde_json::from_str(s).unwrap_or_default()
}

pub(super) fn ingest(
    tx: &Connection,
    event: &Event,
    plugins: &[String],
    parent: Option<&str>,
    now: i64,
) -> rusqlite::Result<Ingested> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events
             (id, source, event_type, external_id, received_at, headers, body, hops, parent_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            event.id,
            event.source,
            event.event_type,
            event.external_id,
            unix_ms(event.received_at),
            headers_json(&event.headers),
            event.body,
            event.hops,
            parent,
        ])?;
    if inserted == 0 {
        let id: Option<String> = tx
            .prepare_cached(
                "SELECT id FROM events WHERE (source = ?1 AND external_id = ?2) OR id = ?3",
            )?
            .query_row(params![event.source, event.external_id, event.id], |r| {
                r.get(0)
            })
            .optional()?;
        return Ok(Ingested::Duplicate {
            id: id.unwrap_or_else(|| event.id.clone()),
        });
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO deliveries (event_id, plugin, state, due_at, updated_at)
         VALUES (?1, ?2, 'pending', ?3, ?3)",
    )?;
    for p in plugins {
        stmt.execute(params![event.id, p, now])?;
    }
    Ok(Ingested::Stored {
        id: event.id.clone(),
        deliveries: plugins.len(),
    })
}

pub(super) fn claim_deliveries(
    tx: &Connection,
    loaded: &[String],
    limit: usize,
    lease: Duration,
    now: i64,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let until = now + lease.as_millis() as i64;
    // One index range scan per loaded plugin (deliveries_claim), each bounded by
    // what is left of `limit`: the cost does not grow with the backlog, and the
    // deliveries of absent plugins are never looked at. Plugins take turns
    // starting first, so one plugin's backlog cannot starve the others.
    let mut stmt = tx.prepare_cached(
        "UPDATE deliveries SET lease_until = ?1
         WHERE id IN (SELECT id FROM deliveries
                      WHERE plugin = ?3 AND state = 'pending' AND due_at <= ?2 AND lease_until <= ?2
                      ORDER BY due_at LIMIT ?4)
         RETURNING id, event_id, plugin, attempts",
    )?;
    let mut order: Vec<&String> = loaded.iter().collect();
    fastrand::shuffle(&mut order);
    let mut rows: Vec<(i64, String, String, u32)> = Vec::new();
    for plugin in order {
        let left = limit.saturating_sub(rows.len());
        if left == 0 {
            break;
        }
        let claimed = stmt.query_map(params![until, now, plugin, left as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        for row in claimed {
            rows.push(row?);
        }
    }
    // An event routed to several plugins is read and decoded once per claim
    // (and copied only for its other deliveries).
    let mut uses: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *uses.entry(row.1.clone()).or_default() += 1;
    }
    let mut shared: HashMap<String, Event> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (id, event_id, plugin, attempts) in rows {
        let event = match shared.remove(&event_id) {
            Some(e) => e,
            None => load_event(tx, &event_id)?,
        };
        let left = uses.get_mut(&event_id).map_or(0, |n| {
            *n -= 1;
            *n
        });
        if left > 0 {
            shared.insert(event_id, event.clone());
        }
        out.push(ClaimedDelivery {
            id,
            plugin,
            attempts,
            event,
        });
    }
    out.sort_by_key(|c| c.id);
    Ok(out)
}

pub(super) fn load_event(conn: &Connection, id: &str) -> rusqlite::Result<Event> {
    conn.prepare_cached(
        "SELECT id, source, event_type, external_id, received_at, headers, body, hops
         FROM events WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(Event {
            id: r.get(0)?,
            source: r.get(1)?,
            event_type: r.get(2)?,
            external_id: r.get(3)?,
            received_at: from_unix_ms(r.get(4)?),
            headers: headers_from_json(&r.get::<_, String>(5)?),
            body: r.get(6)?,
            hops: r.get(7)?,
        })
    })
}

/// Returns whether new work became due (forwards or emitted deliveries).
pub(super) fn finish_delivery(
    tx: &Connection,
    id: i64,
    outcome: &DeliveryOutcome,
    now: i64,
) -> rusqlite::Result<Wake> {
    match outcome {
        DeliveryOutcome::Done {
            version,
            forwards,
            emitted,
        } => {
            // One statement marks it done and names what the effects belong to.
            let done: Option<(String, String)> = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 'done', attempts = attempts + 1, lease_until = 0,
                     version = ?2, last_error = NULL, updated_at = ?3
                     WHERE id = ?1 AND state = 'pending'
                     RETURNING event_id, plugin",
                )?
                .query_row(params![id, version, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((event_id, plugin)) = done else {
                // Already finished (a replay raced it): its effects exist once already.
                return Ok(Wake::default());
            };
            let mut stmt = tx.prepare_cached(
                "INSERT INTO outbox (delivery_id, event_id, plugin, url, headers, body, state, due_at, updated_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
            )?;
            for f in forwards {
                let state = if f.refused.is_some() {
                    "dead"
                } else {
                    "pending"
                };
                stmt.execute(params![
                    id,
                    event_id,
                    plugin,
                    f.url,
                    headers_json(&f.headers),
                    f.body,
                    state,
                    now,
                    f.refused
                ])?;
            }
            let mut made = Wake {
                forwards: forwards.iter().any(|f| f.refused.is_none()),
                deliveries: false,
            };
            for e in emitted {
                ingest(tx, &e.event, &e.plugins, Some(&e.parent_id), now)?;
                made.deliveries |= !e.plugins.is_empty();
            }
            Ok(made)
        }
        DeliveryOutcome::Failed { error, retry_at } => {
            tx.prepare_cached(
                "UPDATE deliveries SET state = ?2, attempts = attempts + 1, lease_until = 0,
                 due_at = ?3, last_error = ?4, updated_at = ?5
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                id,
                state_after(*retry_at),
                retry_at.unwrap_or(now),
                error,
                now
            ])?;
            Ok(Wake::default())
        }
        DeliveryOutcome::Release { due_at } => {
            tx.prepare_cached(
                "UPDATE deliveries SET lease_until = 0, due_at = ?2 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, due_at])?;
            Ok(Wake::default())
        }
    }
}

pub(super) fn claim_forwards(
    tx: &Connection,
    limit: usize,
    lease: Duration,
    now: i64,
) -> rusqlite::Result<Vec<ClaimedForward>> {
    let until = now + lease.as_millis() as i64;
    let mut stmt = tx.prepare_cached(
        "UPDATE outbox SET lease_until = ?1
         WHERE id IN (SELECT id FROM outbox
                      WHERE state = 'pending' AND due_at <= ?2 AND lease_until <= ?2
                      ORDER BY due_at, id LIMIT ?3)
         RETURNING id, event_id, plugin, url, headers, body, attempts",
    )?;
    let mut out: Vec<ClaimedForward> = stmt
        .query_map(params![until, now, limit as i64], |r| {
            Ok(ClaimedForward {
                id: r.get(0)?,
                event_id: r.get(1)?,
                plugin: r.get(2)?,
                url: r.get(3)?,
                headers: headers_from_json(&r.get::<_, String>(4)?),
                body: r.get(5)?,
                attempts: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    out.sort_by_key(|c| c.id);
    Ok(out)
}

pub(super) fn finish_forward(
    tx: &Connection,
    id: i64,
    outcome: &ForwardOutcome,
    now: i64,
) -> rusqlite::Result<()> {
    match outcome {
        ForwardOutcome::Sent { status } => tx
            .prepare_cached(
                "UPDATE outbox SET state = 'done', attempts = attempts + 1, lease_until = 0,
                 status = ?2, last_error = NULL, updated_at = ?3 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, status, now])?,
        ForwardOutcome::Failed {
            error,
            status,
            retry_at,
        } => tx
            .prepare_cached(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, lease_until = 0, status = ?3,
                 due_at = ?4, last_error = ?5, updated_at = ?6 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                id,
                state_after(*retry_at),
                status,
                retry_at.unwrap_or(now),
                error,
                now
            ])?,
        ForwardOutcome::Release => tx
            .prepare_cached("UPDATE outbox SET lease_until = 0 WHERE id = ?1 AND state = 'pending'")?
            .execute([id])?,
    };
    Ok(())
}

/// The state a failed attempt leaves behind: due again, or dead.
fn state_after(retry_at: Option<i64>) -> &'static str {
    if retry_at.is_some() {
        "pending"
    } else {
        "dead"
    }
}

pub(super) fn replay(tx: &Connection, target: &ReplayTarget, now: i64) -> rusqlite::Result<usize> {
    // `?2 IS NULL` replays every dead entry of the table, `?2 = id` just one.
    const DELIVERY: &str = "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?1, lease_until = 0, updated_at = ?1 WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)";
    const FORWARD: &str = "UPDATE outbox SET state = 'pending', attempts = 0, due_at = ?1, lease_until = 0, updated_at = ?1 WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)";
    let run = |sql: &str, id: Option<i64>| tx.prepare_cached(sql)?.execute(params![now, id]);
    match target {
        ReplayTarget::All => Ok(run(DELIVERY, None)? + run(FORWARD, None)?),
        ReplayTarget::One(id) => match super::read::parse_dead_id(id) {
            Some(('d', n)) => run(DELIVERY, Some(n)),
            Some((_, n)) => run(FORWARD, Some(n)),
            None => Ok(0),
        },
    }
}
