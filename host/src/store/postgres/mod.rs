//! The shared backend: several router replicas on one PostgreSQL database.
//!
//! Owns: every use of `tokio-postgres` and its pool. Writes go through a few
//! writer tasks that group-commit whatever is queued (a caller that got `Ok`
//! has its data committed with `synchronous_commit = on`); reads run on pooled
//! connections of their own. Each replica leases work under its own owner id,
//! with lease times from the database's clock; it never clears another's
//! leases, gives its own back on shutdown, and takes over expired ones. Commits
//! that make work due wake the other replicas (NOTIFY, right after them). When the database goes away,
//! every call answers `Unavailable` (ingress: `503` with `Retry-After`) and the
//! pool and the listener reconnect by themselves.
//! Never: decides routing, runs plugins or does network I/O beyond its database.

mod connect;
mod finish;
mod ingest;
mod listen;
mod ops;
mod read;
mod retain;
mod schema;
mod tls;
mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::oneshot;

use self::writer::{Answer, Op, Queue};
use crate::event::Event;
use crate::store::{
    ClaimedDelivery, ClaimedForward, DeadEntry, DeadFilter, DeadId, DeadLetters, DeliveryClaim,
    DeliveryId, DeliveryOutcome, EventDetail, EventFilter, EventId, EventSummary, Finished,
    ForwardId, ForwardOutcome, Health, Ingest, Ingested, LeaseToken, Maintenance, NewEvent, Page,
    Pruned, Purged, Queries, Retention, Selection, Store, StoreCounts, StoreError, Wake, WorkQueue,
};

/// Writer tasks (each one transaction at a time) per replica.
const WRITERS: usize = 4;

/// Entries per transaction when replaying or purging many.
const CHUNK: usize = 500;

/// How long `/readyz` waits for the database to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The database's clock in unix milliseconds, for SQL outside a writer's batch.
pub(super) const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::int8";

/// Why a database call failed.
#[derive(Debug)]
pub(super) enum Fail {
    /// The database answered with an error, or the connection failed.
    Db(tokio_postgres::Error),
    /// A race that running the batch again resolves.
    Retry(&'static str),
    /// The connection is gone or in an unknown state.
    Lost(String),
    /// No connection could be had.
    Pool(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Db(e) => f.write_str(&describe(e)),
            Fail::Retry(why) => write!(f, "{why}; try again"),
            Fail::Lost(why) | Fail::Pool(why) => f.write_str(why),
        }
    }
}

impl Fail {
    fn pool(e: deadpool_postgres::PoolError) -> Fail {
        use deadpool_postgres::PoolError;
        Fail::Pool(match e {
            PoolError::Backend(e) => format!("database unreachable: {}", describe(&e)),
            PoolError::Timeout(_) => "database unreachable: timed out".to_string(),
            other => format!("database unreachable: {other}"),
        })
    }

    pub(super) fn to_store(&self) -> StoreError {
        match self {
            Fail::Db(e) if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) => {
                StoreError::Full(describe(e))
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// A driver error in one line: the server's message and code, or the cause.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// PostgreSQL text cannot hold NUL; a plugin's strings might. Such a character
/// is stored as U+FFFD instead of failing the write.
pub(super) fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// Header pairs as a column: JSON text (an array of pairs, order kept).
pub(super) fn encode_headers(h: &[(String, String)]) -> String {
    serde_json::to_string(h).unwrap_or_else(|_| "[]".into())
}

/// A damaged column reads as no headers, never a failure.
pub(super) fn decode_headers(s: &str) -> Vec<(String, String)> {
    serde_json::from_str(s).unwrap_or_default()
}

/// A handle to the PostgreSQL store; share it behind an `Arc`.
pub struct PgStore {
    queue: Queue,
    pool: Pool,
    wake: Arc<Wake>,
    owner: Arc<str>,
    name: String,
    max_backlog: usize,
    /// The listener and the notifier.
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.name)
            .field("owner", &self.owner)
            .finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// This replica's name on the leases it takes: host, process and a random
/// part (a restarted process is a new owner).
fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}-{}",
        if host.is_empty() { "host" } else { &host },
        std::process::id(),
        &random[..8]
    )
}

impl PgStore {
    /// Connects to the database `url` names, migrates it (under an advisory
    /// lock, so replicas starting together migrate once), and starts the
    /// writers and the listener. Other replicas' leases are left alone.
    pub async fn open(url: &str, max_backlog: usize) -> anyhow::Result<PgStore> {
        let target = connect::target(url)?;
        let pool = target.pool()?;
        let mut conn = pool.get().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL at {}: {}",
                target.name,
                Fail::pool(e)
            )
        })?;
        schema::migrate(&mut conn)
            .await
            .with_context(|| format!("cannot migrate database {}", target.name))?;
        drop(conn);
        let owner: Arc<str> = owner_id().into();
        let wake = Arc::new(Wake::default());
        let (notifier, notify_task) = listen::notifier(pool.clone(), owner.clone());
        let queue = writer::spawn(WRITERS, pool.clone(), wake.clone(), owner.clone(), notifier);
        let listener = listen::spawn(target.clone(), wake.clone(), owner.clone());
        Ok(PgStore {
            queue,
            pool,
            wake,
            owner,
            name: target.name,
            max_backlog,
            tasks: [listener, notify_task],
        })
    }

    /// This replica's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Requests queued for the writers right now.
    pub fn backlog(&self) -> usize {
        self.queue.queued.load(Ordering::Relaxed)
    }

    async fn call(&self, op: Op) -> Result<Answer, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.queue.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.tx.send((op, reply)).is_err() {
            self.queue.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| Fail::pool(e).to_store())
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the store writers have stopped".into())
}

fn mismatch() -> StoreError {
    StoreError::Unavailable("internal: answer does not fit its command".into())
}

/// Unwraps the answer variant a command gives.
macro_rules! answer {
    ($call:expr, $variant:ident) => {
        match $call.await? {
            Answer::$variant(v) => Ok(v),
            _ => Err(mismatch()),
        }
    };
}

#[async_trait]
impl Ingest for PgStore {
    /// Hands off nothing: the deliveries are claimed, by whichever replica.
    async fn ingest_leased(
        &self,
        new: NewEvent,
        _lease: Option<Duration>,
    ) -> Result<(Ingested, Vec<ClaimedDelivery>), StoreError> {
        let queued = self.backlog();
        if queued >= self.max_backlog {
            return Err(StoreError::Busy(queued));
        }
        let ingested = answer!(self.call(Op::Ingest(new)), Ingested)?;
        Ok((ingested, Vec::new()))
    }
}

#[async_trait]
impl WorkQueue for PgStore {
    async fn claim_deliveries(
        &self,
        claim: DeliveryClaim,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        answer!(self.call(Op::ClaimDeliveries(claim)), Deliveries)
    }

    /// Hands off nothing: the forwards are claimed, by whichever replica.
    async fn finish_delivery_leased(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        outcome: DeliveryOutcome,
        _lease: Option<Duration>,
    ) -> Result<(Finished, Vec<ClaimedForward>), StoreError> {
        let finished = answer!(self.call(Op::FinishDelivery(id, token, outcome)), Finished)?;
        Ok((finished, Vec::new()))
    }

    async fn claim_forwards(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedForward>, StoreError> {
        answer!(self.call(Op::ClaimForwards(limit, lease)), Forwards)
    }

    async fn finish_forward(
        &self,
        id: ForwardId,
        token: LeaseToken,
        outcome: ForwardOutcome,
    ) -> Result<Finished, StoreError> {
        answer!(self.call(Op::FinishForward(id, token, outcome)), Finished)
    }

    async fn release_leases(&self) -> Result<usize, StoreError> {
        answer!(self.call(Op::ReleaseLeases), Count)
    }
}

#[async_trait]
impl DeadLetters for PgStore {
    async fn dead(&self, filter: &DeadFilter, limit: usize) -> Result<Vec<DeadEntry>, StoreError> {
        let c = self.conn().await?;
        read::dead(&c, filter, limit)
            .await
            .map_err(|e| e.to_store())
    }

    async fn dead_entry(&self, id: DeadId) -> Result<Option<(DeadEntry, Event)>, StoreError> {
        let c = self.conn().await?;
        read::dead_entry(&c, id).await.map_err(|e| e.to_store())
    }

    async fn replay(&self, selection: Selection) -> Result<usize, StoreError> {
        let ids = {
            let c = self.conn().await?;
            read::resolve(&c, &selection)
                .await
                .map_err(|e| e.to_store())?
        };
        let mut n = 0;
        // Short transactions: ingest on every replica is never held up long.
        for chunk in ids.chunks(CHUNK) {
            n += answer!(self.call(Op::Replay(chunk.to_vec())), Count)?;
        }
        Ok(n)
    }

    async fn purge(&self, selection: Selection) -> Result<Purged, StoreError> {
        let ids = {
            let c = self.conn().await?;
            read::resolve(&c, &selection)
                .await
                .map_err(|e| e.to_store())?
        };
        let mut total = Purged::default();
        for chunk in ids.chunks(CHUNK) {
            let p = answer!(self.call(Op::Purge(chunk.to_vec())), Purged)?;
            total.entries += p.entries;
            total.events += p.events;
        }
        Ok(total)
    }
}

#[async_trait]
impl Queries for PgStore {
    async fn events(
        &self,
        filter: &EventFilter,
        page: Page,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let c = self.conn().await?;
        read::events(&c, filter, page)
            .await
            .map_err(|e| e.to_store())
    }

    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        let c = self.conn().await?;
        read::event(&c, id).await.map_err(|e| e.to_store())
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let c = self.conn().await?;
        read::counts(&c).await.map_err(|e| e.to_store())
    }
}

#[async_trait]
impl Maintenance for PgStore {
    async fn prune(&self, policy: Retention) -> Result<Pruned, StoreError> {
        answer!(self.call(Op::Prune(policy)), Pruned)
    }

    async fn health(&self) -> Health {
        let backlog = self.backlog();
        let probe = tokio::time::timeout(HEALTH_TIMEOUT, async {
            let c = self.conn().await?;
            c.simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| Fail::Db(e).to_store())
        })
        .await;
        let reason = match probe {
            Err(_) => Some(format!(
                "database {} did not answer within {HEALTH_TIMEOUT:?}",
                self.name
            )),
            Ok(Err(e)) => Some(e.to_string()),
            Ok(Ok(())) if backlog >= self.max_backlog => {
                Some(format!("store backlog full ({backlog} requests queued)"))
            }
            Ok(Ok(())) => None,
        };
        Health {
            ready: reason.is_none(),
            reason,
            backlog,
            free_disk_bytes: None,
        }
    }
}

impl Store for PgStore {
    fn wake(&self) -> &Wake {
        &self.wake
    }

    fn describe(&self) -> String {
        format!("postgres {} (replica {})", self.name, self.owner)
    }
}

#[cfg(test)]
mod tests;
