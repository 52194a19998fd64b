//! The durable store: SQLite in WAL mode with one group-committing writer.
//!
//! Owns: every write to the database file. All writes go through one OS thread
//! that drains whatever requests are queued, applies them in one transaction and
//! one fsync, and only then answers each caller. A caller that got `Ok` has its
//! data on disk.
//! Never: decides routing, runs plugins or does network I/O.

mod ops;
mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, oneshot};

use crate::event::Event;

pub(crate) use read::parse_dead_id;
pub use read::{DeadEntry, DeliveryRow, EventRecord, Reader, StoreCounts};

/// Why the store could not take a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// More requests are queued than `store.max_backlog`; the sender should retry.
    #[error("store backlog is full ({0} requests queued)")]
    Busy(usize),
    /// The database failed (disk full, I/O error) or the writer is gone.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// What ingest did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored, with this many deliveries.
    Stored { id: String, deliveries: usize },
    /// An event with the same source and external id was already stored.
    Duplicate { id: String },
}

/// A delivery leased to a worker.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub plugin: String,
    /// Attempts already made before this one.
    pub attempts: u32,
    pub event: Event,
}

/// A forward leased to an outbox worker.
#[derive(Debug, Clone)]
pub struct ClaimedForward {
    pub id: i64,
    pub event_id: String,
    pub plugin: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub attempts: u32,
}

/// A forward requested by a plugin. `refused` holds why it may not be sent
/// (its host is not in `allow_forward`): it is stored dead, never sent.
#[derive(Debug, Clone)]
pub struct NewForward {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub refused: Option<String>,
}

/// A new event produced by a plugin's `emit`, already routed.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub event: Event,
    pub parent_id: String,
    pub plugins: Vec<String>,
}

/// How a delivery ended this time.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// The plugin succeeded; its effects are stored with the outcome, atomically.
    Done {
        version: String,
        forwards: Vec<NewForward>,
        emitted: Vec<Emitted>,
    },
    /// It failed; retry at `retry_at` (unix ms), or dead-letter when `None`.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
    /// Give the delivery back without spending an attempt (shutdown, plugin gone).
    Release { due_at: i64 },
}

/// How a forward ended this time.
#[derive(Debug, Clone)]
pub enum ForwardOutcome {
    Sent {
        status: u16,
    },
    Failed {
        error: String,
        status: Option<u16>,
        retry_at: Option<i64>,
    },
    Release,
}

/// Which dead entries to bring back.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    One(String),
    All,
}

pub(crate) enum Command {
    Ingest {
        event: Event,
        plugins: Vec<String>,
        reply: oneshot::Sender<Result<Ingested, StoreError>>,
    },
    ClaimDeliveries {
        loaded: Vec<String>,
        limit: usize,
        lease: Duration,
        reply: oneshot::Sender<Result<Vec<ClaimedDelivery>, StoreError>>,
    },
    FinishDelivery {
        id: i64,
        outcome: DeliveryOutcome,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ClaimForwards {
        limit: usize,
        lease: Duration,
        reply: oneshot::Sender<Result<Vec<ClaimedForward>, StoreError>>,
    },
    FinishForward {
        id: i64,
        outcome: ForwardOutcome,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Replay {
        target: ReplayTarget,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std::sync::mpsc::Sender<Command>,
    queued: Arc<AtomicUsize>,
    max_backlog: usize,
    /// Woken after each commit that made deliveries due (the dispatcher waits on it).
    pub(crate) deliveries_due: Arc<Notify>,
    /// Woken after each commit that made forwards due (the outbox waits on it).
    pub(crate) forwards_due: Arc<Notify>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database, clears leases left
    /// by a previous process, and starts the writer thread.
    pub fn open(path: &Path, max_backlog: usize) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create store folder {}", dir.display()))?;
        }
        let mut conn =
            schema::open(path).with_context(|| format!("cannot open store {}", path.display()))?;
        schema::migrate(&mut conn)
            .with_context(|| format!("cannot migrate store {}", path.display()))?;
        // One process owns the file, so any lease in it belonged to a process that died.
        conn.execute_batch(
            "UPDATE deliveries SET lease_until = 0 WHERE lease_until != 0;
             UPDATE outbox SET lease_until = 0 WHERE lease_until != 0;",
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let deliveries_due = Arc::new(Notify::new());
        let forwards_due = Arc::new(Notify::new());
        let w = writer::Writer {
            conn,
            queued: queued.clone(),
            deliveries_due: deliveries_due.clone(),
            forwards_due: forwards_due.clone(),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run(rx))
            .context("cannot start the store writer thread")?;
        Ok(Store {
            tx,
            queued,
            max_backlog,
            deliveries_due,
            forwards_due,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read-only view for admin queries (its own connection).
    pub fn reader(&self) -> anyhow::Result<Reader> {
        Reader::open(&self.path)
    }

    /// Requests queued for the writer right now.
    pub fn backlog(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(make(reply)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable(
                "the store writer has stopped".into(),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the store writer has stopped".into(),
            ))
        })
    }

    /// Stores `event` with one pending delivery per plugin; answers once it is on disk.
    pub async fn ingest(&self, event: Event, plugins: Vec<String>) -> Result<Ingested, StoreError> {
        let queued = self.queued.load(Ordering::Relaxed);
        if queued >= self.max_backlog {
            return Err(StoreError::Busy(queued));
        }
        self.call(|reply| Command::Ingest {
            event,
            plugins,
            reply,
        })
        .await
    }

    /// Leases up to `limit` due deliveries whose plugin is in `loaded`.
    pub async fn claim_deliveries(
        &self,
        loaded: Vec<String>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.call(|reply| Command::ClaimDeliveries {
            loaded,
            limit,
            lease,
            reply,
        })
        .await
    }

    /// Records a delivery's outcome together with its effects, in one transaction.
    pub async fn finish_delivery(
        &self,
        id: i64,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::FinishDelivery { id, outcome, reply })
            .await
    }

    /// Leases up to `limit` due forwards.
    pub async fn claim_forwards(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedForward>, StoreError> {
        self.call(|reply| Command::ClaimForwards {
            limit,
            lease,
            reply,
        })
        .await
    }

    /// Records a forward's outcome.
    pub async fn finish_forward(&self, id: i64, outcome: ForwardOutcome) -> Result<(), StoreError> {
        self.call(|reply| Command::FinishForward { id, outcome, reply })
            .await
    }

    /// Makes dead entries pending again with fresh attempts; returns how many.
    pub async fn replay(&self, target: ReplayTarget) -> Result<usize, StoreError> {
        self.call(|reply| Command::Replay { target, reply }).await
    }
}

/// Replays dead entries directly in the file at `path`, for the `dead replay`
/// command (a running router's writer and this one take turns on SQLite's lock).
/// `progress(done, total)` is called after each committed chunk.
pub fn replay_offline(
    path: &Path,
    target: &ReplayTarget,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<usize> {
    if !path.exists() {
        anyhow::bail!("store {} does not exist", path.display());
    }
    let mut conn = schema::open(path)?;
    let now = || crate::event::unix_ms(std::time::SystemTime::now());
    let ids: Vec<String> = match target {
        ReplayTarget::One(id) => vec![id.clone()],
        ReplayTarget::All => {
            let mut stmt = conn.prepare(
                "SELECT 'd-' || id FROM deliveries WHERE state = 'dead'
                 UNION ALL SELECT 'o-' || id FROM outbox WHERE state = 'dead'",
            )?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        }
    };
    let total = ids.len();
    let mut done = 0;
    let mut replayed = 0;
    // Chunks keep each write transaction short, so a running router is not stalled.
    for chunk in ids.chunks(500) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for id in chunk {
            replayed += ops::replay(&tx, &ReplayTarget::One(id.clone()), now())?;
        }
        tx.commit()?;
        done += chunk.len();
        progress(done, total);
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests;
