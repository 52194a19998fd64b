//! The SQL of each write, run by the writer inside its transaction.
//!
//! Owns: what each command does to the tables (rows, states, leases, the
//! events' counts and status, the root's emit budget, the attempt history).
//! Never: opens or commits transactions; the writer does, around whole batches.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::codec;
use super::writer::Wake;
use crate::event::{Event, EventId, from_unix_ms, unix_ms};
use crate::store::{
    AttemptTiming, ClaimedDelivery, ClaimedForward, DeadId, DeliveryClaim, DeliveryId,
    DeliveryOutcome, Emitted, Finished, ForwardId, ForwardOutcome, Ingested, LeaseToken, NewEvent,
    NewForward,
};

/// The forwards an outcome stored leased, and the event and plugin they belong to.
#[derive(Debug, Default)]
pub(super) struct Leased {
    pub ids: Vec<ForwardId>,
    pub of: Option<(EventId, String)>,
}

/// A lease taken as rows are inserted (the hand-off: work stored already
/// leased to this process, which runs it without claiming it).
pub(super) struct Hold<'a> {
    pub until: i64,
    pub token: LeaseToken,
    pub owner: &'a str,
}

/// Stores one event with its deliveries, or finds it a duplicate. With a
/// `hold`, the deliveries are inserted leased under it; their ids are returned.
pub(super) fn ingest(
    tx: &Connection,
    new: &NewEvent,
    parent: Option<(EventId, EventId)>,
    now: i64,
    hold: Option<&Hold<'_>>,
) -> rusqlite::Result<(Ingested, Vec<DeliveryId>)> {
    let event = &new.event;
    let id = event.id.to_string();
    if let Some(external) = &event.external_id {
        let fresh = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO dedupe (source, external_id, event_id, received_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                event.source,
                external,
                id,
                unix_ms(event.received_at)
            ])?;
        if fresh == 0 {
            let first: String = tx
                .prepare_cached(
                    "SELECT event_id FROM dedupe WHERE source = ?1 AND external_id = ?2",
                )?
                .query_row(params![event.source, external], |r| r.get(0))?;
            return Ok((
                Ingested::Duplicate {
                    id: first.parse().unwrap_or(event.id),
                },
                Vec::new(),
            ));
        }
    }
    let (parent_id, root_id) = match parent {
        Some((p, r)) => (Some(p.to_string()), r.to_string()),
        None => (None, id.clone()),
    };
    let n = new.plugins.len() as i64;
    tx.prepare_cached(
        "INSERT INTO events
         (id, source, event_type, external_id, received_at, headers, body, hops, parent_id,
          root_id, status, open_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        id,
        event.source,
        event.event_type,
        event.external_id,
        unix_ms(event.received_at),
        codec::encode(&event.headers),
        event.body,
        event.hops,
        parent_id,
        root_id,
        if n > 0 { "pending" } else { "unrouted" },
        n,
    ])?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO deliveries (event_id, plugin, state, due_at, updated_at, lease_until,
                                 lease_token, lease_owner)
         VALUES (?1, ?2, 'pending', max(?3, ?4), ?3, ?4, ?5, ?6)",
    )?;
    let mut leased = Vec::new();
    for p in &new.plugins {
        match hold {
            None => stmt.execute(params![id, p, now, 0, 0, None::<&str>])?,
            Some(h) => {
                let n = stmt.execute(params![id, p, now, h.until, h.token.0, h.owner])?;
                leased.push(DeliveryId(tx.last_insert_rowid()));
                n
            }
        };
    }
    Ok((
        Ingested::Stored {
            id: event.id,
            deliveries: new.plugins.len(),
        },
        leased,
    ))
}

/// Moves an event's counts of open (pending) and dead entries, and its status
/// with them.
pub(super) fn adjust(
    tx: &Connection,
    event_id: &str,
    open: i64,
    dead: i64,
) -> rusqlite::Result<()> {
    // (A delivery done with one forward leaves both counts as they were: the
    // row is not rewritten.)
    if open == 0 && dead == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE events SET open_count = open_count + ?2, dead_count = dead_count + ?3,
         status = CASE WHEN status = 'unrouted' THEN 'unrouted'
                       WHEN dead_count + ?3 > 0 THEN 'dead'
                       WHEN open_count + ?2 > 0 THEN 'pending'
                       ELSE 'done' END
         WHERE id = ?1",
    )?
    .execute(params![event_id, open, dead])?;
    Ok(())
}

/// Leases up to `?4` due deliveries of plugin `?3`. (`LIMIT ?4 + 0`, not
/// `LIMIT ?4`: with a bare parameter as a subquery's LIMIT, SQLite reads its
/// value while planning and compiles the statement again at every run.)
pub(super) const CLAIM_DELIVERIES: &str = "UPDATE deliveries
     SET lease_until = ?1, due_at = ?1, lease_token = ?5, lease_owner = ?6
     WHERE id IN (SELECT id FROM deliveries
                  WHERE plugin = ?3 AND state = 'pending' AND due_at <= ?2 AND lease_until <= ?2
                  ORDER BY due_at LIMIT ?4 + 0)
     RETURNING id, event_id, plugin, attempts";

/// Leases up to `?3` due forwards (`+ 0`: see [`CLAIM_DELIVERIES`]).
pub(super) const CLAIM_FORWARDS: &str = "UPDATE outbox
     SET lease_until = ?1, due_at = ?1, lease_token = ?4, lease_owner = ?5
     WHERE id IN (SELECT id FROM outbox
                  WHERE state = 'pending' AND due_at <= ?2 AND lease_until <= ?2
                  ORDER BY due_at, id LIMIT ?3 + 0)
     RETURNING id, event_id, plugin, url, headers, body, attempts";

pub(super) fn claim_deliveries(
    tx: &Connection,
    claim: &DeliveryClaim,
    owner: &str,
    now: i64,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let until = now + claim.lease.as_millis() as i64;
    let token = LeaseToken::new();
    // One index range scan per plugin (deliveries_due), bounded by its share:
    // the cost does not grow with the backlog, and the deliveries of plugins
    // not named are never looked at. A lease moves `due_at` to its end (here,
    // and when work is stored leased): leased work sits behind what is due, so
    // the scan never walks over work in flight (thousands of rows when outcomes
    // queue for the writer), and an expired lease is due again by itself.
    let mut stmt = tx.prepare_cached(CLAIM_DELIVERIES)?;
    let mut rows: Vec<(i64, String, String, u32)> = Vec::new();
    for (plugin, limit) in &claim.plugins {
        if *limit == 0 {
            continue;
        }
        let claimed = stmt.query_map(
            params![until, now, plugin, *limit as i64, token.0, owner],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        for row in claimed {
            rows.push(row?);
        }
    }
    // An event routed to several plugins is read and decoded once per claim.
    let mut events: HashMap<String, Arc<Event>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (id, event_id, plugin, attempts) in rows {
        let event = match events.get(&event_id) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(load_event(tx, &event_id)?);
                events.insert(event_id, e.clone());
                e
            }
        };
        out.push(ClaimedDelivery {
            id: DeliveryId(id),
            token,
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
    .query_row([id], event_row)
}

/// An `Event` from the first eight columns of `load_event`'s query.
pub(super) fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: parse_event_id(r, 0)?,
        source: r.get(1)?,
        event_type: r.get(2)?,
        external_id: r.get(3)?,
        received_at: from_unix_ms(r.get(4)?),
        headers: codec::decode(r.get_ref(5)?),
        body: r.get(6)?,
        hops: r.get(7)?,
    })
}

pub(super) fn parse_event_id(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<EventId> {
    let s: String = r.get(i)?;
    s.parse().map_err(|e: crate::event::BadEventId| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// One row of the attempt history.
struct Attempt<'a> {
    target: DeadId,
    attempt: u32,
    timing: &'a AttemptTiming,
    outcome: &'a str,
    error: Option<&'a str>,
    version: Option<&'a str>,
    status: Option<u16>,
}

fn record_attempt(tx: &Connection, event_id: &str, a: Attempt<'_>) -> rusqlite::Result<()> {
    let (delivery, forward) = match a.target {
        DeadId::Delivery(d) => (Some(d.0), None),
        DeadId::Forward(o) => (None, Some(o.0)),
    };
    tx.prepare_cached(
        "INSERT INTO attempts (event_id, delivery_id, forward_id, attempt, at, duration_ms,
                               outcome, error, version, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        event_id,
        delivery,
        forward,
        a.attempt,
        unix_ms(a.timing.started_at),
        a.timing.duration.as_millis() as i64,
        a.outcome,
        a.error,
        a.version,
        a.status,
    ])?;
    Ok(())
}

/// Records a delivery's outcome (if `token` still holds it) with its effects;
/// `wake` learns what work became due.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_delivery(
    tx: &Connection,
    id: DeliveryId,
    token: LeaseToken,
    outcome: &DeliveryOutcome,
    now: i64,
    wake: &mut Wake,
    hold: Option<&Hold<'_>>,
    leased: &mut Leased,
) -> rusqlite::Result<Finished> {
    if let DeliveryOutcome::Release { due_at } = outcome {
        let n = tx
            .prepare_cached(
                "UPDATE deliveries SET lease_until = 0, lease_token = 0, lease_owner = NULL, due_at = ?3
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
            )?
            .execute(params![id.0, token.0, due_at])?;
        wake.deliveries |= n > 0;
        return Ok(if n > 0 {
            Finished::Recorded
        } else {
            Finished::Stale
        });
    }
    // A run that emitted nothing is done whatever it forwards: the lease is
    // checked, the row written and read back, in one statement. (Emits are
    // first checked against the tree's budget, which may fail the run.)
    let done_at_once = match outcome {
        DeliveryOutcome::Done {
            version, emitted, ..
        } if emitted.is_empty() => Some(version),
        _ => None,
    };
    let current: Option<(String, String, u32)> = match done_at_once {
        Some(version) => mark_done(tx, id, token, version, now)?,
        // The lease is checked, and the row read, in one statement.
        None => tx
            .prepare_cached(
                "SELECT event_id, plugin, attempts FROM deliveries
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
            )?
            .query_row(params![id.0, token.0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?,
    };
    let Some((event_id, plugin, attempts)) = current else {
        return Ok(Finished::Stale);
    };
    let attempt = attempts + 1;
    match outcome {
        DeliveryOutcome::Done {
            version,
            forwards,
            emitted,
            max_emits,
            timing,
        } => {
            if !emitted.is_empty()
                && let Some(over) = spend_emits(tx, &event_id, emitted.len() as u32, *max_emits)?
            {
                let Finished::EmitBudget {
                    used,
                    wanted,
                    budget,
                } = over
                else {
                    unreachable!("spend_emits answers EmitBudget")
                };
                let error = format!(
                    "emit_budget: this run emitted {wanted} events, but the event it descends from has used {used} of its {budget} (plugins.max_emits_per_event); nothing of this run was stored. A replay runs against the same budget, so it fails again unless the plugin emits less"
                );
                fail(tx, id, &event_id, attempt, None, &error, now)?;
                record_attempt(
                    tx,
                    &event_id,
                    Attempt {
                        target: DeadId::Delivery(id),
                        attempt,
                        timing,
                        outcome: "emit_budget",
                        error: Some(&error),
                        version: Some(version),
                        status: None,
                    },
                )?;
                return Ok(over);
            }
            // (Read above under the same lease, in this transaction.)
            if done_at_once.is_none() && mark_done(tx, id, token, version, now)?.is_none() {
                return Ok(Finished::Stale);
            }
            record_attempt(
                tx,
                &event_id,
                Attempt {
                    target: DeadId::Delivery(id),
                    attempt,
                    timing,
                    outcome: "ok",
                    error: None,
                    version: Some(version),
                    status: None,
                },
            )?;
            let (open, dead) = insert_forwards(
                tx,
                id,
                &event_id,
                &plugin,
                forwards,
                now,
                hold,
                &mut leased.ids,
            )?;
            adjust(tx, &event_id, open - 1, dead)?;
            // Forwards handed off leased need no claim: no wake-up for them.
            wake.forwards |= open as usize > leased.ids.len();
            if !leased.ids.is_empty() {
                leased.of = event_id.parse().ok().map(|e| (e, plugin.clone()));
            }
            if !emitted.is_empty() {
                let parent: EventId = event_id.parse().unwrap_or_default();
                let root: String = tx
                    .prepare_cached("SELECT root_id FROM events WHERE id = ?1")?
                    .query_row([&event_id], |r| r.get(0))?;
                let root: EventId = root.parse().unwrap_or(parent);
                for e in emitted {
                    emit(tx, e, parent, root, now)?;
                    wake.deliveries |= !e.plugins.is_empty();
                    wake.events = true;
                }
            }
            Ok(Finished::Recorded)
        }
        DeliveryOutcome::Failed {
            error,
            kind,
            version,
            retry_at,
            timing,
        } => {
            fail(tx, id, &event_id, attempt, *retry_at, error, now)?;
            record_attempt(
                tx,
                &event_id,
                Attempt {
                    target: DeadId::Delivery(id),
                    attempt,
                    timing,
                    outcome: kind,
                    error: Some(error),
                    version: version.as_deref(),
                    status: None,
                },
            )?;
            Ok(Finished::Recorded)
        }
        DeliveryOutcome::Release { .. } => unreachable!("handled above"),
    }
}

/// Marks a delivery done if `token` still leases it, in one statement; its
/// event, plugin and the attempts before this one.
fn mark_done(
    tx: &Connection,
    id: DeliveryId,
    token: LeaseToken,
    version: &str,
    now: i64,
) -> rusqlite::Result<Option<(String, String, u32)>> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = 'done', attempts = attempts + 1, lease_until = 0,
         lease_token = 0, lease_owner = NULL, version = ?3, last_error = NULL, updated_at = ?4
         WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'
         RETURNING event_id, plugin, attempts - 1",
    )?
    .query_row(params![id.0, token.0, version, now], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .optional()
}

/// A failed attempt: due again at `retry_at`, or dead.
fn fail(
    tx: &Connection,
    id: DeliveryId,
    event_id: &str,
    attempt: u32,
    retry_at: Option<i64>,
    error: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = ?3, lease_until = 0, lease_token = 0,
         lease_owner = NULL, due_at = ?4, last_error = ?5, updated_at = ?6 WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        if retry_at.is_some() {
            "pending"
        } else {
            "dead"
        },
        attempt,
        retry_at.unwrap_or(now),
        error,
        now
    ])?;
    if retry_at.is_none() {
        adjust(tx, event_id, -1, 1)?;
    }
    Ok(())
}

/// Adds `n` descendants to the budget of the tree `event_id` belongs to;
/// `Some(EmitBudget)` (and nothing spent) when that would pass `budget`.
fn spend_emits(
    tx: &Connection,
    event_id: &str,
    n: u32,
    budget: u32,
) -> rusqlite::Result<Option<Finished>> {
    let spent = tx
        .prepare_cached(
            "UPDATE events SET emits = emits + ?2
             WHERE id = (SELECT root_id FROM events WHERE id = ?1) AND emits + ?2 <= ?3",
        )?
        .execute(params![event_id, n, budget])?;
    if spent > 0 {
        return Ok(None);
    }
    let used: u32 = tx
        .prepare_cached(
            "SELECT emits FROM events WHERE id = (SELECT root_id FROM events WHERE id = ?1)",
        )?
        .query_row([event_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    Ok(Some(Finished::EmitBudget {
        used,
        wanted: n,
        budget,
    }))
}

/// Inserts a run's forwards; returns how many are pending and how many dead
/// (refused by the forward policy). With a `hold`, the pending ones are
/// inserted leased, and their ids pushed to `leased` in the run's order.
#[allow(clippy::too_many_arguments)]
fn insert_forwards(
    tx: &Connection,
    delivery: DeliveryId,
    event_id: &str,
    plugin: &str,
    forwards: &[NewForward],
    now: i64,
    hold: Option<&Hold<'_>>,
    leased: &mut Vec<ForwardId>,
) -> rusqlite::Result<(i64, i64)> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (delivery_id, event_id, plugin, url, headers, body, state, due_at,
                             updated_at, last_error, lease_until, lease_token, lease_owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, max(?8, ?10), ?8, ?9, ?10, ?11, ?12)",
    )?;
    let (mut open, mut dead) = (0, 0);
    for f in forwards {
        let (state, hold) = if f.refused.is_some() {
            dead += 1;
            ("dead", None)
        } else {
            open += 1;
            ("pending", hold)
        };
        stmt.execute(params![
            delivery.0,
            event_id,
            plugin,
            f.url,
            codec::encode(&f.headers),
            f.body,
            state,
            now,
            f.refused,
            hold.map_or(0, |h| h.until),
            hold.map_or(0, |h| h.token.0),
            hold.map(|h| h.owner),
        ])?;
        if hold.is_some() {
            leased.push(ForwardId(tx.last_insert_rowid()));
        }
    }
    Ok((open, dead))
}

fn emit(
    tx: &Connection,
    e: &Emitted,
    parent: EventId,
    root: EventId,
    now: i64,
) -> rusqlite::Result<()> {
    let new = NewEvent {
        event: e.event.clone(),
        plugins: e.plugins.clone(),
    };
    ingest(tx, &new, Some((parent, root)), now, None)?;
    Ok(())
}

pub(super) fn claim_forwards(
    tx: &Connection,
    limit: usize,
    lease: std::time::Duration,
    owner: &str,
    now: i64,
) -> rusqlite::Result<Vec<ClaimedForward>> {
    let until = now + lease.as_millis() as i64;
    let token = LeaseToken::new();
    let mut stmt = tx.prepare_cached(CLAIM_FORWARDS)?;
    let mut out: Vec<ClaimedForward> = stmt
        .query_map(params![until, now, limit as i64, token.0, owner], |r| {
            Ok(ClaimedForward {
                id: ForwardId(r.get(0)?),
                token,
                event_id: parse_event_id(r, 1)?,
                plugin: r.get(2)?,
                url: r.get(3)?,
                headers: codec::decode(r.get_ref(4)?),
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
    id: ForwardId,
    token: LeaseToken,
    outcome: &ForwardOutcome,
    now: i64,
) -> rusqlite::Result<Finished> {
    if let ForwardOutcome::Release = outcome {
        let n = tx
            .prepare_cached(
                "UPDATE outbox SET lease_until = 0, lease_token = 0, lease_owner = NULL,
                                   due_at = min(due_at, ?3)
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
            )?
            .execute(params![id.0, token.0, now])?;
        return Ok(if n > 0 {
            Finished::Recorded
        } else {
            Finished::Stale
        });
    }
    let (state, status, retry_at, error, timing) = match outcome {
        ForwardOutcome::Sent { status, timing } => ("done", Some(*status), None, None, timing),
        ForwardOutcome::Failed {
            error,
            status,
            retry_at,
            timing,
        } => (
            if retry_at.is_some() {
                "pending"
            } else {
                "dead"
            },
            *status,
            *retry_at,
            Some(error.as_str()),
            timing,
        ),
        ForwardOutcome::Release => unreachable!("handled above"),
    };
    // The lease is checked, the row written and read back, in one statement.
    let current: Option<(String, u32)> = tx
        .prepare_cached(
            "UPDATE outbox SET state = ?3, attempts = attempts + 1, lease_until = 0, lease_token = 0,
             lease_owner = NULL, status = ?4, due_at = ?5, last_error = ?6, updated_at = ?7
             WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'
             RETURNING event_id, attempts",
        )?
        .query_row(
            params![
                id.0,
                token.0,
                state,
                status,
                retry_at.unwrap_or(now),
                error,
                now
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((event_id, attempt)) = current else {
        return Ok(Finished::Stale);
    };
    match state {
        "done" => adjust(tx, &event_id, -1, 0)?,
        "dead" => adjust(tx, &event_id, -1, 1)?,
        _ => {}
    }
    let label = match (state, status) {
        ("done", _) => "sent",
        (_, Some(_)) => "http",
        _ => "error",
    };
    record_attempt(
        tx,
        &event_id,
        Attempt {
            target: DeadId::Forward(id),
            attempt,
            timing,
            outcome: label,
            error,
            version: None,
            status,
        },
    )?;
    Ok(Finished::Recorded)
}

/// Makes one delivery or forward pending again with fresh attempts, whatever
/// its state but pending; returns whether it did.
pub(super) fn replay_one(tx: &Connection, id: DeadId, now: i64) -> rusqlite::Result<bool> {
    let (table, key) = match id {
        DeadId::Delivery(d) => ("deliveries", d.0),
        DeadId::Forward(o) => ("outbox", o.0),
    };
    let (read, write) = if table == "deliveries" {
        (
            "SELECT event_id, state FROM deliveries WHERE id = ?1",
            "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?2, lease_until = 0,
             lease_token = 0, lease_owner = NULL, updated_at = ?2 WHERE id = ?1",
        )
    } else {
        (
            "SELECT event_id, state FROM outbox WHERE id = ?1",
            "UPDATE outbox SET state = 'pending', attempts = 0, due_at = ?2, lease_until = 0,
             lease_token = 0, lease_owner = NULL, updated_at = ?2 WHERE id = ?1",
        )
    };
    // The old state decides how the event's counts move.
    let old: Option<(String, String)> = tx
        .prepare_cached(read)?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((event_id, old)) = old.filter(|(_, s)| s != "pending") else {
        return Ok(false);
    };
    tx.prepare_cached(write)?.execute(params![key, now])?;
    adjust(tx, &event_id, 1, if old == "dead" { -1 } else { 0 })?;
    Ok(true)
}

/// Gives back the leases `owner` holds, or every lease with `None` (a store
/// opened after its last process stopped); what they held is due now. Returns
/// how many. Only pending rows hold leases, so this reads the pending rows'
/// partial indexes (there is no index on the owner: see the schema's 4 -> 5).
pub(super) fn release_leases(
    tx: &Connection,
    owner: Option<&str>,
    now: i64,
) -> rusqlite::Result<usize> {
    let mut n = 0;
    for (table, index) in [("deliveries", "deliveries_due"), ("outbox", "outbox_due")] {
        n += tx
            .prepare_cached(&format!(
                "UPDATE {table} INDEXED BY {index}
                 SET lease_until = 0, lease_token = 0, lease_owner = NULL, due_at = min(due_at, ?2)
                 WHERE state = 'pending' AND lease_until != 0 AND (?1 IS NULL OR lease_owner = ?1)"
            ))?
            .execute(params![owner, now])?;
    }
    Ok(n)
}
