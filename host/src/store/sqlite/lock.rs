//! One process per SQLite store: an exclusive lock on a file beside it that
//! names the holder's PID.
//!
//! Owns: `<store>.lock`, taken for as long as the store is open. A second
//! `serve` (or a CLI command opening the store directly) fails with the PID of
//! the holder instead of clearing the other's leases.
//! Never: waits for the lock or breaks it: the OS releases it when the holder exits.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for the life of the store; the lock goes with the file handle.
#[derive(Debug)]
pub(super) struct StoreLock {
    file: std::sync::Mutex<File>,
}

impl StoreLock {
    /// Adds the holder's admin address to the lock file, so the CLI finds the
    /// running router even when it listens on a port picked at start (`:0`).
    pub(super) fn announce(&self, admin: std::net::SocketAddr) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}\nadmin {admin}", std::process::id()))
            .and_then(|()| file.flush());
    }
}

/// The admin address a running router wrote into the lock file of `store`,
/// if one holds the lock right now.
pub(super) fn holder_admin(store: &Path) -> Option<std::net::SocketAddr> {
    let path = lock_path(store);
    let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        // Nobody holds it: no router is running on this store.
        Ok(()) => None,
        Err(_) => std::fs::read_to_string(&path)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("admin ")?.trim().parse().ok()),
    }
}

/// `data/hookrouter.db` → `data/hookrouter.db.lock`.
pub(super) fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

pub(super) fn acquire(store: &Path) -> anyhow::Result<StoreLock> {
    let path = lock_path(store);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.lines().next().unwrap_or("").trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another hookrouter (pid {holder})")
            };
            anyhow::bail!(
                "store {} is in use by {who}: its lock file {} is held. One router serves one SQLite store; stop the other, or give this one its own [store] path",
                store.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display());
        }
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(StoreLock {
        file: std::sync::Mutex::new(file),
    })
}
