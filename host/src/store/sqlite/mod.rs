//! The embedded backend: one SQLite file in WAL mode, one process, one
//! group-committing writer thread.
//!
//! Owns: every use of `rusqlite`. All writes go through one OS thread that drains
//! whatever requests are queued, applies them in one transaction and one fsync,
//! and only then answers each caller: a caller that got `Ok` has its data on
//! disk. Reads run on connections of their own; WAL checkpoints run on a thread
//! of their own, never inside a commit. A lock file keeps a second process out.
//! Never: decides routing, runs plugins or does network I/O.

mod codec;
mod listing;
mod lock;
mod ops;
mod read;
mod retain;
mod schema;
mod search;
mod walvfs;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::oneshot;

use self::read::Readers;
use self::writer::{Command, Writer, WriterState};
use crate::event::Event;
use crate::store::{
    Backlog, ClaimedDelivery, ClaimedForward, DeadEntry, DeadFilter, DeadId, DeadLetters,
    DeliveryClaim, DeliveryId, DeliveryOutcome, EventDetail, EventFilter, EventId, EventSummary,
    Finished, ForwardId, ForwardOutcome, Health, Ingest, Ingested, LeaseToken, Maintenance,
    NewEvent, Page, Pruned, Purged, Queries, Retention, Selection, Store, StoreCounts, StoreError,
    Wake, WorkQueue,
};

/// How long a search waits for the index to catch up with the store.
const SEARCH_WAIT: Duration = Duration::from_secs(2);

/// The writer's page cache (negative: KiB), see `SqliteStore::open`. 8 MiB:
/// resident memory right after a burst fell by as much, with no measurable
/// change in throughput (BENCHMARKS.md).
const WRITER_CACHE_KIB: i64 = -8 * 1024;

/// Entries per transaction when replaying or purging many.
const CHUNK: usize = 500;

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Past this size the WAL is started over (see [`spawn_checkpointer`]).
pub(super) const WAL_BOUND: u64 = 32 << 20;

/// A handle to the SQLite store; share it behind an `Arc`.
pub struct SqliteStore {
    tx: std::sync::mpsc::Sender<Command>,
    state: Arc<WriterState>,
    max_backlog: usize,
    wake: Arc<Wake>,
    readers: Arc<Readers>,
    search: Arc<search::Search>,
    path: PathBuf,
    stop_checkpoints: Arc<AtomicBool>,
    lock: lock::StoreLock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
        self.search.stop();
    }
}

impl SqliteStore {
    /// Takes the store's lock file, opens (creating if needed) and migrates the
    /// database, clears leases (the lock proves no other process holds any), and
    /// starts the writer and checkpoint threads.
    pub fn open(path: &Path, max_backlog: usize) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create store folder {}", dir.display()))?;
        }
        let lock = lock::acquire(path)?;
        let mut conn = schema::open_writer(path)
            .with_context(|| format!("cannot open store {}", path.display()))?;
        schema::migrate(&mut conn)
            .with_context(|| format!("cannot migrate store {}", path.display()))?;
        // The writer appends, claims through small indexes and finishes recent
        // work: its hot pages are the tables' right edges. A smaller cache than
        // the readers' (which serve listings of the whole store) keeps the
        // router's resident memory down; older pages come from the OS's cache.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        // One process per store: leases left by an earlier one are void, and
        // what they held is due now (see `ops::claim_deliveries` for due_at).
        ops::release_leases(
            &conn,
            None,
            crate::event::unix_ms(std::time::SystemTime::now()),
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let state = Arc::new(WriterState {
            queued: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            restart_wal: AtomicBool::new(false),
            checkpointer: Default::default(),
        });
        let wake = Arc::new(Wake::default());
        let search = search::Search::start(path, tx.clone(), state.clone())
            .with_context(|| format!("cannot open the search index of {}", path.display()))?;
        let w = Writer {
            conn,
            state: state.clone(),
            wake: wake.clone(),
            owner: format!("pid-{}", std::process::id()),
            full_logged: None,
            search: Some(search.clone()),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run(rx))
            .context("cannot start the store writer thread")?;
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        spawn_checkpointer(path, state.clone(), stop_checkpoints.clone())?;
        Ok(SqliteStore {
            tx,
            state,
            max_backlog,
            wake,
            search,
            readers: Arc::new(
                Readers::start(path).context("cannot start the store reader threads")?,
            ),
            path: path.to_path_buf(),
            stop_checkpoints,
            lock,
        })
    }

    /// The admin address of the router that holds the store at `path` right
    /// now, from its lock file (`None` when no router runs on it).
    pub fn running_router(path: &Path) -> Option<std::net::SocketAddr> {
        lock::holder_admin(path)
    }

    /// Requests queued for the writer right now.
    pub fn backlog(&self) -> usize {
        self.state.queued.load(Ordering::Relaxed)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(make(reply)).is_err() {
            self.state.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.readers
            .run(f)
            .await
            .ok_or_else(|| StoreError::Unavailable("the store readers have stopped".into()))?
            .map_err(|e| StoreError::Unavailable(format!("store query failed: {e}")))
    }

    /// Before a search: waits (a little) until every event acknowledged so far
    /// is in the search index, so a search finds what was just stored.
    async fn search_caught_up(&self) -> Result<(), StoreError> {
        let last = self.read(search::last_seq).await?;
        if !self.search.caught_up(last, SEARCH_WAIT).await {
            tracing::debug!(
                last,
                "search index still catching up; answering with what it holds"
            );
        }
        Ok(())
    }

    async fn searchable(&self, selection: &Selection) -> Result<(), StoreError> {
        match selection {
            Selection::Events(f) if !f.words().is_empty() => self.search_caught_up().await,
            _ => Ok(()),
        }
    }

    /// The database file and its companions, with their sizes.
    fn file_sizes(&self) -> Vec<(String, u64)> {
        ["", "-wal", "-shm"]
            .into_iter()
            .map(|suffix| {
                let mut name = self.path.as_os_str().to_os_string();
                name.push(suffix);
                let size = std::fs::metadata(&name).map_or(0, |m| m.len());
                (PathBuf::from(name).display().to_string(), size)
            })
            .collect()
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

/// Copies committed WAL frames into the database file, off the writer's
/// thread. Passive checkpoints never block the writer, but under sustained load
/// they never quite catch up, and the WAL is only started over once one has. So
/// when the WAL holds more than [`WAL_BOUND`] after a passive checkpoint, the
/// writer is asked to start it over between two batches (see
/// `Writer::restart_wal`): it copies what the passive one left (little, as they
/// run often) and has the next commit write the WAL from its start. The commit
/// that takes the WAL past its bound wakes this thread at once, so the WAL
/// passes its bound by what is written during one passive checkpoint, at any
/// rate.
fn spawn_checkpointer(
    path: &Path,
    state: Arc<WriterState>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let Ok(conn) = schema::open(&path) else {
                tracing::warn!(path = %path.display(), "checkpointer cannot open the store; the WAL is checkpointed at close only");
                return;
            };
            // A checkpoint copies pages from the WAL; it needs no cache of its own.
            let _ = conn.pragma_update(None, "cache_size", -1024);
            let bound = schema::wal_bound_frames(&conn);
            let _ = state.checkpointer.set(std::thread::current());
            while !stop.load(Ordering::Relaxed) {
                // Woken early by a commit that takes the WAL past its bound.
                std::thread::park_timeout(CHECKPOINT_EVERY);
                // (busy, frames in the WAL, frames copied)
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                    Ok(frames) if frames > bound => {
                        state.restart_wal.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "checkpoint failed; retrying"),
                }
            }
        })
        .context("cannot start the store checkpoint thread")?;
    Ok(())
}

/// Free bytes on the file system holding `path`.
fn free_disk(path: &Path) -> Option<u64> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[async_trait]
impl Ingest for SqliteStore {
    async fn ingest_leased(
        &self,
        new: NewEvent,
        lease: Option<Duration>,
    ) -> Result<(Ingested, Vec<ClaimedDelivery>), StoreError> {
        let queued = self.backlog();
        if queued >= self.max_backlog {
            return Err(StoreError::Busy(queued));
        }
        self.call(|r| Command::Ingest(new, lease, r)).await
    }
}

#[async_trait]
impl WorkQueue for SqliteStore {
    async fn claim_deliveries(
        &self,
        claim: DeliveryClaim,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.call(|r| Command::ClaimDeliveries(claim, r)).await
    }

    async fn finish_delivery_leased(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        outcome: DeliveryOutcome,
        lease: Option<Duration>,
    ) -> Result<(Finished, Vec<ClaimedForward>), StoreError> {
        self.call(|r| Command::FinishDelivery(id, token, outcome, lease, r))
            .await
    }

    async fn claim_forwards(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedForward>, StoreError> {
        self.call(|r| Command::ClaimForwards(limit, lease, r)).await
    }

    async fn finish_forward(
        &self,
        id: ForwardId,
        token: LeaseToken,
        outcome: ForwardOutcome,
    ) -> Result<Finished, StoreError> {
        self.call(|r| Command::FinishForward(id, token, outcome, r))
            .await
    }

    async fn release_leases(&self) -> Result<usize, StoreError> {
        self.call(Command::ReleaseLeases).await
    }
}

#[async_trait]
impl DeadLetters for SqliteStore {
    async fn dead(&self, filter: &DeadFilter, limit: usize) -> Result<Vec<DeadEntry>, StoreError> {
        let filter = filter.clone();
        self.read(move |c| read::dead(c, &filter, limit)).await
    }

    async fn dead_entry(&self, id: DeadId) -> Result<Option<(DeadEntry, Event)>, StoreError> {
        self.read(move |c| read::dead_entry(c, id)).await
    }

    async fn replay(&self, selection: Selection) -> Result<usize, StoreError> {
        self.searchable(&selection).await?;
        let ids = self.read(move |c| read::resolve(c, &selection)).await?;
        let mut n = 0;
        // Short transactions: a running router's ingest is never held up long.
        for chunk in ids.chunks(CHUNK) {
            let chunk = chunk.to_vec();
            n += self.call(|r| Command::Replay(chunk, r)).await?;
        }
        Ok(n)
    }

    async fn purge(&self, selection: Selection) -> Result<Purged, StoreError> {
        self.searchable(&selection).await?;
        let ids = self.read(move |c| read::resolve(c, &selection)).await?;
        let mut total = Purged::default();
        for chunk in ids.chunks(CHUNK) {
            let chunk = chunk.to_vec();
            let p = self.call(|r| Command::Purge(chunk, r)).await?;
            total.entries += p.entries;
            total.events += p.events;
        }
        Ok(total)
    }
}

#[async_trait]
impl Queries for SqliteStore {
    async fn events(
        &self,
        filter: &EventFilter,
        page: Page,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let filter = filter.clone();
        if !filter.words().is_empty() {
            self.search_caught_up().await?;
        }
        self.read(move |c| listing::events(c, &filter, page)).await
    }

    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        self.read(move |c| read::event(c, id)).await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let mut counts = self.read(read::counts).await?;
        counts.bytes = self.file_sizes();
        Ok(counts)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.read(read::backlog).await
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn prune(&self, policy: Retention) -> Result<Pruned, StoreError> {
        self.call(|r| Command::Prune(policy, r)).await
    }

    async fn health(&self) -> Health {
        let backlog = self.backlog();
        let free_disk_bytes = free_disk(&self.path);
        let reason = if !self.state.alive.load(Ordering::Relaxed) {
            Some("the store writer has stopped".to_string())
        } else if self.state.full.load(Ordering::Relaxed) {
            Some("the store's disk is full".to_string())
        } else if backlog >= self.max_backlog {
            Some(format!("store backlog full ({backlog} requests queued)"))
        } else {
            None
        };
        Health {
            ready: reason.is_none(),
            reason,
            backlog,
            free_disk_bytes,
        }
    }
}

impl Store for SqliteStore {
    fn wake(&self) -> &Wake {
        &self.wake
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    fn announce(&self, admin: std::net::SocketAddr) {
        self.lock.announce(admin);
    }
}

#[cfg(test)]
mod tests;
