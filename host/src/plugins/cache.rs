//! The on-disk cache of compiled plugins, keyed by content hash and by the
//! engine's compatibility hash.
//!
//! Owns: the file names and the write protocol of cache entries (temp file, then
//! rename; never rewrite an entry in place, see wasmtime #10283).
//! Never: memory-maps a cache file (entries are read into memory, then
//! deserialized), or decides whether a plugin is valid.

use std::hash::{DefaultHasher, Hash, Hasher};
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
    let Some(dir) = &inner.cache_dir else {
        inner.compiles.fetch_add(1, Ordering::Relaxed);
        return Component::new(&inner.engine, bytes);
    };
    let path = entry_path(&inner.engine, dir, version, "component");
    if let Some(cached) = read(&path)
        && let Ok(component) = unsafe_component(&inner.engine, &cached)
    {
        return Ok(component);
    }
    inner.compiles.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        version = &version[..12.min(version.len())],
        kib = bytes.len() / 1024,
        "compiling a plugin not in the cache (large ones take seconds)"
    );
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
    let Some(dir) = &inner.cache_dir else {
        inner.compiles.fetch_add(1, Ordering::Relaxed);
        return Module::new(&inner.engine, bytes);
    };
    let path = entry_path(&inner.engine, dir, version, "module");
    if let Some(cached) = read(&path)
        && let Ok(module) = unsafe_module(&inner.engine, &cached)
    {
        return Ok(module);
    }
    inner.compiles.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        version = &version[..12.min(version.len())],
        kib = bytes.len() / 1024,
        "compiling a plugin not in the cache (large ones take seconds)"
    );
    let compiled = inner.engine.precompile_module(bytes)?;
    write(&path, &compiled);
    unsafe_module(&inner.engine, &compiled)
}

/// `<dir>/<sha256>-<engine hash>.<kind>.cwasm`: a new wasmtime version or a changed
/// engine configuration gets new entries instead of failing on old ones.
pub(crate) fn entry_path(engine: &Engine, dir: &Path, version: &str, kind: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{version}-{:016x}.{kind}.cwasm", hasher.finish()))
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// Best effort: a cache that cannot be written costs a compile next time, nothing more.
fn write(path: &Path, compiled: &[u8]) {
    let Some(dir) = path.parent() else { return };
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        std::fs::write(&tmp, compiled)?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write plugin cache entry");
    }
}

// SAFETY (both functions): the bytes are either what `precompile_*` of this very
// engine just returned, or a cache entry that such a call wrote into the cache folder
// hookrouter owns, named by its content hash and this engine's compatibility hash.
// wasmtime checks the header and the engine compatibility again before using it; a
// failure falls back to compiling. The bytes live in memory, not in a mapped file.
#[allow(unsafe_code)]
fn unsafe_component(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    unsafe { Component::deserialize(engine, bytes) }
}

#[allow(unsafe_code)]
fn unsafe_module(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Module> {
    unsafe { Module::deserialize(engine, bytes) }
}
