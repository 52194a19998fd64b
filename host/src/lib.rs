//! hookrouter: a durable webhook router that runs user code as WebAssembly.
//!
//! # Event flow
//!
//! The modules in the order an event passes through them:
//!
//! 1. [`ingress`] — `POST /webhooks/{source}` over guarded
//!    connections: body limit and in-flight budget, then [`intake`] (pure):
//!    signature ([`source::verify`]), JSON, event type and id
//!    ([`source::presets`]), credential headers dropped.
//! 2. [`router`] — event type and source → plugin names (a pure function).
//! 3. [`store`] — the event and one delivery per plugin are committed by the
//!    group-committing writer; only then does the ingress answer `202`.
//! 4. [`dispatch`] — workers lease due deliveries and run each in a fresh
//!    sandboxed instance from [`plugins`], sharing the workers fairly between
//!    plugins (`scheduler`); the outcome is stored atomically with its effects
//!    (forwards, emitted events) or scheduled for retry / dead-lettered.
//! 5. [`outbox`] — forwards are POSTed by the host, with their own retries,
//!    to addresses [`forward_policy`] allows (checked again after resolving).
//! 6. [`reload`] — a watcher swaps the plugin set and the [`config`] atomically.
//! 7. [`retention`] — finished events are pruned once past `[store] retention`.
//!
//! Around them: [`admin`] (health, metrics, admin API behind its guard,
//! dashboard), [`activity`] (what this replica does, live: the event stream and
//! the charts' samples), [`metrics`], [`live`] (the running config snapshot),
//! [`event`] (the one `Event` type) and [`cli`].

pub mod activity;
pub mod admin;
pub mod cli;
pub mod dispatch;
mod handoff;
mod http;
pub mod ingress;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod plugins;
pub mod reload;
pub mod retention;
pub mod router;
mod scheduler;
pub mod store;

pub use hookrouter_core::{
    command_abi, config, event, forward_policy, intake, log_safe, net, source,
};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::plugins::{EngineOptions, Limits, PluginEngine, PluginRegistry};

/// How long shutdown waits for in-flight deliveries and forwards.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Builds the plugin engine the config asks for: an instance slot per worker,
/// sized for the largest `memory_mb` of any plugin, with the compile cache in
/// `plugins.cache_dir` (by default beside the store), so a restart does not
/// recompile unchanged plugins.
pub fn plugin_engine(config: &Config) -> anyhow::Result<PluginEngine> {
    let (_, max_memory) = config.plugin_maxima();
    PluginEngine::new(EngineOptions {
        limits: plugin_limits(config, ""),
        max_concurrency: u32::try_from(config.plugins.workers).unwrap_or(u32::MAX),
        max_memory_bytes: Some(usize::try_from(max_memory).unwrap_or(usize::MAX)),
        cache_dir: Some(config.plugins.cache_dir.clone()),
        max_plugin_bytes: config.plugins.max_plugin_bytes,
        ..EngineOptions::default()
    })
}

/// The limits one run of `plugin` obeys: its own `timeout_ms` and `memory_mb`
/// (else the `[plugins]` ones), the per-run emit cap, and `server.max_body_bytes`
/// for the data of an emitted event.
pub fn plugin_limits(config: &Config, plugin: &str) -> Limits {
    Limits {
        timeout: config.plugin_timeout(plugin),
        memory_bytes: usize::try_from(config.plugin_memory_bytes(plugin)).unwrap_or(usize::MAX),
        max_emits_per_run: config.plugins.max_emits_per_run as usize,
        max_emit_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        ..Limits::default()
    }
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
    let ingress_addr = ingress_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    admin::guard::check_exposure(admin_addr, &config)?;
    http::raise_nofile_limit();
    let store = store::open(&config).await?;
    tracing::info!(store = %store.describe(), "store open");
    // Everything below sees the store through the activity feed.
    let activity = Arc::new(activity::Activity::new());
    let store: store::SharedStore = Arc::new(activity::Observed::new(store, activity.clone()));
    let registry = Arc::new(PluginRegistry::new(plugin_engine(&config)?));
    let plugin_dir = config.plugins.dir.clone();
    if plugin_dir.is_dir() {
        // Compiled in parallel on the engine's compile threads, off the runtime.
        let (r, dir) = (registry.clone(), plugin_dir.clone());
        let set = tokio::task::spawn_blocking(move || r.load_dir(&dir))
            .await
            .context("the plugin loading task failed")?
            .with_context(|| format!("cannot read plugin folder {}", plugin_dir.display()))?;
        // The registry logs each plugin it loads (and each it refuses).
        for p in set.plugins() {
            metrics::record_loaded(p.name(), p.version());
        }
    } else {
        tracing::warn!(dir = %plugin_dir.display(), "plugin folder does not exist yet; deliveries wait for plugins to appear");
    }
    let conns = http::Conns::new(config.server.max_connections);
    let budget = ingress::Budget::new(config.server.max_inflight_bytes);
    let live = live::shared(config);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Work just committed goes to its workers in memory (see `handoff`).
    let (handoff, inboxes) = {
        let c = &live.load().config;
        handoff::Handoff::new(
            c.plugins.workers * dispatch::HANDOFF_PER_WORKER,
            c.outbox.workers * dispatch::HANDOFF_PER_WORKER,
        )
    };
    let dispatcher = dispatch::Dispatcher::new(
        store.clone(),
        live.clone(),
        registry.clone(),
        handoff.clone(),
    );
    let dispatch_task = tokio::spawn(dispatcher.run(stop_rx.clone(), inboxes.deliveries));
    let outbox = outbox::Outbox::new(store.clone(), live.clone(), vec![ingress_addr, admin_addr])?;
    let outbox_task = tokio::spawn(outbox.run(stop_rx.clone(), inboxes.forwards));
    let retention_task = tokio::spawn(retention::run(store.clone(), live.clone(), stop_rx.clone()));
    let trim_task = tokio::spawn(memory::trim(stop_rx.clone()));
    let sampler_task = tokio::spawn(activity::sample(
        activity.clone(),
        store.clone(),
        stop_rx.clone(),
    ));
    let reload_task = reload::spawn(
        live.clone(),
        registry.clone(),
        store.clone(),
        stop_rx.clone(),
    )?;

    let ingress = ingress::Ingress {
        live: live.clone(),
        store: store.clone(),
        budget,
        handoff,
        registry: registry.clone(),
    };
    let admin = admin::Admin {
        live: live.clone(),
        store: store.clone(),
        registry,
        guard: admin::guard::Guard::new(admin_addr),
        activity,
        stop: stop_rx.clone(),
    };
    store.announce(admin_addr);
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin, conns.clone(), async {
        let _ = admin_stop_rx.await;
    }));

    ready(ingress_addr, admin_addr);
    ingress::serve(ingress_listener, ingress, conns, shutdown).await;
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
    trim_task.abort();
    sampler_task.abort();
    reload_task.abort();
    let _ = admin_stop_tx.send(());
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}
