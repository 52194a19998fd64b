//! The allocator's share of resident memory.
//!
//! Owns: how many malloc arenas glibc may keep, and giving freed memory back
//! to the OS after a burst.
//! Never: changes what is allocated; on other C libraries both are no-ops.
//!
//! glibc gives each thread that meets a locked arena one of its own, up to 8
//! per core, and keeps what a burst freed in them: measured after 250,000
//! events through a plugin, about 30 MiB of the router's resident memory was
//! free memory held in arenas (BENCHMARKS.md, "Resident memory").

use std::time::Duration;

use tokio::sync::watch;

/// glibc's malloc arenas: two per core of the 2-core machine the targets are
/// measured on. At two in all, threads met on the arenas' locks: end to end,
/// `futex` calls from inside malloc and free were about 5% of the tokio
/// threads' time. With four, the CPU per event end to end fell from a mean of
/// 247 to 212 µs (two runs of each, alternating), and resident memory after a
/// 64-connection run rose from 53 to 57 MB (BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 4;

/// How often freed memory is handed back.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Caps glibc's malloc arenas at [`ARENAS`]. Call before the first thread starts.
// The one FFI call of the crate's own code besides `malloc_trim` below: neither
// has a safe wrapper in a maintained crate.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists, as glibc asks.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Hands memory freed since the last round back to the OS, every
/// [`TRIM_EVERY`], until `stop` turns true.
#[allow(unsafe_code)]
pub(crate) async fn trim(mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = stop.changed() => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim takes the arenas' own locks; it is safe to call
        // from any thread at any time.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}
