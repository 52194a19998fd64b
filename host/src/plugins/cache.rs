//! The on-disk cache of compiled plugins, keyed by content hash and by the
//! engine's compatibility hash.
//!
//! Owns: the file names and the write protocol of cache entries (temp file, then
//! rename; never rewrite an entry in place, see wasmtime #10283), whether the
//! cache folder may be trusted at all, and which entries are kept (those of the
//! versions loaded now, and the last two versions of each plugin, for quick
//! rollbacks; see [`collect`]).
//! Never: memory-maps a cache file (entries are read into memory, then
//! deserialized), loads an entry from a folder others can write, or decides
//! whether a plugin is valid.
//!
//! # Threat model of `deserialize`
//!
//! `Module::deserialize` and `Component::deserialize` trust their input entirely:
//! a cache entry is native machine code that wasmtime maps executable and jumps
//! into, checked only for its header and for the engine's compatibility, not
//! validated as wasm. Whoever can write an entry that the router loads runs code
//! as the router, outside every sandbox: with its environment (the webhook
//! secrets, the admin token), its store and its network. So:
//!
//! - the folder is created `0700`, and an entry is read only if the folder is owned
//!   by the router's own user and is not group- or world-writable, and the entry
//!   file is too (the router writes entries `0600`); anything else is refused with
//!   a warning, and the plugin is compiled from its `.wasm` instead (nothing is
//!   written into a folder that is refused);
//! - entries are named by the plugin's SHA-256 and the engine's compatibility
//!   hash, so an entry is never taken for another plugin or another engine build;
//! - entries are read into memory before they are deserialized, so a file rewritten
//!   while in use cannot change code that runs (nor crash it with SIGBUS).
//!
//! Out of scope: root and the router's own user (they can change the router
//! itself), a file system that misreports ownership (keep the cache on a local
//! disk), and a parent folder that others may rename (the new folder would not be
//! owned by the router's user, and is refused).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::engine::PluginEngine;

/// A compiled component, from the cache or fresh.
pub(crate) fn component(
    engine: &PluginEngine,
    version: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let inner = &engine.inner;
    let Some(dir) = trusted_dir(engine) else {
        compiling(engine, version, bytes);
        return Component::new(&inner.engine, bytes);
    };
    let path = entry_path(&inner.engine, dir, version, "component");
    if let Some(cached) = read(&path)
        && let Ok(component) = unsafe_component(&inner.engine, &cached)
    {
        return Ok(component);
    }
    compiling(engine, version, bytes);
    let compiled = inner.engine.precompile_component(bytes)?;
    write(&path, &compiled);
    unsafe_component(&inner.engine, &compiled)
}

/// A compiled core module, from the cache or fresh.
pub(crate) fn module(
    engine: &PluginEngine,
    version: &str,
    bytes: &[u8],
) -> wasmtime::Result<Module> {
    let inner = &engine.inner;
    let Some(dir) = trusted_dir(engine) else {
        compiling(engine, version, bytes);
        return Module::new(&inner.engine, bytes);
    };
    let path = entry_path(&inner.engine, dir, version, "module");
    if let Some(cached) = read(&path)
        && let Ok(module) = unsafe_module(&inner.engine, &cached)
    {
        return Ok(module);
    }
    compiling(engine, version, bytes);
    let compiled = inner.engine.precompile_module(bytes)?;
    write(&path, &compiled);
    unsafe_module(&inner.engine, &compiled)
}

/// Counts a compile, and logs it when a cache was configured (without one, as in
/// tests and `run-plugin`, every load compiles).
fn compiling(engine: &PluginEngine, version: &str, bytes: &[u8]) {
    let inner = &engine.inner;
    inner.compiles.fetch_add(1, Ordering::Relaxed);
    if inner.cache_dir.is_some() {
        tracing::info!(
            version = &version[..12.min(version.len())],
            kib = bytes.len() / 1024,
            "compiling a plugin not in the cache (large ones take seconds)"
        );
    }
}

/// `<dir>/<sha256>-<engine hash>.<kind>.cwasm`: a new wasmtime version or a changed
/// engine configuration gets new entries instead of failing on old ones.
pub(crate) fn entry_path(engine: &Engine, dir: &Path, version: &str, kind: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{version}-{:016x}.{kind}.cwasm", hasher.finish()))
}

/// The cache folder, created `0700` if missing, when only the router's user can
/// write it; `None` (after one warning per engine) when it cannot be trusted or
/// made, and then plugins are compiled without the cache.
fn trusted_dir(engine: &PluginEngine) -> Option<&Path> {
    let inner = &engine.inner;
    let dir = inner.cache_dir.as_deref()?;
    if !dir.exists()
        && let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    {
        if !inner.cache_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin cache folder; compiling plugins without a cache");
        }
        return None;
    }
    match std::fs::metadata(dir)
        .map_err(|e| e.to_string())
        .and_then(|m| {
            if m.is_dir() {
                only_ours(&m)
            } else {
                Err("it is not a folder".into())
            }
        }) {
        Ok(()) => Some(dir),
        Err(why) => {
            if !inner.cache_refused.swap(true, Ordering::Relaxed) {
                tracing::warn!(dir = %dir.display(), "plugin cache folder refused: {why}; compiled plugins are not loaded from it or written to it (make it owned by this user, mode 0700)");
            }
            None
        }
    }
}

/// Owned by this process's user and not writable by group or others.
fn only_ours(m: &std::fs::Metadata) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by its group or by others (mode {:o})",
            m.mode() & 0o777
        ));
    }
    Ok(())
}

/// An entry's bytes, if it exists and only the router's user can write it.
fn read(path: &Path) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if let Err(why) = only_ours(&meta) {
        tracing::warn!(path = %path.display(), "plugin cache entry refused: {why}; compiling instead");
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Best effort: a cache that cannot be written costs a compile next time, nothing
/// more. The entry is written `0600` to a temp file, then renamed into place.
fn write(path: &Path, compiled: &[u8]) {
    let Some(dir) = path.parent() else { return };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(compiled))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "cannot write plugin cache entry");
    }
}

// SAFETY (both functions): the bytes are either what `precompile_*` of this very
// engine just returned, or a cache entry read from a folder and a file that only
// the router's user can write (see the threat model above), named by its content
// hash and this engine's compatibility hash. wasmtime checks the header and the
// engine compatibility again before using it; a failure falls back to compiling.
// The bytes live in memory, not in a mapped file.
#[allow(unsafe_code)]
fn unsafe_component(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    unsafe { Component::deserialize(engine, bytes) }
}

#[allow(unsafe_code)]
fn unsafe_module(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Module> {
    unsafe { Module::deserialize(engine, bytes) }
}

/// The load history of the cache: `NAME VERSION` lines, oldest first.
const HISTORY: &str = "versions";

/// How many versions of each plugin keep their entries, loaded or not.
const KEEP_PER_PLUGIN: usize = 2;

/// Notes the versions just loaded, then removes every entry that is neither in
/// use (`loaded`) nor among the last [`KEEP_PER_PLUGIN`] versions of its plugin,
/// and entries of other engine builds. Best effort: errors are logged, and a
/// removed entry only costs a compile. Returns how many entries were removed.
pub(crate) fn collect(
    engine: &PluginEngine,
    newly_loaded: &[(&str, &str)],
    loaded: &[&str],
) -> usize {
    let Some(dir) = trusted_dir(engine) else {
        return 0;
    };
    let history_path = dir.join(HISTORY);
    let mut history: Vec<(String, String)> = std::fs::read_to_string(&history_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    history.extend(
        newly_loaded
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string())),
    );
    // The last KEEP_PER_PLUGIN distinct versions of each name, newest first.
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, version) in history.iter().rev() {
        let of_name = kept.iter().filter(|(n, _)| n == name).count();
        if of_name < KEEP_PER_PLUGIN && !kept.iter().any(|(n, v)| n == name && v == version) {
            kept.push((name.clone(), version.clone()));
        }
    }
    kept.reverse();
    let compacted: String = kept.iter().map(|(n, v)| format!("{n} {v}\n")).collect();
    let tmp = dir.join(format!(".{HISTORY}.{}.tmp", std::process::id()));
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(compacted.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &history_path))
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the plugin cache's history; nothing removed");
        return 0;
    }
    let suffix = |version: &str, kind: &str| {
        entry_path(&engine.inner.engine, dir, version, kind)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let keep: std::collections::HashSet<String> = kept
        .iter()
        .map(|(_, v)| v.as_str())
        .chain(loaded.iter().copied())
        .flat_map(|v| [suffix(v, "component"), suffix(v, "module")])
        .collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".cwasm") && !keep.contains(&name) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(entry = %name, error = %e, "cannot remove an old plugin cache entry")
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "old compiled plugins removed from the cache");
    }
    removed
}
