//! Health, readiness, metrics, the store's counts and the dashboard's time
//! series: `GET /healthz`, `/readyz`, `/metrics`, `/admin/store`, `/admin/stats`.
//!
//! Owns: refreshing the store gauges at each scrape (row counts, sizes, and
//! `hookrouter_dead_letters_current{plugin}`), and the shape of the stats answer.
//! Never: samples anything itself; the activity sampler closes the intervals.

use hyper::StatusCode;
use serde::Serialize;

use super::api::{self, Answer};
use super::routes::Call;
use crate::activity::Point;
use crate::metrics::METRICS;
use crate::store::{Health, StoreCounts};

pub(super) async fn healthz(_: Call<'_>) -> Answer {
    Ok(api::bytes(StatusCode::OK, "text/plain", "ok\n"))
}

pub(super) async fn readyz(c: Call<'_>) -> Answer {
    let health = c.admin.store.health().await;
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(api::json_with(status, &health))
}

pub(super) async fn metrics(c: Call<'_>) -> Answer {
    let store = &c.admin.store;
    crate::metrics::record_store(&store.health().await, store.counts().await.ok().as_ref());
    Ok(api::bytes(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        METRICS.encode(),
    ))
}

#[derive(Serialize)]
struct StoreAnswer {
    backend: String,
    health: Health,
    counts: StoreCounts,
}

pub(super) async fn store(c: Call<'_>) -> Answer {
    let store = &c.admin.store;
    let health = store.health().await;
    let counts = store.counts().await?;
    api::json(&StoreAnswer {
        backend: store.describe(),
        health,
        counts,
    })
}

#[derive(Serialize)]
struct StatsAnswer {
    /// This replica only: each router samples what it handles.
    scope: &'static str,
    interval_secs: u64,
    /// Oldest first; at most the last hour.
    points: Vec<Point>,
}

pub(super) async fn stats(c: Call<'_>) -> Answer {
    api::json(&StatsAnswer {
        scope: "replica",
        interval_secs: crate::activity::INTERVAL.as_secs(),
        points: c.admin.activity.series().points(),
    })
}
