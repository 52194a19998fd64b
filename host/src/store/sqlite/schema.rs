//! The SQLite schema and its migrations.
//!
//! Owns: table layout, indexes and the `user_version` migration number, and the
//! pragmas of every connection.
//! Never: holds business rules; the writer and readers own what rows mean.

use rusqlite::Connection;

/// Each entry migrates from version `index` to `index + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 1 -> 2: retention, leases checked by token, attempt history, event status.
    // - events get their tree (root_id), their worst state (status, kept from the
    //   open_count and dead_count of their deliveries and forwards), and the
    //   root's emit budget (emits: descendants so far);
    // - dedupe moves to a table of its own, so it outlives pruned events;
    // - claims and outcomes carry a lease token and owner;
    // - every attempt of a delivery or forward is kept in `attempts`.
    "
    ALTER TABLE events ADD COLUMN root_id TEXT;
    ALTER TABLE events ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE events ADD COLUMN open_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN dead_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN emits INTEGER NOT NULL DEFAULT 0;
    WITH RECURSIVE tree(id, root) AS (
        SELECT id, id FROM events WHERE parent_id IS NULL
        UNION ALL
        SELECT e.id, t.root FROM events e JOIN tree t ON e.parent_id = t.id
    )
    UPDATE events SET root_id = coalesce((SELECT root FROM tree WHERE tree.id = events.id), id);
    UPDATE events SET
        open_count = (SELECT count(*) FROM deliveries d WHERE d.event_id = events.id AND d.state = 'pending')
                   + (SELECT count(*) FROM outbox o WHERE o.event_id = events.id AND o.state = 'pending'),
        dead_count = (SELECT count(*) FROM deliveries d WHERE d.event_id = events.id AND d.state = 'dead')
                   + (SELECT count(*) FROM outbox o WHERE o.event_id = events.id AND o.state = 'dead');
    UPDATE events SET status = CASE
        WHEN dead_count > 0 THEN 'dead'
        WHEN open_count > 0 THEN 'pending'
        WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id) THEN 'done'
        ELSE 'unrouted' END;
    UPDATE events SET emits = (SELECT count(*) FROM events c WHERE c.root_id = events.id AND c.id != events.id)
        WHERE root_id = id;

    CREATE TABLE dedupe (
        source       TEXT NOT NULL,
        external_id  TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        PRIMARY KEY (source, external_id)
    ) WITHOUT ROWID;
    INSERT INTO dedupe SELECT source, external_id, id, received_at FROM events WHERE external_id IS NOT NULL;
    CREATE INDEX dedupe_age ON dedupe(received_at);
    DROP INDEX events_dedupe;

    CREATE INDEX events_root ON events(root_id, status);
    CREATE INDEX events_status ON events(status, id);
    CREATE INDEX events_source ON events(source, id);
    CREATE INDEX events_type ON events(event_type, id);
    CREATE INDEX events_parent ON events(parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX events_prunable ON events(received_at)
        WHERE root_id = id AND status IN ('done', 'unrouted');

    ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
    DROP INDEX deliveries_claim;
    CREATE INDEX deliveries_due ON deliveries(plugin, due_at) WHERE state = 'pending';
    CREATE INDEX deliveries_owner ON deliveries(lease_owner) WHERE lease_owner IS NOT NULL;

    ALTER TABLE outbox ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
    DROP INDEX outbox_due;
    CREATE INDEX outbox_due ON outbox(due_at) WHERE state = 'pending';
    CREATE INDEX outbox_event ON outbox(event_id);
    CREATE INDEX outbox_dead ON outbox(updated_at) WHERE state = 'dead';
    CREATE INDEX outbox_owner ON outbox(lease_owner) WHERE lease_owner IS NOT NULL;

    CREATE TABLE attempts (
        id           INTEGER PRIMARY KEY,
        event_id     TEXT NOT NULL,
        delivery_id  INTEGER,
        forward_id   INTEGER,
        attempt      INTEGER NOT NULL,
        at           INTEGER NOT NULL,
        duration_ms  INTEGER NOT NULL,
        outcome      TEXT NOT NULL,
        error        TEXT,
        version      TEXT,
        status       INTEGER
    );
    CREATE INDEX attempts_event ON attempts(event_id);
    ",
    // 2 -> 3: full-text search in event bodies (`q` of the events listing).
    // Contentless (the bodies stay only in `events`), keyed by the event's
    // rowid, with deletes by rowid (contentless_delete). `unicode61` splits on
    // punctuation and folds case, so `payment_loading_requested` holds the
    // word `payment`; positions are kept, so a query word that the tokenizer
    // splits further is matched as a phrase of its parts.
    "
    CREATE VIRTUAL TABLE events_fts USING fts5(
        body, content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO events_fts (rowid, body) SELECT rowid, body FROM events;
    ",
    // 3 -> 4: the search index leaves the store for a file of its own, written by
    // the indexer thread off the ack path (see `search`): indexing in the ingest
    // transaction halved what the writer could take. The indexer follows new
    // events by `seq`, an AUTOINCREMENT key that deletions never make SQLite
    // reuse; pruned and purged events are noted in `search_gone` for it.
    "
    DROP TABLE events_fts;
    CREATE TABLE events_v4 (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        source       TEXT NOT NULL,
        event_type   TEXT NOT NULL,
        external_id  TEXT,
        received_at  INTEGER NOT NULL,
        headers      NOT NULL,
        body         TEXT NOT NULL,
        hops         INTEGER NOT NULL DEFAULT 0,
        parent_id    TEXT,
        root_id      TEXT,
        status       TEXT NOT NULL DEFAULT 'pending',
        open_count   INTEGER NOT NULL DEFAULT 0,
        dead_count   INTEGER NOT NULL DEFAULT 0,
        emits        INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO events_v4 (seq, id, source, event_type, external_id, received_at, headers, body,
                           hops, parent_id, root_id, status, open_count, dead_count, emits)
        SELECT rowid, id, source, event_type, external_id, received_at, headers, body,
               hops, parent_id, root_id, status, open_count, dead_count, emits
        FROM events ORDER BY rowid;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE INDEX events_root ON events(root_id, status);
    CREATE INDEX events_status ON events(status, id);
    CREATE INDEX events_source ON events(source, id);
    CREATE INDEX events_type ON events(event_type, id);
    CREATE INDEX events_parent ON events(parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX events_prunable ON events(received_at)
        WHERE root_id = id AND status IN ('done', 'unrouted');
    CREATE TABLE search_gone (seq INTEGER PRIMARY KEY);
    ",
    // 4 -> 5: no index on the lease owner. One process owns a SQLite store (the
    // lock file), so the owner is only read when that process gives its leases
    // back at stop, through the pending rows' own indexes; kept, the two
    // indexes cost every handed-off delivery and forward an index entry in and
    // out.
    "
    DROP INDEX deliveries_owner;
    DROP INDEX outbox_owner;
    ",
    // 5 -> 6: the tree index holds emitted events only. A root is its own
    // tree's root (found by its id), so pruning needs the index only for its
    // descendants; kept for every event, it cost each ingest an entry and each
    // finished event a move (status is in its key): 7% of the pages every
    // commit wrote end to end.
    "
    DROP INDEX events_root;
    CREATE INDEX events_root ON events(root_id, status) WHERE parent_id IS NOT NULL;
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
    // A step may rebuild a table others refer to (SQLite's way of altering one):
    // foreign keys are off meanwhile and checked before each step commits.
    conn.pragma_update(None, "foreign_keys", false)?;
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            anyhow::bail!(
                "store migration {} -> {} broke {broken} references",
                from,
                from + 1
            );
        }
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.commit()?;
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// How many frames the WAL holds at [`super::WAL_BOUND`], for `conn`'s page size.
pub(crate) fn wal_bound_frames(conn: &Connection) -> i64 {
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap_or(4096);
    super::WAL_BOUND as i64 / page
}

/// How long a connection waits for a lock another one holds.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens `path` with the pragmas every connection uses.
pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    configure(Connection::open(path)?)
}

/// Opens `path` for the writer: as [`open`], through the VFS that writes each
/// commit's WAL frames in one call (see `walvfs`).
pub(crate) fn open_writer(path: &std::path::Path) -> rusqlite::Result<Connection> {
    super::walvfs::register()?;
    let conn = configure(Connection::open_with_flags_and_vfs(
        path,
        rusqlite::OpenFlags::default(),
        super::walvfs::NAME,
    )?)?;
    // The gathered frames reach the file at the commit's sync; with fewer syncs,
    // other connections could read frames still gathered.
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    assert_eq!(sync, 2, "the writer's VFS needs synchronous=FULL");
    Ok(conn)
}

fn configure(conn: Connection) -> rusqlite::Result<Connection> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so a 2xx means the event is on disk.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // 64 MiB of page cache: the hot end of the tables stays in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    // Checkpoints run on a connection of their own (see `spawn_checkpointer`),
    // never inside the writer's commit. The WAL is started over once it holds
    // WAL_BOUND; its file keeps up to twice that, so that the next frames
    // overwrite blocks the file already has rather than allocating new ones.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", 2 * super::WAL_BOUND as i64)?;
    Ok(conn)
}
