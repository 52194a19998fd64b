//! The set of loaded plugins, swapped atomically as a whole.
//!
//! Owns: which file is which plugin (top-level `*.wasm`, name = file stem), the
//! current `PluginSet` snapshot, and the last load error of each name.
//! Never: lets a broken file replace a working version, watches the folder (the
//! reload module drives `load_file`/`remove`), or runs plugins.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::engine::PluginEngine;
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
#[derive(Debug)]
pub struct PluginRegistry {
    engine: PluginEngine,
    current: RwLock<Arc<PluginSet>>,
    writer: Mutex<()>,
}

impl PluginRegistry {
    /// An empty registry loading through `engine`.
    pub fn new(engine: PluginEngine) -> Self {
        PluginRegistry {
            engine,
            current: RwLock::new(Arc::new(PluginSet::default())),
            writer: Mutex::new(()),
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

    /// Loads every plugin file of `dir` and swaps the whole set in. A name whose
    /// file fails keeps its previous version (if any) and records the error; files
    /// whose bytes did not change are not recompiled. Returns the new set.
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
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let mut next = PluginSet::default();
        for (name, path) in files {
            match self.load_path(&old, &name, &path) {
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
    pub fn load_file(&self, path: &Path) -> Result<Plugin, PluginError> {
        let name = plugin_name(path).ok_or_else(|| PluginError::Invalid {
            plugin: path.display().to_string(),
            reason: "not a plugin file (expected a top-level NAME.wasm)".into(),
        })?;
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let mut next = (*old).clone();
        let result = self.load_path(&old, &name, path);
        match &result {
            Ok(plugin) => {
                next.plugins.insert(name.clone(), plugin.clone());
                next.errors.remove(&name);
            }
            Err(error) => {
                next.errors.insert(name, error.clone());
            }
        }
        self.swap(next);
        result
    }

    /// Removes a plugin: it takes no new deliveries; running ones finish.
    pub fn remove(&self, name: &str) -> Option<Plugin> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (*self.snapshot()).clone();
        next.errors.remove(name);
        let removed = next.plugins.remove(name);
        self.swap(next);
        removed
    }

    fn load_path(&self, old: &PluginSet, name: &str, path: &Path) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::Invalid {
            plugin: name.to_string(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        if let Some(current) = old.plugins.get(name) {
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if current.version() == digest {
                return Ok(current.clone());
            }
        }
        let plugin = self.engine.load(name, &bytes)?;
        tracing::info!(plugin = name, version = plugin.short_version(), kind = %plugin.kind(), "plugin loaded");
        Ok(plugin)
    }

    fn swap(&self, next: PluginSet) -> Arc<PluginSet> {
        let next = Arc::new(next);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
        next
    }
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
