//! Outcomes: recording what a delivery's or a forward's attempt did, with its
//! effects, if its lease is still current.
//!
//! Owns: done (forwards into the outbox, emitted events, the root's emit
//! budget), failed (due again, or dead), released; each one statement where it
//! can be (data-modifying CTEs), and the attempt history.
//! Never: records an outcome under a lease token that is no longer current
//! (the answer is `Stale` and nothing is written).

use std::sync::LazyLock;

use deadpool_postgres::ClientWrapper as Conn;
use uuid::Uuid;

use super::ingest::{Item, ingest};
use super::ops::{Made, adjust};
use super::{Fail, clean, encode_headers};
use crate::event::{EventId, unix_ms};
use crate::store::{
    AttemptTiming, DeliveryId, DeliveryOutcome, Finished, ForwardId, ForwardOutcome, LeaseToken,
    NewForward,
};

/// Records a delivery's outcome (if `token` still holds it) with its effects.
pub(super) async fn finish_delivery(
    c: &Conn,
    id: DeliveryId,
    token: LeaseToken,
    outcome: &DeliveryOutcome,
    now: i64,
    made: &mut Made,
) -> Result<Finished, Fail> {
    match outcome {
        DeliveryOutcome::Release { due_at } => {
            let stmt = c
                .prepare_cached(
                    "UPDATE deliveries SET lease_until = 0, lease_token = 0, lease_owner = NULL, due_at = $3
                     WHERE id = $1 AND lease_token = $2 AND state = 'pending'",
                )
                .await?;
            let n = c.execute(&stmt, &[&id.0, &token.0, due_at]).await?;
            made.deliveries |= n > 0;
            Ok(if n > 0 {
                Finished::Recorded
            } else {
                Finished::Stale
            })
        }
        DeliveryOutcome::Failed {
            error,
            kind,
            version,
            retry_at,
            timing,
        } => {
            let recorded = fail(
                c,
                (id, token),
                error,
                kind,
                version.as_deref(),
                *retry_at,
                timing,
                now,
            )
            .await?;
            Ok(if recorded {
                Finished::Recorded
            } else {
                Finished::Stale
            })
        }
        DeliveryOutcome::Done {
            version,
            forwards,
            emitted,
            max_emits,
            timing,
        } => {
            if emitted.is_empty() {
                let done = done(c, (id, token), version, forwards, timing, now).await?;
                made.forwards |= done.is_some() && forwards.iter().any(|f| f.refused.is_none());
                return Ok(if done.is_some() {
                    Finished::Recorded
                } else {
                    Finished::Stale
                });
            }
            // Emits spend the root's budget: lock the delivery, then spend or refuse.
            let stmt = c
                .prepare_cached(
                    "SELECT event_id FROM deliveries WHERE id = $1 AND lease_token = $2 AND state = 'pending'
                     FOR UPDATE",
                )
                .await?;
            let Some(row) = c.query_opt(&stmt, &[&id.0, &token.0]).await? else {
                return Ok(Finished::Stale);
            };
            let event_id: Uuid = row.get(0);
            let wanted = emitted.len() as i32;
            let stmt = c
                .prepare_cached(
                    "UPDATE events SET emits = emits + $2
                     WHERE id = (SELECT root_id FROM events WHERE id = $1) AND emits + $2 <= $3
                     RETURNING id",
                )
                .await?;
            let budget = (*max_emits).min(i32::MAX as u32) as i32;
            let spent = c.query_opt(&stmt, &[&event_id, &wanted, &budget]).await?;
            let Some(root) = spent else {
                let stmt = c
                    .prepare_cached(
                        "SELECT r.emits FROM events r JOIN events e ON r.id = e.root_id WHERE e.id = $1",
                    )
                    .await?;
                let used: i32 = c
                    .query_opt(&stmt, &[&event_id])
                    .await?
                    .map_or(0, |r| r.get(0));
                let over = Finished::EmitBudget {
                    used: used.max(0) as u32,
                    wanted: wanted as u32,
                    budget: *max_emits,
                };
                let error = format!(
                    "emit_budget: this run emitted {wanted} events, but the event it descends from has used {used} of its {max_emits} (plugins.max_emits_per_event); nothing of this run was stored. A replay runs against the same budget, so it fails again unless the plugin emits less"
                );
                fail(
                    c,
                    (id, token),
                    &error,
                    "emit_budget",
                    Some(version),
                    None,
                    timing,
                    now,
                )
                .await?;
                return Ok(over);
            };
            let root: Uuid = root.get(0);
            if done(c, (id, token), version, forwards, timing, now)
                .await?
                .is_none()
            {
                return Err(Fail::Retry("a locked delivery changed under its outcome"));
            }
            made.forwards |= forwards.iter().any(|f| f.refused.is_none());
            let parent = (EventId::from(event_id), EventId::from(root));
            let items: Vec<Item<'_>> = emitted
                .iter()
                .map(|e| Item {
                    event: &e.event,
                    plugins: &e.plugins,
                    parent: Some(parent),
                })
                .collect();
            ingest(c, &items, now).await?;
            made.deliveries |= emitted.iter().any(|e| !e.plugins.is_empty());
            Ok(Finished::Recorded)
        }
    }
}

/// Marks a delivery done with its attempt and forwards; `None` when the lease
/// was not current.
async fn done(
    c: &Conn,
    (id, token): (DeliveryId, LeaseToken),
    version: &str,
    forwards: &[NewForward],
    timing: &AttemptTiming,
    now: i64,
) -> Result<Option<Uuid>, Fail> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH d AS (
                 UPDATE deliveries SET state = 'done', attempts = attempts + 1, lease_until = 0,
                     lease_token = 0, lease_owner = NULL, version = $3, last_error = NULL, updated_at = $4
                 WHERE id = $1 AND lease_token = $2 AND state = 'pending'
                 RETURNING id, event_id, plugin, attempts),
             a AS (
                 INSERT INTO attempts (event_id, delivery_id, attempt, at, duration_ms, outcome, version)
                 SELECT event_id, id, attempts, $5, $6, 'ok', $3 FROM d),
             f AS (
                 INSERT INTO outbox (delivery_id, event_id, plugin, url, headers, body, state, due_at,
                                     updated_at, last_error)
                 SELECT d.id, d.event_id, d.plugin, u.url, u.headers, u.body, u.state, $4, $4, u.err
                 FROM d CROSS JOIN unnest($7::text[], $8::text[], $9::bytea[], $10::text[], $11::text[])
                     WITH ORDINALITY AS u(url, headers, body, state, err, n)
                 ORDER BY u.n),
             e AS (UPDATE events SET {} FROM d WHERE events.id = d.event_id)
             SELECT d.event_id FROM d",
            adjust("$12::int4", "$13::int4")
        )
    });
    let urls: Vec<String> = forwards.iter().map(|f| clean(&f.url)).collect();
    let headers: Vec<String> = forwards
        .iter()
        .map(|f| encode_headers(&f.headers))
        .collect();
    let bodies: Vec<&[u8]> = forwards.iter().map(|f| f.body.as_bytes()).collect();
    let states: Vec<&str> = forwards
        .iter()
        .map(|f| {
            if f.refused.is_some() {
                "dead"
            } else {
                "pending"
            }
        })
        .collect();
    let errors: Vec<Option<String>> = forwards
        .iter()
        .map(|f| f.refused.as_deref().map(clean))
        .collect();
    let dead = forwards.iter().filter(|f| f.refused.is_some()).count() as i32;
    let open = forwards.len() as i32 - dead - 1;
    let (at, ms) = attempt_times(timing);
    let stmt = c.prepare_cached(&SQL).await?;
    let version = clean(version);
    let row = c
        .query_opt(
            &stmt,
            &[
                &id.0, &token.0, &version, &now, &at, &ms, &urls, &headers, &bodies, &states,
                &errors, &open, &dead,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

fn attempt_times(t: &AttemptTiming) -> (i64, i64) {
    (unix_ms(t.started_at), t.duration.as_millis() as i64)
}

/// A failed attempt: due again at `retry_at`, or dead. Returns whether the
/// lease was current.
#[allow(clippy::too_many_arguments)]
async fn fail(
    c: &Conn,
    (id, token): (DeliveryId, LeaseToken),
    error: &str,
    kind: &str,
    version: Option<&str>,
    retry_at: Option<i64>,
    timing: &AttemptTiming,
    now: i64,
) -> Result<bool, Fail> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH d AS (
                 UPDATE deliveries SET state = $3, attempts = attempts + 1, lease_until = 0,
                     lease_token = 0, lease_owner = NULL, due_at = $4, last_error = $5, updated_at = $6
                 WHERE id = $1 AND lease_token = $2 AND state = 'pending'
                 RETURNING id, event_id, attempts),
             a AS (
                 INSERT INTO attempts (event_id, delivery_id, attempt, at, duration_ms, outcome, error, version)
                 SELECT event_id, id, attempts, $7, $8, $9, $5, $10 FROM d),
             e AS (UPDATE events SET {} FROM d WHERE events.id = d.event_id AND $12::int4 <> 0)
             SELECT 1 FROM d",
            adjust("$11::int4", "$12::int4")
        )
    });
    let (state, open, dead) = match retry_at {
        Some(_) => ("pending", 0i32, 0i32),
        None => ("dead", -1, 1),
    };
    let (at, ms) = attempt_times(timing);
    let (error, kind, version) = (clean(error), clean(kind), version.map(clean));
    let stmt = c.prepare_cached(&SQL).await?;
    let row = c
        .query_opt(
            &stmt,
            &[
                &id.0,
                &token.0,
                &state,
                &retry_at.unwrap_or(now),
                &error,
                &now,
                &at,
                &ms,
                &kind,
                &version,
                &open,
                &dead,
            ],
        )
        .await?;
    Ok(row.is_some())
}

pub(super) async fn finish_forward(
    c: &Conn,
    id: ForwardId,
    token: LeaseToken,
    outcome: &ForwardOutcome,
    now: i64,
    made: &mut Made,
) -> Result<Finished, Fail> {
    let (state, status, retry_at, error, timing) = match outcome {
        ForwardOutcome::Release => {
            let stmt = c
                .prepare_cached(
                    "UPDATE outbox SET lease_until = 0, lease_token = 0, lease_owner = NULL
                     WHERE id = $1 AND lease_token = $2 AND state = 'pending'",
                )
                .await?;
            let n = c.execute(&stmt, &[&id.0, &token.0]).await?;
            made.forwards |= n > 0;
            return Ok(if n > 0 {
                Finished::Recorded
            } else {
                Finished::Stale
            });
        }
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
            Some(clean(error)),
            timing,
        ),
    };
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH o AS (
                 UPDATE outbox SET state = $3, attempts = attempts + 1, lease_until = 0, lease_token = 0,
                     lease_owner = NULL, status = $4, due_at = $5, last_error = $6, updated_at = $7
                 WHERE id = $1 AND lease_token = $2 AND state = 'pending'
                 RETURNING id, event_id, attempts),
             a AS (
                 INSERT INTO attempts (event_id, forward_id, attempt, at, duration_ms, outcome, error, status)
                 SELECT event_id, id, attempts, $8, $9, $10, $6, $4 FROM o),
             e AS (UPDATE events SET {} FROM o
                   WHERE events.id = o.event_id AND ($11::int4 <> 0 OR $12::int4 <> 0))
             SELECT 1 FROM o",
            adjust("$11::int4", "$12::int4")
        )
    });
    let (open, dead) = match state {
        "done" => (-1i32, 0i32),
        "dead" => (-1, 1),
        _ => (0, 0),
    };
    let label = match (state, status) {
        ("done", _) => "sent",
        (_, Some(_)) => "http",
        _ => "error",
    };
    let (at, ms) = attempt_times(timing);
    let status = status.map(i32::from);
    let stmt = c.prepare_cached(&SQL).await?;
    let row = c
        .query_opt(
            &stmt,
            &[
                &id.0,
                &token.0,
                &state,
                &status,
                &retry_at.unwrap_or(now),
                &error,
                &now,
                &at,
                &ms,
                &label,
                &open,
                &dead,
            ],
        )
        .await?;
    Ok(if row.is_some() {
        Finished::Recorded
    } else {
        Finished::Stale
    })
}
