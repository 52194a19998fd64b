//! The single writer thread and group commit.
//!
//! Owns: draining queued commands, applying each inside its own savepoint of one
//! shared transaction, committing once (one fsync for the batch), then answering.
//! Never: answers a caller before the commit that holds its data has returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, oneshot};

use super::{
    ClaimedDelivery, ClaimedForward, Command, DeliveryOutcome, ForwardOutcome, Ingested,
    ReplayTarget, StoreError,
};
use crate::event::{Event, from_unix_ms, unix_ms};

/// Upper bound on commands per transaction, so one batch cannot grow without end.
const MAX_BATCH: usize = 1024;

/// Sends a command's result once the batch's fate is known.
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

pub(super) struct Writer {
    pub conn: Connection,
    pub queued: Arc<AtomicUsize>,
    pub work: Arc<Notify>,
}

fn reply_with<T: Send + 'static>(
    tx: oneshot::Sender<Result<T, StoreError>>,
    value: rusqlite::Result<T>,
) -> Reply {
    Box::new(move |commit_err| {
        let res = match (commit_err, value) {
            (Some(e), _) => Err(e.clone()),
            (None, Ok(v)) => Ok(v),
            (None, Err(e)) => Err(StoreError::Unavailable(e.to_string())),
        };
        let _ = tx.send(res);
    })
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let n = batch.len();
            let mut replies: Vec<Reply> = Vec::with_capacity(n);
            let mut wake = false;
            let committed = self.apply_batch(batch, &mut replies, &mut wake);
            let err = committed.err().map(|e| {
                tracing::error!(error = %e, batch = n, "store commit failed");
                StoreError::Unavailable(e.to_string())
            });
            self.queued.fetch_sub(n, Ordering::Relaxed);
            for r in replies {
                r(err.as_ref());
            }
            if wake && err.is_none() {
                self.work.notify_waiters();
            }
            crate::metrics::observe_batch(n);
        }
    }

    fn apply_batch(
        &mut self,
        batch: Vec<Command>,
        replies: &mut Vec<Reply>,
        wake: &mut bool,
    ) -> rusqlite::Result<()> {
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = unix_ms(SystemTime::now());
        for cmd in batch {
            // Each command gets a savepoint, so one failing command leaves no half
            // of itself behind and does not fail the others.
            let mut sp = tx.savepoint()?;
            let reply = match cmd {
                Command::Ingest {
                    event,
                    plugins,
                    reply,
                } => {
                    let r = ingest(&sp, &event, &plugins, None, now);
                    *wake |= matches!(r, Ok(Ingested::Stored { deliveries, .. }) if deliveries > 0);
                    finish(&mut sp, reply, r)
                }
                Command::ClaimDeliveries {
                    loaded,
                    limit,
                    lease,
                    reply,
                } => {
                    let r = claim_deliveries(&sp, &loaded, limit, lease, now);
                    finish(&mut sp, reply, r)
                }
                Command::FinishDelivery { id, outcome, reply } => {
                    let r = finish_delivery(&sp, id, outcome, now);
                    *wake |= matches!(r, Ok(true));
                    finish(&mut sp, reply, r.map(|_| ()))
                }
                Command::ClaimForwards {
                    limit,
                    lease,
                    reply,
                } => {
                    let r = claim_forwards(&sp, limit, lease, now);
                    finish(&mut sp, reply, r)
                }
                Command::FinishForward { id, outcome, reply } => {
                    let r = finish_forward(&sp, id, outcome, now);
                    finish(&mut sp, reply, r)
                }
                Command::Replay { target, reply } => {
                    let r = replay(&sp, &target, now);
                    *wake |= matches!(r, Ok(n) if n > 0);
                    finish(&mut sp, reply, r)
                }
            };
            sp.commit()?;
            replies.push(reply);
        }
        tx.commit()
    }
}

/// Rolls the savepoint back if the command failed; the reply is sent after commit.
fn finish<T: Send + 'static>(
    sp: &mut rusqlite::Savepoint<'_>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    r: rusqlite::Result<T>,
) -> Reply {
    if r.is_err() {
        let _ = sp.rollback();
    }
    reply_with(reply, r)
}

fn headers_json(h: &[(String, String)]) -> String {
    serde_json::to_string(h).unwrap_or_else(|_| "[]".into())
}

pub(super) fn headers_from_json(s: &str) -> Vec<(String, String)> {
    serde_json::from_str(s).unwrap_or_default()
}

fn ingest(
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

fn claim_deliveries(
    tx: &Connection,
    loaded: &[String],
    limit: usize,
    lease: Duration,
    now: i64,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let loaded = serde_json::to_string(loaded).unwrap_or_else(|_| "[]".into());
    let until = now + lease.as_millis() as i64;
    let mut stmt = tx.prepare_cached(
        "UPDATE deliveries SET lease_until = ?1
         WHERE id IN (SELECT id FROM deliveries
                      WHERE state = 'pending' AND due_at <= ?2 AND lease_until <= ?2
                        AND plugin IN (SELECT value FROM json_each(?3))
                      ORDER BY due_at, id LIMIT ?4)
         RETURNING id, event_id, plugin, attempts",
    )?;
    let rows: Vec<(i64, String, String, u32)> = stmt
        .query_map(params![until, now, loaded, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, event_id, plugin, attempts) in rows {
        let event = load_event(tx, &event_id)?;
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
fn finish_delivery(
    tx: &Connection,
    id: i64,
    outcome: DeliveryOutcome,
    now: i64,
) -> rusqlite::Result<bool> {
    match outcome {
        DeliveryOutcome::Done {
            version,
            forwards,
            emitted,
        } => {
            let changed = tx.execute(
                "UPDATE deliveries SET state = 'done', attempts = attempts + 1, lease_until = 0,
                 version = ?2, last_error = NULL, updated_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
                params![id, version, now],
            )?;
            if changed == 0 {
                // Already finished (a replay raced it): its effects exist once already.
                return Ok(false);
            }
            let (event_id, plugin): (String, String) = tx.query_row(
                "SELECT event_id, plugin FROM deliveries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO outbox (delivery_id, event_id, plugin, url, headers, body, state, due_at, updated_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
            )?;
            for f in &forwards {
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
            let mut made = forwards.iter().any(|f| f.refused.is_none());
            for e in &emitted {
                ingest(tx, &e.event, &e.plugins, Some(&e.parent_id), now)?;
                made |= !e.plugins.is_empty();
            }
            Ok(made)
        }
        DeliveryOutcome::Failed { error, retry_at } => {
            let state = if retry_at.is_some() {
                "pending"
            } else {
                "dead"
            };
            tx.execute(
                "UPDATE deliveries SET state = ?2, attempts = attempts + 1, lease_until = 0,
                 due_at = ?3, last_error = ?4, updated_at = ?5
                 WHERE id = ?1 AND state = 'pending'",
                params![id, state, retry_at.unwrap_or(now), error, now],
            )?;
            Ok(false)
        }
        DeliveryOutcome::Release { due_at } => {
            tx.execute(
                "UPDATE deliveries SET lease_until = 0, due_at = ?2 WHERE id = ?1 AND state = 'pending'",
                params![id, due_at],
            )?;
            Ok(false)
        }
    }
}

fn claim_forwards(
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

fn finish_forward(
    tx: &Connection,
    id: i64,
    outcome: ForwardOutcome,
    now: i64,
) -> rusqlite::Result<()> {
    match outcome {
        ForwardOutcome::Sent { status } => tx.execute(
            "UPDATE outbox SET state = 'done', attempts = attempts + 1, lease_until = 0,
             status = ?2, last_error = NULL, updated_at = ?3 WHERE id = ?1 AND state = 'pending'",
            params![id, status, now],
        )?,
        ForwardOutcome::Failed {
            error,
            status,
            retry_at,
        } => tx.execute(
            "UPDATE outbox SET state = ?2, attempts = attempts + 1, lease_until = 0, status = ?3,
             due_at = ?4, last_error = ?5, updated_at = ?6 WHERE id = ?1 AND state = 'pending'",
            params![
                id,
                if retry_at.is_some() {
                    "pending"
                } else {
                    "dead"
                },
                status,
                retry_at.unwrap_or(now),
                error,
                now
            ],
        )?,
        ForwardOutcome::Release => tx.execute(
            "UPDATE outbox SET lease_until = 0 WHERE id = ?1 AND state = 'pending'",
            [id],
        )?,
    };
    Ok(())
}

pub(super) fn replay(tx: &Connection, target: &ReplayTarget, now: i64) -> rusqlite::Result<usize> {
    const DELIVERY: &str = "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?1, lease_until = 0, updated_at = ?1 WHERE state = 'dead'";
    const FORWARD: &str = "UPDATE outbox SET state = 'pending', attempts = 0, due_at = ?1, lease_until = 0, updated_at = ?1 WHERE state = 'dead'";
    match target {
        ReplayTarget::All => Ok(tx.execute(DELIVERY, [now])? + tx.execute(FORWARD, [now])?),
        ReplayTarget::One(id) => match super::read::parse_dead_id(id) {
            Some(('d', n)) => tx.execute(&format!("{DELIVERY} AND id = ?2"), params![now, n]),
            Some((_, n)) => tx.execute(&format!("{FORWARD} AND id = ?2"), params![now, n]),
            None => Ok(0),
        },
    }
}
