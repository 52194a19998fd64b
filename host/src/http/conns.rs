//! Open connections over both listeners: how many there may be, which are
//! idle, and which to close first when the cap is reached.
//!
//! Owns: the cap (`server.max_connections`, never more than the open-file
//! limit less [`FD_RESERVE`], read again on every accept so a lowered limit
//! takes effect at once), each connection's requests in flight and the time
//! it became idle, picking the oldest idle connection to close, and raising
//! `RLIMIT_NOFILE`'s soft limit to the hard one at start.
//! Never: reads or writes a socket; a connection closes itself when told to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
// Tokio's clock (the same as std's unless paused in a test), so that idle
// deadlines follow paused time.
use tokio::time::Instant;

/// File descriptors kept free for everything that is not a connection: the
/// store's files, the plugin folder's watch, outbound forwards, the listeners.
pub(crate) const FD_RESERVE: u64 = 64;

/// Raises the soft open-file limit to the hard limit and logs both.
pub(crate) fn raise_nofile_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(soft = %show(before.current), hard = %show(before.maximum), error = %e, "cannot raise the open-file limit");
            return;
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::info!(
        soft = %show(now.current),
        hard = %show(now.maximum),
        was = %show(before.current),
        "open-file limit"
    );
}

/// The open-file soft limit now (another process may lower it with `prlimit`).
fn nofile_soft_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// One connection as the registry sees it; shared with its task.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    inflight: AtomicUsize,
    /// Milliseconds since the registry's epoch when it last became idle.
    idle_since: AtomicU64,
    epoch: Instant,
    /// Told to close (not chosen again while it does).
    closing: AtomicBool,
    /// Woken when the last request in flight ends.
    pub(crate) idle: Notify,
    /// Woken when the registry wants this connection closed.
    pub(crate) close: Notify,
}

impl Conn {
    /// Marks a request in flight until the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.inflight.load(Ordering::Acquire) == 0
    }

    /// When it became idle (meaningful while [`Conn::is_idle`]).
    pub(crate) fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since.load(Ordering::Acquire))
    }

    fn mark_idle(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.idle_since.store(ms, Ordering::Release);
    }
}

/// A request in flight on a connection.
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_idle();
            self.0.idle.notify_waiters();
        }
    }
}

/// The registry of open connections, shared by both listeners.
#[derive(Debug)]
pub(crate) struct Conns {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Woken when a connection closes (shutdown waits on it).
    closed: Notify,
}

/// What the accept loop may do with a new connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Under the cap.
    Yes,
    /// At the cap: the oldest idle connection was told to close.
    Evicted,
    /// At the cap and nothing is idle: refuse the new one.
    Full,
}

impl Conns {
    pub(crate) fn new(max: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            closed: Notify::new(),
        })
    }

    /// `server.max_connections`, lowered to the open-file limit less the reserve.
    pub(crate) fn cap(&self) -> usize {
        let by_files = nofile_soft_limit().saturating_sub(FD_RESERVE).max(1);
        self.max
            .min(usize::try_from(by_files).unwrap_or(usize::MAX))
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether one more connection may open; at the cap, tells the oldest idle
    /// one to close first.
    pub(crate) fn admit(&self) -> Admit {
        if self.len() < self.cap() {
            Admit::Yes
        } else if self.evict_oldest_idle() {
            Admit::Evicted
        } else {
            Admit::Full
        }
    }

    /// Tells the connection idle for longest to close; `false` if none is idle.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let open = self.lock();
        let oldest = open
            .values()
            .filter(|c| c.is_idle() && !c.closing.load(Ordering::Acquire))
            .min_by_key(|c| (c.idle_since(), c.id));
        match oldest {
            Some(c) => {
                c.closing.store(true, Ordering::Release);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Registers a new connection; it leaves the registry when the returned
    /// handle drops.
    pub(crate) fn register(self: &Arc<Self>) -> Registered {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inflight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            epoch: self.epoch,
            closing: AtomicBool::new(false),
            idle: Notify::new(),
            close: Notify::new(),
        });
        conn.mark_idle();
        self.lock().insert(conn.id, conn.clone());
        Registered {
            conns: self.clone(),
            conn,
        }
    }
}

/// A connection's place in the registry.
pub(crate) struct Registered {
    conns: Arc<Conns>,
    pub(crate) conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.conn.id);
        self.conns.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_goes_first() {
        let conns = Conns::new(3);
        let a = conns.register();
        std::thread::sleep(Duration::from_millis(5));
        let b = conns.register();
        std::thread::sleep(Duration::from_millis(5));
        let c = conns.register();
        assert_eq!(conns.admit(), Admit::Evicted);
        // `a` was told to close: its permit is stored in the Notify.
        let told = |r: &Registered| {
            let n = r.conn.close.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(told(&a));
        assert!(!told(&b) && !told(&c));

        // A connection with a request in flight is never chosen.
        let _busy_b = b.conn.begin();
        let _busy_c = c.conn.begin();
        let _busy_a = a.conn.begin();
        assert_eq!(conns.admit(), Admit::Full);
        drop(_busy_c);
        assert_eq!(conns.admit(), Admit::Evicted);
        assert!(told(&c));
        assert_eq!(
            conns.admit(),
            Admit::Full,
            "one told to close is not chosen twice"
        );
        drop(a);
        assert_eq!(conns.len(), 2);
        assert_eq!(conns.admit(), Admit::Yes);
    }

    #[test]
    fn becoming_idle_restarts_the_idle_clock() {
        let conns = Conns::new(10);
        let r = conns.register();
        let first = r.conn.idle_since();
        std::thread::sleep(Duration::from_millis(5));
        let g = r.conn.begin();
        assert!(!r.conn.is_idle());
        drop(g);
        assert!(r.conn.is_idle());
        assert!(r.conn.idle_since() > first);
    }

    #[test]
    fn the_cap_never_exceeds_the_open_file_limit_less_the_reserve() {
        let conns = Conns::new(usize::MAX);
        let soft = nofile_soft_limit();
        assert_eq!(conns.cap() as u64, soft.saturating_sub(FD_RESERVE).max(1));
        assert_eq!(Conns::new(5).cap(), 5);
    }
}
