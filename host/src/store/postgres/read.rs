//! Read-only queries for the admin API, the dashboard and the CLI, on pooled
//! connections beside the writers.
//!
//! Owns: listing and filtering events (`q` matches whole words through the
//! GIN index on the body's `tsvector`) and dead letters, an event's history,
//! row counts and relation sizes, and resolving a replay or purge selection
//! to ids.
//! Never: writes; every change goes through a writer's batch.

use deadpool_postgres::ClientWrapper as Conn;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::ingest::{EVENT_COLUMNS, event_row};
use super::{Fail, NOW_MS};
use crate::event::{Event, EventId, unix_ms};
use crate::store::{
    AttemptRecord, DeadEntry, DeadFilter, DeadId, DeliveryId, DeliveryRecord, EventDetail,
    EventFilter, EventStatus, EventSummary, ForwardId, ForwardRecord, Page, Selection, StoreCounts,
};

type Param = Box<dyn ToSql + Sync + Send>;

/// Parameters of a query being built, numbered as they are pushed.
#[derive(Default)]
struct Params(Vec<Param>);

impl Params {
    /// Adds `v` and returns its placeholder (`$N`).
    fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(crate::event::from_unix_ms(ms)).to_string()
}

fn status_of(s: &str) -> EventStatus {
    EventStatus::parse(s).unwrap_or(EventStatus::Pending)
}

/// `WHERE` terms of an event filter, over `events e`.
fn event_filter_sql(f: &EventFilter, p: &mut Params) -> Vec<String> {
    let mut terms = Vec::new();
    if let Some(s) = &f.source {
        terms.push(format!("e.source = {}", p.push(s.clone())));
    }
    if let Some(t) = &f.event_type {
        terms.push(format!("e.event_type = {}", p.push(t.clone())));
    }
    if let Some(s) = f.status {
        terms.push(format!("e.status = {}", p.push(s.as_str())));
    }
    if let Some(t) = f.since {
        terms.push(format!(
            "e.id >= {}",
            p.push(EventId::floor_at(t).as_uuid())
        ));
    }
    if let Some(t) = f.until {
        terms.push(format!("e.id < {}", p.push(EventId::floor_at(t).as_uuid())));
    }
    if let Some(q) = f.q.as_deref().filter(|q| !q.trim().is_empty()) {
        // The same expression as the index events_text, so the index serves it.
        terms.push(format!(
            "to_tsvector('simple', left(e.body, 100000)) @@ plainto_tsquery('simple', {})",
            p.push(super::clean(q))
        ));
    }
    terms
}

fn where_clause(terms: &[String]) -> String {
    if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    }
}

pub(super) async fn events(
    c: &Conn,
    filter: &EventFilter,
    page: Page,
) -> Result<Vec<EventSummary>, Fail> {
    let mut p = Params::default();
    let mut terms = event_filter_sql(filter, &mut p);
    if let Some(before) = page.before {
        terms.push(format!("e.id < {}", p.push(before.as_uuid())));
    }
    let limit = p.push(page.limit as i64);
    let sql = format!(
        "SELECT e.id, e.source, e.event_type, e.external_id, e.received_at, e.status, e.parent_id, e.hops
         FROM events e {} ORDER BY e.id DESC LIMIT {limit}",
        where_clause(&terms)
    );
    let stmt = c.prepare_cached(&sql).await?;
    Ok(c.query(&stmt, &p.refs())
        .await?
        .iter()
        .map(|r| EventSummary {
            id: EventId::from(r.get::<_, Uuid>(0)),
            source: r.get(1),
            event_type: r.get(2),
            external_id: r.get(3),
            received_at: rfc3339(r.get(4)),
            status: status_of(r.get(5)),
            parent_id: r.get::<_, Option<Uuid>>(6).map(EventId::from),
            hops: r.get::<_, i32>(7).max(0) as u32,
        })
        .collect())
}

async fn load_event(c: &Conn, id: Uuid) -> Result<Option<(Event, String, Option<Uuid>)>, Fail> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, e.status, e.parent_id FROM events e WHERE e.id = $1"
        ))
        .await?;
    Ok(c.query_opt(&stmt, &[&id])
        .await?
        .map(|r| (event_row(&r, 0), r.get(8), r.get(9))))
}

/// An attempt with the delivery or forward it belongs to.
type Attempt = (Option<i64>, Option<i64>, AttemptRecord);

async fn attempts_of(c: &Conn, id: Uuid) -> Result<Vec<Attempt>, Fail> {
    let stmt = c
        .prepare_cached(
            "SELECT delivery_id, forward_id, attempt, at, duration_ms, outcome, error, version, status
             FROM attempts WHERE event_id = $1 ORDER BY id",
        )
        .await?;
    Ok(c.query(&stmt, &[&id])
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                AttemptRecord {
                    attempt: r.get::<_, i32>(2).max(0) as u32,
                    at: rfc3339(r.get(3)),
                    duration_ms: r.get::<_, i64>(4).max(0) as u64,
                    outcome: r.get(5),
                    error: r.get(6),
                    version: r.get(7),
                    status: r.get::<_, Option<i32>>(8).map(|s| s as u16),
                },
            )
        })
        .collect())
}

pub(super) async fn event(c: &Conn, id: EventId) -> Result<Option<EventDetail>, Fail> {
    let key = id.as_uuid();
    let Some((event, status, parent)) = load_event(c, key).await? else {
        return Ok(None);
    };
    let stmt = c
        .prepare_cached("SELECT id FROM events WHERE parent_id = $1 ORDER BY id")
        .await?;
    let children = c
        .query(&stmt, &[&key])
        .await?
        .iter()
        .map(|r| EventId::from(r.get::<_, Uuid>(0)))
        .collect();
    let mut history = attempts_of(c, key).await?;
    let mut take = |d: Option<i64>, o: Option<i64>| -> Vec<AttemptRecord> {
        let (mine, rest): (Vec<_>, Vec<_>) = history
            .drain(..)
            .partition(|(hd, ho, _)| (*hd, *ho) == (d, o));
        history = rest;
        mine.into_iter().map(|(_, _, a)| a).collect()
    };
    let stmt = c
        .prepare_cached(&format!(
            "SELECT id, plugin, state, attempts, last_error, version, lease_until > {NOW_MS}
             FROM deliveries WHERE event_id = $1 ORDER BY id"
        ))
        .await?;
    let deliveries = c
        .query(&stmt, &[&key])
        .await?
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            DeliveryRecord {
                id: DeliveryId(id),
                plugin: r.get(1),
                state: r.get(2),
                leased: r.get(6),
                attempts: r.get::<_, i32>(3).max(0) as u32,
                last_error: r.get(4),
                version: r.get(5),
                history: take(Some(id), None),
            }
        })
        .collect();
    let stmt = c
        .prepare_cached(&format!(
            "SELECT id, delivery_id, plugin, url, state, attempts, status, last_error, lease_until > {NOW_MS}
             FROM outbox WHERE event_id = $1 ORDER BY id"
        ))
        .await?;
    let forwards = c
        .query(&stmt, &[&key])
        .await?
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            ForwardRecord {
                id: ForwardId(id),
                delivery_id: DeliveryId(r.get(1)),
                plugin: r.get(2),
                url: r.get(3),
                state: r.get(4),
                leased: r.get(8),
                attempts: r.get::<_, i32>(5).max(0) as u32,
                status: r.get::<_, Option<i32>>(6).map(|s| s as u16),
                last_error: r.get(7),
                history: take(None, Some(id)),
            }
        })
        .collect();
    Ok(Some(EventDetail {
        event,
        status: status_of(&status),
        parent_id: parent.map(EventId::from),
        children,
        deliveries,
        forwards,
    }))
}

const DEAD_DELIVERIES: &str = "
    SELECT x.id, 'delivery' AS kind, x.event_id, e.source, e.event_type, x.plugin, NULL::text AS url,
           x.attempts, x.last_error, x.updated_at
    FROM deliveries x JOIN events e ON e.id = x.event_id WHERE x.state = 'dead'";
const DEAD_FORWARDS: &str = "
    SELECT x.id, 'forward' AS kind, x.event_id, e.source, e.event_type, x.plugin, x.url,
           x.attempts, x.last_error, x.updated_at
    FROM outbox x JOIN events e ON e.id = x.event_id WHERE x.state = 'dead'";

fn dead_row(r: &tokio_postgres::Row) -> DeadEntry {
    let n: i64 = r.get(0);
    let (id, kind) = if r.get::<_, &str>(1) == "delivery" {
        (DeadId::Delivery(DeliveryId(n)), "delivery")
    } else {
        (DeadId::Forward(ForwardId(n)), "forward")
    };
    DeadEntry {
        id,
        kind,
        event_id: EventId::from(r.get::<_, Uuid>(2)),
        source: r.get(3),
        event_type: r.get(4),
        plugin: r.get(5),
        target: r.get(6),
        attempts: r.get::<_, i32>(7).max(0) as u32,
        last_error: r.get(8),
        updated_at: r.get(9),
    }
}

/// `AND …` terms of a dead filter (aliases `x` for the entry, `e` for its event).
fn dead_filter_sql(f: &DeadFilter, p: &mut Params) -> String {
    let mut sql = String::new();
    if let Some(v) = &f.plugin {
        sql.push_str(&format!(" AND x.plugin = {}", p.push(v.clone())));
    }
    if let Some(v) = &f.source {
        sql.push_str(&format!(" AND e.source = {}", p.push(v.clone())));
    }
    if let Some(v) = &f.event_type {
        sql.push_str(&format!(" AND e.event_type = {}", p.push(v.clone())));
    }
    if let Some(t) = f.older_than {
        sql.push_str(&format!(" AND x.updated_at < {}", p.push(unix_ms(t))));
    }
    sql
}

pub(super) async fn dead(
    c: &Conn,
    filter: &DeadFilter,
    limit: usize,
) -> Result<Vec<DeadEntry>, Fail> {
    let mut p = Params::default();
    let fd = dead_filter_sql(filter, &mut p);
    let fo = dead_filter_sql(filter, &mut p);
    let limit = p.push(limit as i64);
    let sql = format!(
        "{DEAD_DELIVERIES}{fd} UNION ALL {DEAD_FORWARDS}{fo} ORDER BY 10 DESC, 2, 1 DESC LIMIT {limit}"
    );
    let stmt = c.prepare_cached(&sql).await?;
    Ok(c.query(&stmt, &p.refs())
        .await?
        .iter()
        .map(dead_row)
        .collect())
}

pub(super) async fn dead_entry(c: &Conn, id: DeadId) -> Result<Option<(DeadEntry, Event)>, Fail> {
    let (base, key) = match id {
        DeadId::Delivery(d) => (DEAD_DELIVERIES, d.key()),
        DeadId::Forward(o) => (DEAD_FORWARDS, o.key()),
    };
    let stmt = c.prepare_cached(&format!("{base} AND x.id = $1")).await?;
    let Some(entry) = c.query_opt(&stmt, &[&key]).await?.as_ref().map(dead_row) else {
        return Ok(None);
    };
    Ok(load_event(c, entry.event_id.as_uuid())
        .await?
        .map(|(event, _, _)| (entry, event)))
}

/// The ids a replay or purge of `selection` acts on.
pub(super) async fn resolve(c: &Conn, selection: &Selection) -> Result<Vec<DeadId>, Fail> {
    let (sql, p) = match selection {
        Selection::Ids(ids) => return Ok(ids.clone()),
        Selection::Dead { older_than } => {
            let mut p = Params::default();
            let cutoff = p.push(older_than.map_or(i64::MAX, unix_ms));
            (
                format!(
                    "SELECT 'd', id FROM deliveries WHERE state = 'dead' AND updated_at < {cutoff}
                     UNION ALL SELECT 'o', id FROM outbox WHERE state = 'dead' AND updated_at < {cutoff}"
                ),
                p,
            )
        }
        Selection::Events(filter) => {
            let mut p = Params::default();
            let mut terms = event_filter_sql(filter, &mut p);
            terms.insert(0, "e.status = 'dead'".into());
            let sel = format!("SELECT e.id FROM events e {}", where_clause(&terms));
            (
                format!(
                    "SELECT 'd', id FROM deliveries WHERE state = 'dead' AND event_id IN ({sel})
                     UNION ALL SELECT 'o', id FROM outbox WHERE state = 'dead' AND event_id IN ({sel})"
                ),
                p,
            )
        }
    };
    Ok(c.query(&sql, &p.refs())
        .await?
        .iter()
        .map(|r| {
            let n: i64 = r.get(1);
            if r.get::<_, &str>(0) == "d" {
                DeadId::Delivery(DeliveryId(n))
            } else {
                DeadId::Forward(ForwardId(n))
            }
        })
        .collect())
}

pub(super) async fn counts(c: &Conn) -> Result<StoreCounts, Fail> {
    let stmt = c
        .prepare_cached(
            "SELECT (SELECT count(*) FROM deliveries),
                    (SELECT count(*) FROM deliveries WHERE state = 'pending'),
                    (SELECT count(*) FROM deliveries WHERE state = 'dead'),
                    (SELECT count(*) FROM outbox),
                    (SELECT count(*) FROM outbox WHERE state = 'pending'),
                    (SELECT count(*) FROM outbox WHERE state = 'dead'),
                    (SELECT count(*) FROM events),
                    (SELECT count(*) FROM dedupe),
                    (SELECT count(*) FROM attempts)",
        )
        .await?;
    let row = c.query_one(&stmt, &[]).await?;
    let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
    let (deliveries, deliveries_pending, deliveries_dead) = (n(0), n(1), n(2));
    let (forwards, forwards_pending, forwards_dead) = (n(3), n(4), n(5));
    let (events, dedupe, attempts) = (n(6), n(7), n(8));
    let stmt = c
        .prepare_cached(
            "SELECT plugin, count(*) FROM deliveries WHERE state = 'dead' GROUP BY plugin ORDER BY plugin",
        )
        .await?;
    let dead_by_plugin = c
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect();
    // Table, indexes and TOAST together, per table.
    let stmt = c
        .prepare_cached(
            "SELECT t, pg_total_relation_size(t::regclass)
             FROM unnest(ARRAY['events', 'deliveries', 'outbox', 'attempts', 'dedupe']) AS t",
        )
        .await?;
    let bytes = c
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect();
    Ok(StoreCounts {
        events,
        deliveries_pending,
        deliveries_done: deliveries.saturating_sub(deliveries_pending + deliveries_dead),
        deliveries_dead,
        forwards_pending,
        forwards_done: forwards.saturating_sub(forwards_pending + forwards_dead),
        forwards_dead,
        dead_by_plugin,
        rows: vec![
            ("events".into(), events),
            ("deliveries".into(), deliveries),
            ("forwards".into(), forwards),
            ("attempts".into(), attempts),
            ("dedupe".into(), dedupe),
        ],
        bytes,
    })
}
