//! Leases: claims, replays and lease releases, and the event counts every
//! write moves.
//!
//! Owns: leasing due deliveries and forwards (`FOR UPDATE SKIP LOCKED`, so
//! replicas claiming at once never wait on each other nor share a row; lease
//! times from the database's clock), making entries pending again, giving a
//! replica's leases back, and the `SET` terms that keep an event's open and
//! dead counts and its status: the same rows and states as the SQLite backend.
//! Never: opens or commits transactions; the writer does, around whole batches.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use deadpool_postgres::ClientWrapper as Conn;
use uuid::Uuid;

use super::ingest::{EVENT_COLUMNS, event_row};
use super::{Fail, clean, decode_headers};
use crate::event::{Event, EventId};
use crate::store::{
    ClaimedDelivery, ClaimedForward, DeadId, DeliveryClaim, DeliveryId, ForwardId, LeaseToken,
};

/// Which workers a committed batch gave something to do.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Made {
    pub deliveries: bool,
    pub forwards: bool,
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
                .or_insert_with(|| Arc::new(event_row(r, 3)))
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
