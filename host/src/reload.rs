//! Hot reload: watches the plugin folder and `router.toml`, and swaps plugins and
//! config atomically, off the request path.
//!
//! Owns: the `notify` watcher (inotify, or polling where inotify is unavailable or
//! out of watches), debouncing, and deciding what a change means (load, replace,
//! remove a plugin; re-validate and swap the config).
//! Never: lets a broken plugin file or an invalid config replace a working one,
//! and never drops or fails a delivery: deliveries of a removed plugin wait.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{
    Config as NotifyConfig, Event as FsEvent, EventKind, PollWatcher, RecommendedWatcher,
    RecursiveMode, Watcher,
};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::live::{Live, Shared};
use crate::metrics::{METRICS, ReloadLabels};
use crate::plugins::{PluginRegistry, plugin_name};
use crate::store::{SharedStore, Work};

/// Quiet time after the last file event before acting on a burst of them.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A file written without pause is acted on after this long all the same.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// Starts watching; the returned task ends when `stop` turns true.
pub(crate) fn spawn(
    live: Shared,
    registry: Arc<PluginRegistry>,
    store: SharedStore,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (plugin_dir, config_path) = {
        let l = live.load();
        (l.config.plugins.dir.clone(), l.config.path.clone())
    };
    if !plugin_dir.exists() {
        std::fs::create_dir_all(&plugin_dir)?;
        tracing::info!(dir = %plugin_dir.display(), "created the plugin folder");
    }
    let config_dir = canonical(
        config_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    );
    let plugin_dir = canonical(&plugin_dir);
    let (tx, mut rx) = mpsc::unbounded_channel::<Change>();
    // Cheap first filter, on the watcher's thread: only the config file's name
    // and plugin file names go on. A log file or the store kept in one of these
    // folders is written constantly, and each of its events would otherwise
    // cost a canonicalize and a wake-up of this task.
    let config_name = config_path.file_name().map(|n| n.to_os_string());
    let maybe_relevant =
        move |p: &Path| p.file_name() == config_name.as_deref() || plugin_name(p).is_some();
    let watcher = start_watcher(
        &[plugin_dir.clone(), config_dir.clone()],
        tx,
        maybe_relevant,
    )?;
    let reloader = Reloader {
        live,
        registry,
        store,
        plugin_dir,
        config_dir,
        config_path,
    };
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with the task
        // Plugin reloads run beside this loop (and beside each other): a slow
        // compile never delays the next file or `router.toml`. Aborted with the task.
        let mut reloads = tokio::task::JoinSet::new();
        loop {
            while reloads.try_join_next().is_some() {}
            let first = tokio::select! {
                p = rx.recv() => p,
                _ = stop.changed() => None,
            };
            let Some(first) = first else { break };
            // Other files in these folders (logs, the store) neither start nor
            // extend a debounce window.
            if !reloader.is_relevant(&first.path) {
                continue;
            }
            // A file renamed into place or closed after writing is complete:
            // it is acted on at once. Only partial writes are debounced: act
            // once the relevant files have been quiet for DEBOUNCE (at most
            // MAX_DEBOUNCE after the first event), or as soon as the file
            // being written is closed.
            let mut paths = BTreeSet::new();
            let mut complete = first.complete;
            paths.insert(first.path);
            let window = tokio::time::Instant::now() + MAX_DEBOUNCE;
            let mut quiet_until = tokio::time::Instant::now() + DEBOUNCE;
            while !complete
                && let Ok(Some(c)) =
                    tokio::time::timeout_at(quiet_until.min(window), rx.recv()).await
            {
                if reloader.is_relevant(&c.path) {
                    paths.insert(c.path);
                    complete = c.complete;
                    quiet_until = tokio::time::Instant::now() + DEBOUNCE;
                }
            }
            // Whatever else is already queued goes with this round.
            while let Ok(c) = rx.try_recv() {
                if reloader.is_relevant(&c.path) {
                    paths.insert(c.path);
                }
            }
            reloader.apply(paths, &mut reloads).await;
        }
    }))
}

enum AnyWatcher {
    Native(#[allow(dead_code)] RecommendedWatcher),
    Poll(#[allow(dead_code)] PollWatcher),
}

/// A file event that may matter: the path, and whether the file is complete
/// (renamed into place, closed after writing, or removed) rather than being
/// written.
#[derive(Debug)]
struct Change {
    path: PathBuf,
    complete: bool,
}

/// Whether an event leaves its file complete. A rename into the folder (the
/// way to publish a plugin: `IN_MOVED_TO`) and a close after writing
/// (`IN_CLOSE_WRITE`) do; so does a removal. A write or a create may be
/// followed by more writes.
fn completes(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            | EventKind::Remove(_)
    )
}

fn start_watcher(
    dirs: &[PathBuf],
    tx: mpsc::UnboundedSender<Change>,
    maybe_relevant: impl Fn(&Path) -> bool + Clone + Send + 'static,
) -> anyhow::Result<AnyWatcher> {
    let handler = move |res: notify::Result<FsEvent>| match res {
        // Reading a file (as a reload does) is no change; only writes, creates,
        // renames, removes and the close after a write are.
        Ok(ev) if matches!(ev.kind, EventKind::Access(_)) && !completes(&ev.kind) => {}
        // inotify reports a rename as `From` and `To`, then once more as `Both`
        // with the two paths: acting on that too would reload the file twice.
        Ok(ev)
            if matches!(
                ev.kind,
                EventKind::Modify(ModifyKind::Name(RenameMode::Both))
            ) => {}
        Ok(ev) => {
            let complete = completes(&ev.kind);
            for path in ev.paths {
                if maybe_relevant(&path) {
                    let _ = tx.send(Change { path, complete });
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "file watcher error"),
    };
    let native =
        RecommendedWatcher::new(handler.clone(), NotifyConfig::default()).and_then(|mut w| {
            for d in dirs {
                w.watch(d, RecursiveMode::NonRecursive)?;
            }
            Ok(w)
        });
    match native {
        Ok(w) if std::env::var_os("HOOKROUTER_POLL_WATCH").is_none() => Ok(AnyWatcher::Native(w)),
        other => {
            match &other {
                Err(e) => {
                    tracing::warn!(error = %e, "inotify unavailable (watch limit?); falling back to polling the plugin folder every 500 ms")
                }
                Ok(_) => tracing::info!(
                    "HOOKROUTER_POLL_WATCH is set: polling the plugin folder every 500 ms"
                ),
            }
            let mut w = PollWatcher::new(
                handler,
                NotifyConfig::default()
                    .with_poll_interval(Duration::from_millis(500))
                    .with_compare_contents(true),
            )?;
            for d in dirs {
                w.watch(d, RecursiveMode::NonRecursive)?;
            }
            Ok(AnyWatcher::Poll(w))
        }
    }
}

#[derive(Clone)]
struct Reloader {
    live: Shared,
    registry: Arc<PluginRegistry>,
    store: SharedStore,
    /// Canonical folders, to compare with the paths in file events.
    plugin_dir: PathBuf,
    config_dir: PathBuf,
    config_path: PathBuf,
}

impl Reloader {
    fn is_relevant(&self, p: &Path) -> bool {
        let parent = p.parent().map(canonical);
        (p.file_name() == self.config_path.file_name() && parent.as_ref() == Some(&self.config_dir))
            || (parent.as_ref() == Some(&self.plugin_dir) && plugin_name(p).is_some())
    }

    async fn apply(&self, paths: BTreeSet<PathBuf>, reloads: &mut tokio::task::JoinSet<()>) {
        let config_name = self.config_path.file_name();
        let mut config_changed = false;
        let mut plugin_files = Vec::new();
        for p in paths {
            let parent = p.parent().map(canonical);
            if p.file_name() == config_name && parent.as_ref() == Some(&self.config_dir) {
                config_changed = true;
            } else if parent.as_ref() == Some(&self.plugin_dir) && plugin_name(&p).is_some() {
                plugin_files.push(p);
            }
        }
        if config_changed {
            self.reload_config().await;
        }
        for path in plugin_files {
            let this = self.clone();
            reloads.spawn(async move { this.reload_plugin(path).await });
        }
    }

    /// Compiles a changed plugin on the engine's compile threads (or removes a
    /// deleted one) and swaps it in.
    async fn reload_plugin(&self, path: PathBuf) {
        let Some(name) = plugin_name(&path) else {
            return;
        };
        let exists = path.is_file();
        let result = if exists {
            self.registry.reload_file(&path).await
        } else {
            self.registry.remove(&name).map(Ok)
        };
        let label = |outcome| ReloadLabels {
            kind: "plugin",
            outcome,
        };
        match result {
            Some(Ok(p)) if exists => {
                METRICS.reloads.get_or_create(&label("ok")).inc();
                crate::metrics::record_loaded(p.name(), p.version());
                tracing::info!(
                    plugin = p.name(),
                    version = p.short_version(),
                    "plugin loaded"
                );
            }
            Some(Ok(p)) => {
                METRICS.reloads.get_or_create(&label("removed")).inc();
                tracing::info!(
                    plugin = p.name(),
                    "plugin removed; its deliveries wait for it to return"
                );
            }
            Some(Err(e)) => {
                METRICS.reloads.get_or_create(&label("error")).inc();
                tracing::error!(error = %e, "plugin not replaced; the previous version (if any) keeps serving");
            }
            None => {}
        }
        // New or restored plugins may have deliveries waiting.
        self.store.wake().notify(Work::Deliveries);
    }

    async fn reload_config(&self) {
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let label = |outcome| ReloadLabels {
            kind: "config",
            outcome,
        };
        let mut next = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                METRICS.reloads.get_or_create(&label("error")).inc();
                tracing::error!("config not reloaded, keeping the running one: {e}");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload task failed");
                return;
            }
        };
        let current = self.live.load_full();
        for what in keep_restart_settings(&current.config, &mut next) {
            tracing::warn!(
                "{what} changed in {}; it takes effect after a restart",
                self.config_path.display()
            );
        }
        for w in &next.warnings {
            tracing::warn!("{}: {w}", self.config_path.display());
        }
        // Deadlines and memory caps apply from the next run on; the pool's
        // memory size was fixed at start.
        let pool = self.registry.engine().max_memory_bytes() as u64;
        if next.plugin_maxima().1 > pool {
            tracing::warn!(
                "a memory_mb in {} is above what the instance pool was sized for at start ({} MiB); runs are capped there until a restart",
                self.config_path.display(),
                pool >> 20
            );
        }
        let routes = next.routes.len();
        self.live.store(Arc::new(Live::new(next)));
        METRICS.reloads.get_or_create(&label("ok")).inc();
        tracing::info!(routes, "config reloaded");
        self.store.wake().notify(Work::Deliveries);
    }
}

/// Copies settings that cannot change while running from `current` into `next`;
/// returns the names of those that differed.
fn keep_restart_settings(current: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if current.$($field).+ != next.$($field).+ {
                changed.push($name);
                next.$($field).+ = current.$($field).+.clone();
            }
        };
    }
    keep!(server.listen, "server.listen");
    keep!(server.admin_listen, "server.admin_listen");
    keep!(server.header_timeout, "server.header_timeout_ms");
    keep!(store, "[store]");
    keep!(plugins.dir, "plugins.dir");
    keep!(plugins.workers, "plugins.workers");
    keep!(plugins.max_plugin_bytes, "plugins.max_plugin_bytes");
    keep!(plugins.cache_dir, "plugins.cache_dir");
    keep!(outbox.workers, "outbox.workers");
    changed
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
