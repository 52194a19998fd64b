//! The SQLite schema and its migrations.
//!
//! Owns: table layout and the `user_version` migration number.
//! Never: holds business rules; the writer and readers own what rows mean.

use rusqlite::Connection;

/// Each entry migrates from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: events, deliveries, outbox.
    "
    CREATE TABLE events (
        id           TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        event_type   TEXT NOT NULL,
        external_id  TEXT,
        received_at  INTEGER NOT NULL,
        headers      TEXT NOT NULL,
        body         TEXT NOT NULL,
        hops         INTEGER NOT NULL DEFAULT 0,
        parent_id    TEXT
    );
    CREATE UNIQUE INDEX events_dedupe ON events(source, external_id)
        WHERE external_id IS NOT NULL;

    CREATE TABLE deliveries (
        id           INTEGER PRIMARY KEY,
        event_id     TEXT NOT NULL REFERENCES events(id),
        plugin       TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        due_at       INTEGER NOT NULL,
        lease_until  INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        version      TEXT,
        updated_at   INTEGER NOT NULL,
        UNIQUE (event_id, plugin)
    );
    CREATE INDEX deliveries_claim ON deliveries(plugin, state, due_at);
    CREATE INDEX deliveries_dead ON deliveries(updated_at) WHERE state = 'dead';

    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY,
        delivery_id  INTEGER NOT NULL REFERENCES deliveries(id),
        event_id     TEXT NOT NULL,
        plugin       TEXT NOT NULL,
        url          TEXT NOT NULL,
        headers      TEXT NOT NULL,
        body         TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        due_at       INTEGER NOT NULL,
        lease_until  INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        status       INTEGER,
        updated_at   INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox(state, due_at);
    ",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn` up to [`VERSION`], one transaction per step. Refuses a file
/// written by a newer hookrouter.
pub(crate) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > VERSION {
        anyhow::bail!(
            "store schema version {current} is newer than this hookrouter's ({VERSION}); upgrade hookrouter"
        );
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Opens `path` with the pragmas every connection uses.
pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so a 2xx means the event is on disk.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // 64 MiB of page cache: the hot end of the tables stays in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}
