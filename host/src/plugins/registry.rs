//! The set of loaded plugins, swapped atomically as a whole.
//!
//! Owns: which file is which plugin (top-level `*.wasm`, name = file stem), the
//! current `PluginSet` snapshot, the last load error of each name, and the order
//! in which changes of one name are applied.
//! Never: lets a broken file replace a working version, reads a file larger than
//! `plugins.max_plugin_bytes`, holds its lock while compiling, watches the folder
//! (the reload module drives `reload_file`/`remove`), or runs plugins.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::engine::{PluginEngine, too_large};
use super::error::PluginError;
use super::plugin::Plugin;

/// An immutable snapshot: name → plugin, plus the names whose last load failed.
#[derive(Debug, Default, Clone)]
pub struct PluginSet {
    plugins: BTreeMap<String, Plugin>,
    errors: BTreeMap<String, PluginError>,
}

impl PluginSet {
    /// The plugin of that name.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.get(name)
    }

    /// Every loaded plugin, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }

    /// The last load error of each name whose latest file failed (a working older
    /// version may still be loaded under the same name).
    pub fn errors(&self) -> impl Iterator<Item = (&str, &PluginError)> {
        self.errors.iter().map(|(n, e)| (n.as_str(), e))
    }
}

/// The live plugin set. Readers take a cheap snapshot; writers build a new set and
/// swap it in, so a reader never sees a half-updated set.
///
/// Reading and compiling a file happen on the engine's compile threads, without
/// any lock: the lock is held only to swap a finished set in, so a slow compile
/// never holds up the reload of another plugin. Each load or removal of a name
/// takes a ticket; a load that finishes after a newer change of the same name was
/// asked for is dropped, so files are applied in the order they changed.
#[derive(Debug)]
pub struct PluginRegistry {
    engine: PluginEngine,
    current: RwLock<Arc<PluginSet>>,
    writer: Mutex<()>,
    /// The latest ticket of each name.
    latest: Mutex<HashMap<String, u64>>,
    tickets: AtomicU64,
}

impl PluginRegistry {
    /// An empty registry loading through `engine`.
    pub fn new(engine: PluginEngine) -> Self {
        PluginRegistry {
            engine,
            current: RwLock::new(Arc::new(PluginSet::default())),
            writer: Mutex::new(()),
            latest: Mutex::new(HashMap::new()),
            tickets: AtomicU64::new(0),
        }
    }

    /// The engine plugins are loaded with.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The current set.
    pub fn snapshot(&self) -> Arc<PluginSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current version of a plugin.
    pub fn get(&self, name: &str) -> Option<Plugin> {
        self.snapshot().get(name).cloned()
    }

    /// Like [`PluginRegistry::get`], but `NotFound` (or the last load error) when absent.
    pub fn require(&self, name: &str) -> Result<Plugin, PluginError> {
        let set = self.snapshot();
        match set.get(name) {
            Some(p) => Ok(p.clone()),
            None => Err(set
                .errors
                .get(name)
                .cloned()
                .unwrap_or(PluginError::NotFound {
                    plugin: name.to_string(),
                })),
        }
    }

    /// Loads every plugin file of `dir`, compiling them in parallel on the
    /// engine's compile threads, and swaps the whole set in. A name whose file
    /// fails keeps its previous version (if any) and records the error; files
    /// whose bytes did not change are not recompiled. Returns the new set.
    ///
    /// Blocking: call it outside the async runtime (`spawn_blocking`).
    pub fn load_dir(&self, dir: &Path) -> std::io::Result<Arc<PluginSet>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            // `is_file` follows symlinks: a linked plugin counts, a sub-folder not.
            if !path.is_file() {
                continue;
            }
            if let Some(name) = plugin_name(&path) {
                files.push((name, path));
            }
        }
        let old = self.snapshot();
        let jobs: Vec<_> = files
            .into_iter()
            .map(|(name, path)| {
                let ticket = self.ticket(&name);
                let job = self.submit(&name, &path, old.plugins.get(&name).cloned());
                (name, path, ticket, job)
            })
            .collect();
        let mut loaded = Vec::with_capacity(jobs.len());
        for (name, path, ticket, job) in jobs {
            let result = job
                .blocking_recv()
                .unwrap_or_else(|_| Err(compile_thread_failed(&name)));
            loaded.push((name, path, ticket, result));
        }
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let mut next = PluginSet::default();
        for (name, path, ticket, result) in loaded {
            if !self.is_latest(&name, ticket) {
                // Changed again meanwhile: that later change decides.
                if let Some(p) = old.plugins.get(&name) {
                    next.plugins.insert(name, p.clone());
                }
                continue;
            }
            match result {
                Ok(plugin) => {
                    next.plugins.insert(name, plugin);
                }
                Err(error) => {
                    tracing::warn!(%error, path = %path.display(), "plugin not loaded");
                    if let Some(previous) = old.plugins.get(&name) {
                        next.plugins.insert(name.clone(), previous.clone());
                    }
                    next.errors.insert(name, error);
                }
            }
        }
        Ok(self.swap(next))
    }

    /// Loads (or reloads) one plugin file and replaces that one entry. On failure
    /// the previous version keeps serving and the error is recorded and returned.
    /// Blocking: it compiles on the calling thread.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, PluginError> {
        let name = file_plugin_name(path)?;
        let ticket = self.ticket(&name);
        let result = load(&self.engine, &name, path, self.get(&name));
        self.install(&name, ticket, result.clone());
        result
    }

    /// Like [`PluginRegistry::load_file`], compiling on one of the engine's compile
    /// threads while the caller awaits. `None`: a newer change of the same file
    /// arrived meanwhile, and this load was dropped in its favour.
    pub async fn reload_file(&self, path: &Path) -> Option<Result<Plugin, PluginError>> {
        let name = match file_plugin_name(path) {
            Ok(name) => name,
            Err(e) => return Some(Err(e)),
        };
        let ticket = self.ticket(&name);
        let result = self
            .submit(&name, path, self.get(&name))
            .await
            .unwrap_or_else(|_| Err(compile_thread_failed(&name)));
        self.install(&name, ticket, result.clone())
            .then_some(result)
    }

    /// Removes a plugin: it takes no new deliveries; running ones finish. A load
    /// of the same name still compiling is dropped.
    pub fn remove(&self, name: &str) -> Option<Plugin> {
        self.ticket(name);
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (*self.snapshot()).clone();
        next.errors.remove(name);
        let removed = next.plugins.remove(name);
        self.swap(next);
        removed
    }

    /// Reads and compiles `path` on a compile thread.
    fn submit(
        &self,
        name: &str,
        path: &Path,
        current: Option<Plugin>,
    ) -> tokio::sync::oneshot::Receiver<Result<Plugin, PluginError>> {
        let (engine, name, path) = (self.engine.clone(), name.to_string(), path.to_path_buf());
        self.engine
            .inner
            .compiler
            .submit(move || load(&engine, &name, &path, current))
    }

    /// Swaps `result` in for `name` unless a newer ticket was taken; whether it did.
    fn install(&self, name: &str, ticket: u64, result: Result<Plugin, PluginError>) -> bool {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_latest(name, ticket) {
            tracing::debug!(
                plugin = name,
                "a newer change of this plugin superseded a load"
            );
            return false;
        }
        let mut next = (*self.snapshot()).clone();
        match result {
            Ok(plugin) => {
                next.plugins.insert(name.to_string(), plugin);
                next.errors.remove(name);
            }
            Err(error) => {
                next.errors.insert(name.to_string(), error);
            }
        }
        self.swap(next);
        true
    }

    fn ticket(&self, name: &str) -> u64 {
        let t = self.tickets.fetch_add(1, Ordering::Relaxed) + 1;
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), t);
        t
    }

    fn is_latest(&self, name: &str, ticket: u64) -> bool {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            == Some(&ticket)
    }

    fn swap(&self, next: PluginSet) -> Arc<PluginSet> {
        let next = Arc::new(next);
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            next.clone(),
        );
        // New versions go into the cache's history; entries no version in use
        // and none of the last two of a plugin needs are removed.
        let fresh: Vec<(&str, &str)> = next
            .plugins
            .iter()
            .filter(|(name, p)| {
                old.plugins
                    .get(*name)
                    .is_none_or(|o| o.version() != p.version())
            })
            .map(|(name, p)| (name.as_str(), p.version()))
            .collect();
        if !fresh.is_empty() {
            let loaded: Vec<&str> = next.plugins.values().map(|p| p.version()).collect();
            super::cache::collect(&self.engine, &fresh, &loaded);
        }
        next
    }
}

fn file_plugin_name(path: &Path) -> Result<String, PluginError> {
    plugin_name(path).ok_or_else(|| PluginError::Invalid {
        plugin: path.display().to_string(),
        reason: "not a plugin file (expected a top-level NAME.wasm)".into(),
    })
}

fn compile_thread_failed(name: &str) -> PluginError {
    PluginError::Invalid {
        plugin: name.to_string(),
        reason: "the compile thread failed (see the log)".into(),
    }
}

/// Reads `path` (unless it is larger than the engine allows: then it is not read
/// at all) and compiles it, or returns `current` if the bytes did not change.
fn load(
    engine: &PluginEngine,
    name: &str,
    path: &Path,
    current: Option<Plugin>,
) -> Result<Plugin, PluginError> {
    let invalid = |reason: String| PluginError::Invalid {
        plugin: name.to_string(),
        reason,
    };
    let max = engine.max_plugin_bytes();
    let mut file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let size = file
        .metadata()
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
        .len();
    if size > max {
        return Err(invalid(format!(
            "{}; it was not read",
            too_large(size, max)
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    (&mut file)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!(
            "{} (it grew while being read)",
            too_large(bytes.len() as u64, max)
        )));
    }
    if let Some(current) = current {
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if current.version() == digest {
            return Ok(current);
        }
    }
    let plugin = engine.load(name, &bytes)?;
    tracing::info!(plugin = name, version = plugin.short_version(), kind = %plugin.kind(), "plugin loaded");
    Ok(plugin)
}

/// The plugin name of a path, if it is a plugin file: `NAME.wasm`, not a dotfile,
/// not an editor or copy temp file. (Whether it is top-level is the caller's
/// business: `load_dir` only lists its own folder.)
pub fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".wasm")?;
    let temp = stem.is_empty()
        || file.starts_with('.')
        || file.starts_with('#')
        || stem.ends_with('~')
        || stem.contains(".tmp")
        || stem.contains(".part");
    (!temp).then(|| stem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_from_paths() {
        assert_eq!(
            plugin_name(Path::new("p/audit.wasm")).as_deref(),
            Some("audit")
        );
        assert_eq!(plugin_name(Path::new("p/.audit.wasm")), None);
        assert_eq!(plugin_name(Path::new("p/audit.wasm.tmp")), None);
        assert_eq!(plugin_name(Path::new("p/audit.tmp.wasm")), None);
        assert_eq!(plugin_name(Path::new("p/audit.txt")), None);
        assert_eq!(plugin_name(Path::new("p/.wasm")), None);
    }
}
