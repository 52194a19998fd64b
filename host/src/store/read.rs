//! Read-only queries for the admin API and the `dead` commands.
//!
//! Owns: queries over events, deliveries and the outbox, on a connection of its own
//! (WAL lets readers run beside the writer).
//! Never: writes; every change goes through the writer thread.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::ops::load_event;
use crate::event::Event;

/// A dead delivery (`d-N`) or a dead forward (`o-N`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadEntry {
    pub id: String,
    /// `delivery` (a plugin gave up) or `forward` (the outbox gave up).
    pub kind: &'static str,
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    pub plugin: String,
    /// The forward's URL, for `forward` entries.
    pub target: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Unix milliseconds of the last attempt.
    pub updated_at: i64,
}

/// One delivery of an event, for `GET /admin/events/{id}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub plugin: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub version: Option<String>,
}

/// An event with its deliveries.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event: Event,
    pub deliveries: Vec<DeliveryRow>,
}

/// Row counts by table and state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StoreCounts {
    pub events: u64,
    pub deliveries_pending: u64,
    pub deliveries_done: u64,
    pub deliveries_dead: u64,
    pub forwards_pending: u64,
    pub forwards_done: u64,
    pub forwards_dead: u64,
}

/// `d-12` → `('d', 12)`, `o-3` → `('o', 3)`.
pub(crate) fn parse_dead_id(id: &str) -> Option<(char, i64)> {
    let (kind, n) = id.split_once('-')?;
    let kind = match kind {
        "d" => 'd',
        "o" => 'o',
        _ => return None,
    };
    Some((kind, n.parse().ok().filter(|n: &i64| *n > 0)?))
}

/// A read connection; share it behind an `Arc`.
pub struct Reader {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

const DEAD_DELIVERIES: &str = "
    SELECT 'd-' || d.id, 'delivery', d.event_id, e.source, e.event_type, d.plugin, NULL,
           d.attempts, d.last_error, d.updated_at
    FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.state = 'dead'";
const DEAD_FORWARDS: &str = "
    SELECT 'o-' || o.id, 'forward', o.event_id, e.source, e.event_type, o.plugin, o.url,
           o.attempts, o.last_error, o.updated_at
    FROM outbox o JOIN events e ON e.id = o.event_id WHERE o.state = 'dead'";

fn dead_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadEntry> {
    let kind: String = r.get(1)?;
    Ok(DeadEntry {
        id: r.get(0)?,
        kind: if kind == "delivery" {
            "delivery"
        } else {
            "forward"
        },
        event_id: r.get(2)?,
        source: r.get(3)?,
        event_type: r.get(4)?,
        plugin: r.get(5)?,
        target: r.get(6)?,
        attempts: r.get(7)?,
        last_error: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

impl Reader {
    /// Opens `path`, which must already hold a migrated store.
    pub fn open(path: &Path) -> anyhow::Result<Reader> {
        if !path.exists() {
            anyhow::bail!("store {} does not exist", path.display());
        }
        let conn = super::schema::open(path)?;
        Ok(Reader {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Dead entries, newest first.
    pub fn dead(&self, limit: usize) -> anyhow::Result<Vec<DeadEntry>> {
        self.with(|c| {
            let sql =
                format!("{DEAD_DELIVERIES} UNION ALL {DEAD_FORWARDS} ORDER BY 10 DESC, 1 LIMIT ?1");
            c.prepare(&sql)?
                .query_map([limit as i64], dead_row)?
                .collect()
        })
    }

    /// One dead entry and its event.
    pub fn dead_entry(&self, id: &str) -> anyhow::Result<Option<(DeadEntry, Event)>> {
        let Some((kind, n)) = parse_dead_id(id) else {
            return Ok(None);
        };
        self.with(|c| {
            let base = if kind == 'd' {
                DEAD_DELIVERIES
            } else {
                DEAD_FORWARDS
            };
            let col = if kind == 'd' { "d.id" } else { "o.id" };
            let entry = c
                .prepare(&format!("{base} AND {col} = ?1"))?
                .query_row([n], dead_row)
                .optional()?;
            match entry {
                None => Ok(None),
                Some(e) => {
                    let ev = load_event(c, &e.event_id)?;
                    Ok(Some((e, ev)))
                }
            }
        })
    }

    /// An event with each of its deliveries.
    pub fn event(&self, id: &str) -> anyhow::Result<Option<EventRecord>> {
        self.with(|c| {
            let Some(event) = load_event(c, id).optional()? else {
                return Ok(None);
            };
            let deliveries = c
                .prepare(
                    "SELECT id, plugin, state, attempts, last_error, version
                     FROM deliveries WHERE event_id = ?1 ORDER BY id",
                )?
                .query_map(params![id], |r| {
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        plugin: r.get(1)?,
                        state: r.get(2)?,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        version: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(EventRecord { event, deliveries }))
        })
    }

    /// Counts of rows by state.
    pub fn counts(&self) -> anyhow::Result<StoreCounts> {
        self.with(|c| {
            let by_state = |table: &str| -> rusqlite::Result<[u64; 3]> {
                let mut out = [0u64; 3];
                let sql = format!("SELECT state, count(*) FROM {table} GROUP BY state");
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?;
                for row in rows {
                    let (state, n) = row?;
                    let slot = match state.as_str() {
                        "pending" => 0,
                        "done" => 1,
                        _ => 2,
                    };
                    out[slot] = n;
                }
                Ok(out)
            };
            let [dp, dd, dx] = by_state("deliveries")?;
            let [fp, fd, fx] = by_state("outbox")?;
            Ok(StoreCounts {
                events: c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?
                    as u64,
                deliveries_pending: dp,
                deliveries_done: dd,
                deliveries_dead: dx,
                forwards_pending: fp,
                forwards_done: fd,
                forwards_dead: fx,
            })
        })
    }
}
