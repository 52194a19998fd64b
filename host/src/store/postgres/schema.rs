//! The PostgreSQL schema and its migrations.
//!
//! Owns: tables, indexes (the full-text index on event bodies among them) and
//! the `hookrouter_schema` version row. Migrations run at start, in one
//! transaction, under an advisory lock, so replicas starting together migrate
//! once and the others wait and find the work done.
//! Never: holds business rules; `ops`, `retain` and `read` own what rows mean.

use anyhow::Context;

/// Each entry migrates from version `index` to `index + 1`. The layout is
/// SQLite's version 2, in PostgreSQL's types: event ids are `uuid` (v7, so
/// they sort by arrival), times are unix milliseconds (`int8`), forward
/// bodies `bytea` (a plugin's bytes, kept exactly).
const MIGRATIONS: &[&str] = &["
    CREATE TABLE events (
        id           uuid PRIMARY KEY,
        source       text NOT NULL,
        event_type   text NOT NULL,
        external_id  text,
        received_at  int8 NOT NULL,
        headers      text NOT NULL,
        body         text NOT NULL,
        hops         int4 NOT NULL DEFAULT 0,
        parent_id    uuid,
        root_id      uuid NOT NULL,
        status       text NOT NULL CHECK (status IN ('pending', 'done', 'dead', 'unrouted')),
        open_count   int4 NOT NULL DEFAULT 0,
        dead_count   int4 NOT NULL DEFAULT 0,
        emits        int4 NOT NULL DEFAULT 0
    );
    CREATE INDEX events_root ON events (root_id, status);
    CREATE INDEX events_status ON events (status, id);
    CREATE INDEX events_source ON events (source, id);
    CREATE INDEX events_type ON events (event_type, id);
    CREATE INDEX events_parent ON events (parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX events_prunable ON events (received_at)
        WHERE root_id = id AND status IN ('done', 'unrouted');
    -- Whole-word search (`q`) in the first 100,000 characters of a body: the
    -- cut keeps any body's tsvector far below PostgreSQL's 1 MB limit.
    CREATE INDEX events_text ON events USING gin (to_tsvector('simple', left(body, 100000)));

    CREATE TABLE dedupe (
        source       text NOT NULL,
        external_id  text NOT NULL,
        event_id     uuid NOT NULL,
        received_at  int8 NOT NULL,
        PRIMARY KEY (source, external_id)
    );
    CREATE INDEX dedupe_age ON dedupe (received_at);

    CREATE TABLE deliveries (
        id           int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id     uuid NOT NULL REFERENCES events (id),
        plugin       text NOT NULL,
        state        text NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts     int4 NOT NULL DEFAULT 0,
        due_at       int8 NOT NULL,
        lease_until  int8 NOT NULL DEFAULT 0,
        lease_token  int8 NOT NULL DEFAULT 0,
        lease_owner  text,
        last_error   text,
        version      text,
        updated_at   int8 NOT NULL,
        UNIQUE (event_id, plugin)
    );
    CREATE INDEX deliveries_due ON deliveries (plugin, due_at) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (updated_at) WHERE state = 'dead';
    CREATE INDEX deliveries_owner ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;

    CREATE TABLE outbox (
        id           int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id  int8 NOT NULL,
        event_id     uuid NOT NULL,
        plugin       text NOT NULL,
        url          text NOT NULL,
        headers      text NOT NULL,
        body         bytea NOT NULL,
        state        text NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts     int4 NOT NULL DEFAULT 0,
        due_at       int8 NOT NULL,
        lease_until  int8 NOT NULL DEFAULT 0,
        lease_token  int8 NOT NULL DEFAULT 0,
        lease_owner  text,
        last_error   text,
        status       int4,
        updated_at   int8 NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (due_at) WHERE state = 'pending';
    CREATE INDEX outbox_event ON outbox (event_id);
    CREATE INDEX outbox_dead ON outbox (updated_at) WHERE state = 'dead';
    CREATE INDEX outbox_owner ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;

    CREATE TABLE attempts (
        id           int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id     uuid NOT NULL,
        delivery_id  int8,
        forward_id   int8,
        attempt      int4 NOT NULL,
        at           int8 NOT NULL,
        duration_ms  int8 NOT NULL,
        outcome      text NOT NULL,
        error        text,
        version      text,
        status       int4
    );
    CREATE INDEX attempts_event ON attempts (event_id);
"];

/// The schema version this build writes.
pub(super) const VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock key migrations run under ("hookrout" in ASCII).
const MIGRATION_LOCK: i64 = 0x686f_6f6b_726f_7574;

/// Brings the database up to [`VERSION`]; refuses one written by a newer hookrouter.
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    // Held until COMMIT: a replica starting at the same moment waits here, then
    // reads the version this one wrote.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS hookrouter_schema (version int4 NOT NULL)")
        .await?;
    let current: i32 = match tx
        .query_opt("SELECT version FROM hookrouter_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO hookrouter_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if current > VERSION {
        anyhow::bail!(
            "database schema version {current} is newer than this hookrouter's ({VERSION}); upgrade hookrouter"
        );
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {} -> {}", from, from + 1))?;
    }
    tx.execute("UPDATE hookrouter_schema SET version = $1", &[&VERSION])
        .await?;
    tx.commit().await?;
    Ok(())
}
