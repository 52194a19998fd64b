//! hookrouter: a durable webhook router that runs user code as WebAssembly.
//!
//! # Event flow
//!
//! The modules in the order an event passes through them:
//!
//! 1. [`ingress`] — `POST /webhooks/{source}`: body limit, signature
//!    ([`source::verify`]), JSON, event type and id ([`source::presets`]).
//! 2. [`router`] — event type and source → plugin names (a pure function).
//! 3. [`store`] — the event and one delivery per plugin are committed by the
//!    group-committing writer; only then does the ingress answer `202`.
//! 4. [`dispatch`] — workers lease due deliveries and run each in a fresh
//!    sandboxed instance from [`plugins`]; the outcome is stored atomically with
//!    its effects (forwards, emitted events) or scheduled for retry / dead-lettered.
//! 5. [`outbox`] — forwards are POSTed by the host, with their own retries.
//! 6. [`reload`] — a watcher swaps the plugin set and the [`config`] atomically.
//! 7. [`retention`] — finished events are pruned once past `[store] retention`.
//!
//! Around them: [`admin`] (health, metrics, admin API), [`metrics`], [`live`]
//! (the running config snapshot), [`event`] (the one `Event` type) and [`cli`].

pub mod admin;
pub mod cli;
pub mod dispatch;
mod http;
pub mod ingress;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod plugins;
mod pool;
pub mod reload;
pub mod retention;
pub mod router;
pub mod store;

pub use hookrouter_core::{config, event, source};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::plugins::{EngineOptions, Limits, PluginEngine, PluginRegistry};

/// How long shutdown waits for in-flight deliveries and forwards.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Builds the plugin engine the config asks for. The compile cache lives beside
/// the SQLite store, or beside `router.toml` with PostgreSQL (each replica has
/// its own), so a restart does not recompile unchanged plugins.
pub fn plugin_engine(config: &Config) -> anyhow::Result<PluginEngine> {
    let home = match config.store.backend {
        config::Backend::Sqlite => config.store.path.parent(),
        config::Backend::Postgres { .. } => config.path.parent(),
    };
    let cache_dir = home
        .map(|d| d.join("plugin-cache"))
        .unwrap_or_else(|| "plugin-cache".into());
    PluginEngine::new(EngineOptions {
        limits: Limits::from_config(
            config.plugins.timeout.as_millis() as u64,
            config.plugins.memory_bytes >> 20,
        ),
        cache_dir: Some(cache_dir),
        ..EngineOptions::default()
    })
}

/// Runs the router on the given listeners until `shutdown` resolves: stops
/// accepting webhooks, lets in-flight deliveries and forwards finish (or gives
/// their leases back), then returns.
pub async fn run(
    config: Config,
    ingress_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with_ready(
        config,
        ingress_listener,
        admin_listener,
        shutdown,
        |_, _| {},
    )
    .await
}

/// Like [`run`], calling `ready(ingress, admin)` once the store is open, the
/// plugins are loaded and both listeners serve.
pub async fn run_with_ready(
    config: Config,
    ingress_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    ready: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr),
) -> anyhow::Result<()> {
    for w in &config.warnings {
        tracing::warn!("{}: {w}", config.path.display());
    }
    let store = store::open(&config).await?;
    tracing::info!(store = %store.describe(), "store open");
    let registry = Arc::new(PluginRegistry::new(plugin_engine(&config)?));
    let plugin_dir = config.plugins.dir.clone();
    if plugin_dir.is_dir() {
        let set = registry
            .load_dir(&plugin_dir)
            .with_context(|| format!("cannot read plugin folder {}", plugin_dir.display()))?;
        // The registry logs each plugin it loads (and each it refuses).
        for p in set.plugins() {
            metrics::record_loaded(p.name(), p.version());
        }
    } else {
        tracing::warn!(dir = %plugin_dir.display(), "plugin folder does not exist yet; deliveries wait for plugins to appear");
    }
    let header_timeout = config.server.header_timeout;
    let live = live::shared(config);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dispatcher = dispatch::Dispatcher {
        store: store.clone(),
        live: live.clone(),
        registry: registry.clone(),
    };
    let dispatch_task = tokio::spawn(dispatcher.run(stop_rx.clone()));
    let outbox = outbox::Outbox::new(store.clone(), live.clone())?;
    let outbox_task = tokio::spawn(outbox.run(stop_rx.clone()));
    let retention_task = tokio::spawn(retention::run(store.clone(), live.clone(), stop_rx.clone()));
    let reload_task = reload::spawn(
        live.clone(),
        registry.clone(),
        store.clone(),
        stop_rx.clone(),
    )?;

    let ingress = ingress::Ingress {
        live: live.clone(),
        store: store.clone(),
    };
    let admin = admin::Admin {
        live: live.clone(),
        store: store.clone(),
        registry,
    };
    let admin_addr = admin_listener.local_addr()?;
    store.announce(admin_addr);
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin, async {
        let _ = admin_stop_rx.await;
    }));

    ready(ingress_listener.local_addr()?, admin_addr);
    ingress::serve(ingress_listener, ingress, header_timeout, shutdown).await;
    tracing::info!("shutting down: ingress closed, finishing in-flight work");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = dispatch_task.await;
        let _ = outbox_task.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight work did not finish within {SHUTDOWN_GRACE:?}");
    }
    // Whatever is still leased (claimed ahead, or cut off by the grace period)
    // goes back now, so other replicas need not wait for the leases to expire.
    match store.release_leases().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "leases given back"),
        Err(e) => tracing::warn!(error = %e, "cannot give leases back; they expire by themselves"),
    }
    retention_task.abort();
    reload_task.abort();
    let _ = admin_stop_tx.send(());
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}
