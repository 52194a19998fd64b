//! The SQL of each write, run by a writer inside its batch's transaction.
//!
//! Owns: what ingest, claims, outcomes, replays and lease releases do to the
//! tables: the same rows, states, counts, emit budget and attempt history as
//! the SQLite backend. Most commands are one statement (data-modifying CTEs);
//! a batch's ingests are four statements whatever their number (arrays).
//! Claims skip rows other transactions hold (`FOR UPDATE SKIP LOCKED`); an
//! outcome is recorded only while its lease token is current.
//! Never: opens or commits transactions; the writer does, around whole batches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use deadpool_postgres::ClientWrapper as Conn;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Fail, clean, decode_headers, encode_headers};
use crate::event::{Event, EventId, from_unix_ms, unix_ms};
use crate::store::{
    AttemptTiming, ClaimedDelivery, ClaimedForward, DeadId, DeliveryClaim, DeliveryId,
    DeliveryOutcome, Finished, ForwardId, ForwardOutcome, Ingested, LeaseToken, NewForward,
};

/// Which workers a committed batch gave something to do.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Made {
    pub deliveries: bool,
    pub forwards: bool,
}

/// One event to ingest: the event, its plugins, and (for emitted events) its
/// parent and root.
pub(super) struct Item<'a> {
    pub event: &'a Event,
    pub plugins: &'a [String],
    pub parent: Option<(EventId, EventId)>,
}

/// `SET` terms moving an event's open and dead counts, and its status with them.
pub(super) fn adjust(open: &str, dead: &str) -> String {
    format!(
        "open_count = open_count + ({open}), dead_count = dead_count + ({dead}),
         status = CASE WHEN status = 'unrouted' THEN 'unrouted'
                       WHEN dead_count + ({dead}) > 0 THEN 'dead'
                       WHEN open_count + ({open}) > 0 THEN 'pending'
                       ELSE 'done' END"
    )
}

/// Stores events with their deliveries, or finds them duplicates, in four
/// statements for the whole slice. Dedupe records are inserted in key order,
/// so two replicas' batches never wait on each other in a cycle.
pub(super) async fn ingest(c: &Conn, items: &[Item<'_>], now: i64) -> Result<Vec<Ingested>, Fail> {
    let keyed: Vec<&Item<'_>> = items
        .iter()
        .filter(|i| i.event.external_id.is_some())
        .collect();
    let mut first_of: HashMap<(String, String), Uuid> = HashMap::new();
    let mut fresh: HashSet<Uuid> = items
        .iter()
        .filter(|i| i.event.external_id.is_none())
        .map(|i| i.event.id.as_uuid())
        .collect();
    if !keyed.is_empty() {
        let sources: Vec<String> = keyed.iter().map(|i| clean(&i.event.source)).collect();
        let externals: Vec<String> = keyed
            .iter()
            .map(|i| clean(i.event.external_id.as_deref().unwrap_or_default()))
            .collect();
        let ids: Vec<Uuid> = keyed.iter().map(|i| i.event.id.as_uuid()).collect();
        let ats: Vec<i64> = keyed.iter().map(|i| unix_ms(i.event.received_at)).collect();
        let stmt = c
            .prepare_cached(
                "INSERT INTO dedupe (source, external_id, event_id, received_at)
                 SELECT s, x, e, r FROM unnest($1::text[], $2::text[], $3::uuid[], $4::int8[]) AS u(s, x, e, r)
                 ORDER BY s, x
                 ON CONFLICT DO NOTHING RETURNING event_id",
            )
            .await?;
        for row in c.query(&stmt, &[&sources, &externals, &ids, &ats]).await? {
            fresh.insert(row.get(0));
        }
        let dup: Vec<usize> = (0..keyed.len())
            .filter(|&n| !fresh.contains(&ids[n]))
            .collect();
        if !dup.is_empty() {
            let s: Vec<&str> = dup.iter().map(|&n| sources[n].as_str()).collect();
            let x: Vec<&str> = dup.iter().map(|&n| externals[n].as_str()).collect();
            let stmt = c
                .prepare_cached(
                    "SELECT d.source, d.external_id, d.event_id FROM dedupe d
                     JOIN unnest($1::text[], $2::text[]) AS u(s, x) ON d.source = u.s AND d.external_id = u.x",
                )
                .await?;
            for row in c.query(&stmt, &[&s, &x]).await? {
                first_of.insert((row.get(0), row.get(1)), row.get(2));
            }
        }
    }
    let stored: Vec<&Item<'_>> = items
        .iter()
        .filter(|i| fresh.contains(&i.event.id.as_uuid()))
        .collect();
    if !stored.is_empty() {
        insert_events(c, &stored, now).await?;
    }
    items
        .iter()
        .map(|i| {
            let e = i.event;
            if fresh.contains(&e.id.as_uuid()) {
                return Ok(Ingested::Stored {
                    id: e.id,
                    deliveries: i.plugins.len(),
                });
            }
            let key = (
                clean(&e.source),
                clean(e.external_id.as_deref().unwrap_or_default()),
            );
            match first_of.get(&key) {
                Some(first) => Ok(Ingested::Duplicate {
                    id: EventId::from(*first),
                }),
                // The record that made it a duplicate was pruned in between.
                None => Err(Fail::Retry("a dedupe record changed under the batch")),
            }
        })
        .collect()
}

async fn insert_events(c: &Conn, items: &[&Item<'_>], now: i64) -> Result<(), Fail> {
    let n = items.len();
    let mut ids = Vec::with_capacity(n);
    let (mut sources, mut types, mut externals) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ats, mut headers, mut bodies, mut hops) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut parents, mut roots, mut statuses, mut opens) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut d_events, mut d_plugins) = (Vec::new(), Vec::new());
    for i in items {
        let e = i.event;
        let id = e.id.as_uuid();
        ids.push(id);
        sources.push(clean(&e.source));
        types.push(clean(&e.event_type));
        externals.push(e.external_id.as_deref().map(clean));
        ats.push(unix_ms(e.received_at));
        headers.push(encode_headers(&e.headers));
        bodies.push(clean(&e.body));
        hops.push(e.hops as i32);
        let (parent, root) = match i.parent {
            Some((p, r)) => (Some(p.as_uuid()), r.as_uuid()),
            None => (None, id),
        };
        parents.push(parent);
        roots.push(root);
        statuses.push(if i.plugins.is_empty() {
            "unrouted"
        } else {
            "pending"
        });
        opens.push(i.plugins.len() as i32);
        for p in i.plugins {
            d_events.push(id);
            d_plugins.push(clean(p));
        }
    }
    let stmt = c
        .prepare_cached(
            "WITH ev AS (
                 INSERT INTO events (id, source, event_type, external_id, received_at, headers, body,
                                     hops, parent_id, root_id, status, open_count)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[],
                                      $6::text[], $7::text[], $8::int4[], $9::uuid[], $10::uuid[],
                                      $11::text[], $12::int4[]))
             INSERT INTO deliveries (event_id, plugin, state, due_at, updated_at)
             SELECT e, p, 'pending', $13, $13 FROM unnest($14::uuid[], $15::text[]) AS u(e, p)",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &ids, &sources, &types, &externals, &ats, &headers, &bodies, &hops, &parents, &roots,
            &statuses, &opens, &now, &d_events, &d_plugins,
        ],
    )
    .await?;
    Ok(())
}

fn event_from(r: &Row, at: usize) -> Event {
    Event {
        id: EventId::from(r.get::<_, Uuid>(at)),
        source: r.get(at + 1),
        event_type: r.get(at + 2),
        external_id: r.get(at + 3),
        received_at: from_unix_ms(r.get(at + 4)),
        headers: decode_headers(r.get(at + 5)),
        body: r.get(at + 6),
        hops: r.get::<_, i32>(at + 7).max(0) as u32,
    }
}

/// The columns [`event_from`] reads, for events aliased `e`.
pub(super) const EVENT_COLUMNS: &str =
    "e.id, e.source, e.event_type, e.external_id, e.received_at, e.headers, e.body, e.hops";

pub(super) fn event_row(r: &Row, at: usize) -> Event {
    event_from(r, at)
}

/// Leases due deliveries of the named plugins, up to each one's limit, in one
/// statement that also reads their events.
pub(super) async fn claim_deliveries(
    c: &Conn,
    claim: &DeliveryClaim,
    owner: &str,
    now: i64,
) -> Result<Vec<ClaimedDelivery>, Fail> {
    let (names, limits): (Vec<String>, Vec<i64>) = claim
        .plugins
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| (clean(p), *n as i64))
        .unzip();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let until = now + claim.lease.as_millis() as i64;
    let token = LeaseToken::new();
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH picked AS (
                 SELECT x.id FROM unnest($1::text[], $2::int8[]) AS p(name, lim)
                 CROSS JOIN LATERAL (
                     SELECT d.id FROM deliveries d
                     WHERE d.plugin = p.name AND d.state = 'pending' AND d.due_at <= $3 AND d.lease_until <= $3
                     ORDER BY d.due_at LIMIT p.lim
                     FOR UPDATE SKIP LOCKED) x),
             claimed AS (
                 UPDATE deliveries d SET lease_until = $4, lease_token = $5, lease_owner = $6
                 FROM picked WHERE d.id = picked.id
                 RETURNING d.id, d.event_id, d.plugin, d.attempts)
             SELECT c.id, c.plugin, c.attempts, {EVENT_COLUMNS}
             FROM claimed c JOIN events e ON e.id = c.event_id ORDER BY c.id"
        )
    });
    let stmt = c.prepare_cached(&SQL).await?;
    let rows = c
        .query(&stmt, &[&names, &limits, &now, &until, &token.0, &owner])
        .await?;
    // An event routed to several plugins is decoded once per claim.
    let mut events: HashMap<Uuid, Arc<Event>> = HashMap::new();
    Ok(rows
        .iter()
        .map(|r| {
            let event = events
                .entry(r.get(3))
                .or_insert_with(|| Arc::new(event_from(r, 3)))
                .clone();
            ClaimedDelivery {
                id: DeliveryId(r.get(0)),
                token,
                plugin: r.get(1),
                attempts: r.get::<_, i32>(2).max(0) as u32,
                event,
            }
        })
        .collect())
}

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

pub(super) async fn claim_forwards(
    c: &Conn,
    limit: usize,
    lease: std::time::Duration,
    owner: &str,
    now: i64,
) -> Result<Vec<ClaimedForward>, Fail> {
    let until = now + lease.as_millis() as i64;
    let token = LeaseToken::new();
    let stmt = c
        .prepare_cached(
            "WITH picked AS (
                 SELECT id FROM outbox
                 WHERE state = 'pending' AND due_at <= $1 AND lease_until <= $1
                 ORDER BY due_at, id LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             UPDATE outbox o SET lease_until = $3, lease_token = $4, lease_owner = $5
             FROM picked WHERE o.id = picked.id
             RETURNING o.id, o.event_id, o.plugin, o.url, o.headers, o.body, o.attempts",
        )
        .await?;
    let rows = c
        .query(&stmt, &[&now, &(limit as i64), &until, &token.0, &owner])
        .await?;
    let mut out: Vec<ClaimedForward> = rows
        .iter()
        .map(|r| ClaimedForward {
            id: ForwardId(r.get(0)),
            token,
            event_id: EventId::from(r.get::<_, Uuid>(1)),
            plugin: r.get(2),
            url: r.get(3),
            headers: decode_headers(r.get(4)),
            body: String::from_utf8_lossy(r.get::<_, &[u8]>(5)).into_owned(),
            attempts: r.get::<_, i32>(6).max(0) as u32,
        })
        .collect();
    out.sort_by_key(|f| f.id);
    Ok(out)
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

/// Makes the given deliveries and forwards pending again with fresh attempts,
/// whatever their state but pending: one statement per table.
pub(super) async fn replay(
    c: &Conn,
    ids: &[DeadId],
    now: i64,
    made: &mut Made,
) -> Result<usize, Fail> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
        ["deliveries", "outbox"].map(|table| {
            format!(
                "WITH old AS (
                     SELECT id, event_id, state FROM {table}
                     WHERE id = ANY($1) AND state <> 'pending' ORDER BY id FOR UPDATE),
                 up AS (
                     UPDATE {table} t SET state = 'pending', attempts = 0, due_at = $2, lease_until = 0,
                         lease_token = 0, lease_owner = NULL, updated_at = $2
                     FROM old WHERE t.id = old.id
                     RETURNING old.event_id, old.state),
                 agg AS (
                     SELECT event_id, count(*)::int4 AS open,
                            (-count(*) FILTER (WHERE state = 'dead'))::int4 AS dead
                     FROM up GROUP BY event_id),
                 e AS (UPDATE events SET {} FROM agg WHERE events.id = agg.event_id)
                 SELECT count(*) FROM up",
                adjust("agg.open", "agg.dead")
            )
        })
    });
    let deliveries: Vec<i64> = ids
        .iter()
        .filter_map(|i| match i {
            DeadId::Delivery(d) => Some(d.0),
            DeadId::Forward(_) => None,
        })
        .collect();
    let forwards: Vec<i64> = ids
        .iter()
        .filter_map(|i| match i {
            DeadId::Forward(o) => Some(o.0),
            DeadId::Delivery(_) => None,
        })
        .collect();
    let mut n = 0;
    for (keys, sql, delivery) in [(&deliveries, &SQL[0], true), (&forwards, &SQL[1], false)] {
        if keys.is_empty() {
            continue;
        }
        let stmt = c.prepare_cached(sql).await?;
        let count: i64 = c.query_one(&stmt, &[keys, &now]).await?.get(0);
        if count > 0 {
            if delivery {
                made.deliveries = true;
            } else {
                made.forwards = true;
            }
        }
        n += count as usize;
    }
    Ok(n)
}

/// Gives back the leases `owner` holds; returns how many.
pub(super) async fn release_leases(c: &Conn, owner: &str) -> Result<usize, Fail> {
    let mut n = 0;
    for sql in [
        "UPDATE deliveries SET lease_until = 0, lease_token = 0, lease_owner = NULL
         WHERE lease_owner = $1 AND state = 'pending'",
        "UPDATE outbox SET lease_until = 0, lease_token = 0, lease_owner = NULL
         WHERE lease_owner = $1 AND state = 'pending'",
    ] {
        let stmt = c.prepare_cached(sql).await?;
        n += c.execute(&stmt, &[&owner]).await? as usize;
    }
    Ok(n)
}
