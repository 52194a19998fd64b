//! Ingest: new events with their deliveries, or duplicates, a batch at a time.
//!
//! Owns: the dedupe check (the primary key of `dedupe`, `ON CONFLICT DO
//! NOTHING`: a provider's retry that lands on another replica, even in the
//! same instant, is a duplicate) and inserting events and deliveries; four
//! statements for a whole batch, whatever its size (arrays). Emitted events go
//! through here too, with their parent and root.
//! Never: commits; the writer does, around the batch.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::ClientWrapper as Conn;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Fail, clean, decode_headers, encode_headers};
use crate::event::{Event, EventId, from_unix_ms, unix_ms};
use crate::store::Ingested;

/// One event to ingest: the event, its plugins, and (for emitted events) its
/// parent and root.
pub(super) struct Item<'a> {
    pub event: &'a Event,
    pub plugins: &'a [String],
    pub parent: Option<(EventId, EventId)>,
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
