//! The durable store: the traits every backend implements, its typed ids, and
//! what crosses them.
//!
//! Owns: the contract between the pipeline and its database. An ingest answers
//! `Ok` only once the event is durable; deliveries and forwards are leased and
//! their outcomes recorded with their effects in one transaction, and only while
//! the lease is still current. Backends: [`sqlite`] (embedded, one process per
//! file) and [`postgres`] (several replicas on one database). Each backend is the
//! only place that names its driver.
//! Never: decides routing, runs plugins or does network I/O beyond its database.
//!
//! Each consumer uses one trait: the ingress [`Ingest`], dispatch and the outbox
//! [`WorkQueue`], the admin API and the CLI [`DeadLetters`] and [`Queries`], the
//! retention task and `/readyz` [`Maintenance`]. [`Store`] is all of them plus the
//! "work is due" wake-ups.

pub mod ids;
mod model;
pub mod postgres;
pub mod sqlite;
mod wake;

#[cfg(test)]
pub(crate) mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use ids::{BadId, DeadId, DeliveryId, EventId, ForwardId};
pub use model::*;
pub use wake::{Wake, Work};

use crate::config::{Backend, Config};
use crate::event::Event;

/// Storing what ingress accepted.
#[async_trait]
pub trait Ingest: Send + Sync {
    /// Stores the event with one pending delivery per plugin, or finds it a
    /// duplicate; answers once that is durable.
    async fn ingest(&self, new: NewEvent) -> Result<Ingested, StoreError> {
        Ok(self.ingest_leased(new, None).await?.0)
    }

    /// [`Ingest::ingest`], with the hand-off: given a `lease`, the backend may
    /// store the deliveries already leased to this process for that long and
    /// answer them as claimed, so their first attempt needs no claim and no
    /// re-read. A backend that hands off nothing answers none; they are then
    /// claimed as usual.
    async fn ingest_leased(
        &self,
        new: NewEvent,
        lease: Option<Duration>,
    ) -> Result<(Ingested, Vec<ClaimedDelivery>), StoreError>;
}

/// Leasing work and recording its outcome.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Leases due deliveries of the named plugins (see [`DeliveryClaim`]).
    async fn claim_deliveries(
        &self,
        claim: DeliveryClaim,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records a delivery's outcome with its effects, if `token` still holds its lease.
    async fn finish_delivery(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        outcome: DeliveryOutcome,
    ) -> Result<Finished, StoreError> {
        Ok(self
            .finish_delivery_leased(id, token, outcome, None)
            .await?
            .0)
    }

    /// [`WorkQueue::finish_delivery`], with the hand-off: given a `lease`, the
    /// backend may store the run's forwards already leased to this process and
    /// answer them as claimed (or hand off none, as with ingest).
    async fn finish_delivery_leased(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        outcome: DeliveryOutcome,
        lease: Option<Duration>,
    ) -> Result<(Finished, Vec<ClaimedForward>), StoreError>;

    /// Leases up to `limit` due forwards.
    async fn claim_forwards(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedForward>, StoreError>;

    /// Records a forward's outcome, if `token` still holds its lease.
    async fn finish_forward(
        &self,
        id: ForwardId,
        token: LeaseToken,
        outcome: ForwardOutcome,
    ) -> Result<Finished, StoreError>;

    /// Gives back every lease this process holds (on shutdown), so other
    /// replicas need not wait for them to expire. Returns how many.
    async fn release_leases(&self) -> Result<usize, StoreError>;
}

/// Dead letters: listing, replay, purge.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Dead deliveries and forwards, newest first.
    async fn dead(&self, filter: &DeadFilter, limit: usize) -> Result<Vec<DeadEntry>, StoreError>;

    /// One dead (or any) delivery or forward, and its event.
    async fn dead_entry(&self, id: DeadId) -> Result<Option<(DeadEntry, Event)>, StoreError>;

    /// Makes the selected entries pending again with fresh attempts; returns how many.
    async fn replay(&self, selection: Selection) -> Result<usize, StoreError>;

    /// Deletes the selected dead entries, and their events when nothing else of
    /// them is pending or dead.
    async fn purge(&self, selection: Selection) -> Result<Purged, StoreError>;
}

/// Reading events for the admin API, the dashboard and the CLI.
#[async_trait]
pub trait Queries: Send + Sync {
    /// Events matching `filter`, newest first.
    async fn events(
        &self,
        filter: &EventFilter,
        page: Page,
    ) -> Result<Vec<EventSummary>, StoreError>;

    /// One event with its deliveries, forwards and their attempts.
    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError>;

    /// Rows by table and state, and sizes.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// Pending deliveries and forwards, sampled for the dashboard's charts
    /// (backends answer it from their indexes of pending work).
    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let c = self.counts().await?;
        Ok(Backlog {
            deliveries: c.deliveries_pending,
            forwards: c.forwards_pending,
        })
    }
}

/// Keeping the store bounded and telling whether it can take events.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// One pruning round: deletes up to `policy.batch` finished event trees older
    /// than the retention, and expired dedupe records.
    async fn prune(&self, policy: Retention) -> Result<Pruned, StoreError>;

    /// Whether ingest would be accepted right now, and why not.
    async fn health(&self) -> Health;
}

/// A backend: every trait above, and the wake-ups that say work is due.
pub trait Store:
    Ingest + WorkQueue + DeadLetters + Queries + Maintenance + std::fmt::Debug
{
    /// Woken after each commit that made deliveries or forwards due.
    fn wake(&self) -> &Wake;

    /// One line naming the backend and where its data is, for logs.
    fn describe(&self) -> String;

    /// Tells the store where this router's admin API listens, so that CLI
    /// commands find it (SQLite writes it into its lock file).
    fn announce(&self, _admin: std::net::SocketAddr) {}
}

/// The store as the router holds it.
pub type SharedStore = Arc<dyn Store>;

/// Opens the store `config` names: migrates it, takes what one process must
/// hold (SQLite's lock file), and starts its writers.
pub async fn open(config: &Config) -> anyhow::Result<SharedStore> {
    match &config.store.backend {
        Backend::Sqlite => {
            let store = sqlite::SqliteStore::open(&config.store.path, config.store.max_backlog)?;
            Ok(Arc::new(store))
        }
        Backend::Postgres { url, .. } => {
            let store = postgres::PgStore::open(url, config.store.max_backlog).await?;
            Ok(Arc::new(store))
        }
    }
}
