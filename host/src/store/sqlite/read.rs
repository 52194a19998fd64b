//! Read-only queries for the admin API, the dashboard and the CLI, on
//! connections of their own (WAL lets readers run beside the writer).
//!
//! Owns: an event's history, listing and filtering dead letters, row counts,
//! and resolving a replay or purge selection to ids (event listings: `listing`).
//! Never: writes; every change goes through the writer thread.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::listing::event_filter_sql;
use super::ops::{load_event, parse_event_id};
use crate::event::{Event, EventId, unix_ms};
use crate::store::{
    AttemptRecord, Backlog, DeadEntry, DeadFilter, DeadId, DeliveryId, DeliveryRecord, EventDetail,
    EventStatus, ForwardId, ForwardRecord, Selection, StoreCounts,
};

/// A query for a reader thread.
type Job = Box<dyn FnOnce(&Connection) + Send>;

/// A fixed set of reader threads, each with its own connection, fed from one
/// queue: reads never wait for the writer, the number of threads never changes
/// with the load, and a slow query holds up at most one of them.
pub(super) struct Readers {
    tx: std::sync::mpsc::Sender<Job>,
}

/// Reader threads per store.
const READERS: usize = 2;

impl Readers {
    /// Starts the reader threads (their connections are opened on their first job).
    pub(super) fn start(path: &Path) -> std::io::Result<Readers> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..READERS {
            let (rx, path) = (rx.clone(), path.to_path_buf());
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || reader_thread(&path, &rx))?;
        }
        Ok(Readers { tx })
    }

    /// Runs `f` on a reader thread; `None` when the readers are gone.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Option<rusqlite::Result<T>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = reply.send(f(c));
        });
        self.tx.send(job).ok()?;
        answer.await.ok()
    }
}

fn reader_thread(path: &Path, jobs: &Mutex<std::sync::mpsc::Receiver<Job>>) {
    let mut conn: Option<Connection> = None;
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if conn.is_none() {
            match super::schema::open(path).and_then(|c| {
                c.pragma_update(None, "query_only", true)?;
                let search = super::search::search_path(path);
                c.execute("ATTACH DATABASE ?1 AS search", [search.to_string_lossy()])?;
                Ok(c)
            }) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "a store reader cannot open the store");
                    // The job's reply is dropped: its caller sees the store unavailable.
                    drop(job);
                    continue;
                }
            }
        }
        if let Some(c) = &conn {
            job(c);
        }
    }
}

pub(super) fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(crate::event::from_unix_ms(ms)).to_string()
}

pub(super) fn status_of(s: &str) -> EventStatus {
    EventStatus::parse(s).unwrap_or(EventStatus::Pending)
}

/// An attempt with the delivery or forward it belongs to.
type Attempt = (Option<i64>, Option<i64>, AttemptRecord);

fn attempts_of(c: &Connection, event_id: &str) -> rusqlite::Result<Vec<Attempt>> {
    c.prepare_cached(
        "SELECT delivery_id, forward_id, attempt, at, duration_ms, outcome, error, version, status
         FROM attempts WHERE event_id = ?1 ORDER BY id",
    )?
    .query_map([event_id], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            AttemptRecord {
                attempt: r.get(2)?,
                at: rfc3339(r.get(3)?),
                duration_ms: r.get::<_, i64>(4)?.max(0) as u64,
                outcome: r.get(5)?,
                error: r.get(6)?,
                version: r.get(7)?,
                status: r.get(8)?,
            },
        ))
    })?
    .collect()
}

pub(super) fn event(c: &Connection, id: EventId) -> rusqlite::Result<Option<EventDetail>> {
    let key = id.to_string();
    let Some(event) = load_event(c, &key).optional()? else {
        return Ok(None);
    };
    let (status, parent): (String, Option<String>) = c
        .prepare_cached("SELECT status, parent_id FROM events WHERE id = ?1")?
        .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let children = c
        .prepare_cached("SELECT id FROM events WHERE parent_id = ?1 ORDER BY id")?
        .query_map([&key], |r| parse_event_id(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut history = attempts_of(c, &key)?;
    let mut take = |d: Option<i64>, o: Option<i64>| -> Vec<AttemptRecord> {
        let (mine, rest): (Vec<_>, Vec<_>) = history
            .drain(..)
            .partition(|(hd, ho, _)| (*hd, *ho) == (d, o));
        history = rest;
        mine.into_iter().map(|(_, _, a)| a).collect()
    };
    let now = unix_ms(std::time::SystemTime::now());
    type DRow = (
        i64,
        String,
        String,
        u32,
        Option<String>,
        Option<String>,
        bool,
    );
    let deliveries: Vec<DRow> = c
        .prepare_cached(
            "SELECT id, plugin, state, attempts, last_error, version, lease_until > ?2
             FROM deliveries WHERE event_id = ?1 ORDER BY id",
        )?
        .query_map(rusqlite::params![&key, now], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let deliveries = deliveries
        .into_iter()
        .map(
            |(id, plugin, state, attempts, last_error, version, leased)| DeliveryRecord {
                id: DeliveryId(id),
                plugin,
                state,
                leased,
                attempts,
                last_error,
                version,
                history: take(Some(id), None),
            },
        )
        .collect();
    type FRow = (
        i64,
        i64,
        String,
        String,
        String,
        u32,
        Option<u16>,
        Option<String>,
        bool,
    );
    let forwards: Vec<FRow> = c
        .prepare_cached(
            "SELECT id, delivery_id, plugin, url, state, attempts, status, last_error, lease_until > ?2
             FROM outbox WHERE event_id = ?1 ORDER BY id",
        )?
        .query_map(rusqlite::params![&key, now], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let forwards = forwards
        .into_iter()
        .map(
            |(id, delivery, plugin, url, state, attempts, status, last_error, leased)| {
                ForwardRecord {
                    id: ForwardId(id),
                    delivery_id: DeliveryId(delivery),
                    plugin,
                    url,
                    state,
                    leased,
                    attempts,
                    status,
                    last_error,
                    history: take(None, Some(id)),
                }
            },
        )
        .collect();
    Ok(Some(EventDetail {
        event,
        status: status_of(&status),
        parent_id: parent.and_then(|p| p.parse().ok()),
        children,
        deliveries,
        forwards,
    }))
}

const DEAD_DELIVERIES: &str = "
    SELECT x.id, 'delivery', x.event_id, e.source, e.event_type, x.plugin, NULL,
           x.attempts, x.last_error, x.updated_at
    FROM deliveries x JOIN events e ON e.id = x.event_id WHERE x.state = 'dead'";
const DEAD_FORWARDS: &str = "
    SELECT x.id, 'forward', x.event_id, e.source, e.event_type, x.plugin, x.url,
           x.attempts, x.last_error, x.updated_at
    FROM outbox x JOIN events e ON e.id = x.event_id WHERE x.state = 'dead'";

fn dead_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadEntry> {
    let n: i64 = r.get(0)?;
    let kind: String = r.get(1)?;
    let (id, kind) = if kind == "delivery" {
        (DeadId::Delivery(DeliveryId(n)), "delivery")
    } else {
        (DeadId::Forward(ForwardId(n)), "forward")
    };
    Ok(DeadEntry {
        id,
        kind,
        event_id: parse_event_id(r, 2)?,
        source: r.get(3)?,
        event_type: r.get(4)?,
        plugin: r.get(5)?,
        target: r.get(6)?,
        attempts: r.get(7)?,
        last_error: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// `AND …` terms of a dead filter, for both halves of the union (which use the
/// aliases `x` for the entry and `e` for its event).
fn dead_filter_sql(f: &DeadFilter, params: &mut Vec<Value>) -> String {
    let mut sql = String::new();
    let mut term = |col: &str, op: &str, v: Value| {
        params.push(v);
        sql.push_str(&format!(" AND {col} {op} ?{}", params.len()));
    };
    if let Some(p) = &f.plugin {
        term("x.plugin", "=", Value::Text(p.clone()));
    }
    if let Some(s) = &f.source {
        term("e.source", "=", Value::Text(s.clone()));
    }
    if let Some(t) = &f.event_type {
        term("e.event_type", "=", Value::Text(t.clone()));
    }
    if let Some(t) = f.older_than {
        term("x.updated_at", "<", Value::Integer(unix_ms(t)));
    }
    sql
}

pub(super) fn dead(
    c: &Connection,
    filter: &DeadFilter,
    limit: usize,
) -> rusqlite::Result<Vec<DeadEntry>> {
    let mut params = Vec::new();
    let fd = dead_filter_sql(filter, &mut params);
    let fo = dead_filter_sql(filter, &mut params);
    params.push(Value::Integer(limit as i64));
    let sql = format!(
        "{DEAD_DELIVERIES}{fd} UNION ALL {DEAD_FORWARDS}{fo} ORDER BY 10 DESC, 2, 1 DESC LIMIT ?{}",
        params.len()
    );
    c.prepare_cached(&sql)?
        .query_map(params_from_iter(params), dead_row)?
        .collect()
}

pub(super) fn dead_entry(
    c: &Connection,
    id: DeadId,
) -> rusqlite::Result<Option<(DeadEntry, Event)>> {
    let (base, key) = match id {
        DeadId::Delivery(d) => (DEAD_DELIVERIES, d.key()),
        DeadId::Forward(o) => (DEAD_FORWARDS, o.key()),
    };
    let Some(entry) = c
        .prepare_cached(&format!("{base} AND x.id = ?1"))?
        .query_row([key], dead_row)
        .optional()?
    else {
        return Ok(None);
    };
    let event = load_event(c, &entry.event_id.to_string())?;
    Ok(Some((entry, event)))
}

/// The ids a replay or purge of `selection` acts on.
pub(super) fn resolve(c: &Connection, selection: &Selection) -> rusqlite::Result<Vec<DeadId>> {
    let entries = |sql: String, params: Vec<Value>| -> rusqlite::Result<Vec<DeadId>> {
        c.prepare(&sql)?
            .query_map(params_from_iter(params), |r| {
                let n: i64 = r.get(1)?;
                Ok(if r.get::<_, String>(0)? == "d" {
                    DeadId::Delivery(DeliveryId(n))
                } else {
                    DeadId::Forward(ForwardId(n))
                })
            })?
            .collect()
    };
    match selection {
        Selection::Ids(ids) => Ok(ids.clone()),
        Selection::Dead { older_than } => {
            let cutoff = older_than.map_or(i64::MAX, unix_ms);
            entries(
                "SELECT 'd', id FROM deliveries WHERE state = 'dead' AND updated_at < ?1
                 UNION ALL SELECT 'o', id FROM outbox WHERE state = 'dead' AND updated_at < ?1"
                    .into(),
                vec![Value::Integer(cutoff)],
            )
        }
        Selection::Events(filter) => {
            let (terms, params) = event_filter_sql(filter);
            let sel = if terms.is_empty() {
                "SELECT e.id FROM events e WHERE e.status = 'dead'".to_string()
            } else {
                format!(
                    "SELECT e.id FROM events e WHERE e.status = 'dead' AND {}",
                    terms.join(" AND ")
                )
            };
            entries(
                format!(
                    "SELECT 'd', id FROM deliveries WHERE state = 'dead' AND event_id IN ({sel})
                     UNION ALL SELECT 'o', id FROM outbox WHERE state = 'dead' AND event_id IN ({sel})"
                ),
                params,
            )
        }
    }
}

pub(super) fn counts(c: &Connection) -> rusqlite::Result<StoreCounts> {
    let one = |sql: &str| -> rusqlite::Result<u64> {
        c.prepare_cached(sql)?
            .query_row([], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
    };
    // Pending and dead counts come from partial indexes; totals from the smallest index.
    let deliveries = one("SELECT count(*) FROM deliveries")?;
    let deliveries_pending = one("SELECT count(*) FROM deliveries WHERE state = 'pending'")?;
    let deliveries_dead = one("SELECT count(*) FROM deliveries WHERE state = 'dead'")?;
    let forwards = one("SELECT count(*) FROM outbox")?;
    let forwards_pending = one("SELECT count(*) FROM outbox WHERE state = 'pending'")?;
    let forwards_dead = one("SELECT count(*) FROM outbox WHERE state = 'dead'")?;
    let events = one("SELECT count(*) FROM events")?;
    let dedupe = one("SELECT count(*) FROM dedupe")?;
    let attempts = one("SELECT count(*) FROM attempts")?;
    let dead_by_plugin = c
        .prepare_cached(
            "SELECT plugin, count(*) FROM deliveries WHERE state = 'dead' GROUP BY plugin ORDER BY plugin",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(StoreCounts {
        events,
        deliveries_pending,
        deliveries_done: deliveries - deliveries_pending - deliveries_dead,
        deliveries_dead,
        forwards_pending,
        forwards_done: forwards - forwards_pending - forwards_dead,
        forwards_dead,
        dead_by_plugin,
        rows: vec![
            ("events".into(), events),
            ("deliveries".into(), deliveries),
            ("forwards".into(), forwards),
            ("attempts".into(), attempts),
            ("dedupe".into(), dedupe),
        ],
        bytes: Vec::new(),
    })
}

/// Pending deliveries and forwards, from their partial indexes.
pub(super) fn backlog(c: &Connection) -> rusqlite::Result<Backlog> {
    let one = |sql: &str| -> rusqlite::Result<u64> {
        c.prepare_cached(sql)?
            .query_row([], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
    };
    Ok(Backlog {
        deliveries: one("SELECT count(*) FROM deliveries WHERE state = 'pending'")?,
        forwards: one("SELECT count(*) FROM outbox WHERE state = 'pending'")?,
    })
}
