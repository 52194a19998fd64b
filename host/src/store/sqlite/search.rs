//! The search index: full-text (FTS5) of event bodies, in a file of its own
//! beside the store, written by one indexer thread off the ack path.
//!
//! Owns: `<store>-search` (the `events_fts` table and the indexer's high-water
//! mark), following new events by their `seq` and removing the ones the writer
//! noted in `search_gone`, and letting a search wait until the index has caught
//! up with what was acknowledged before it.
//! Never: holds anything that cannot be rebuilt: the index is derived from
//! `events` (delete the file and it is rebuilt), so it is written without an
//! fsync per commit and never delays a `202`. The indexer indexes only on a
//! core the router's other threads leave idle (`SCHED_IDLE`, see [`Lane`]):
//! under a burst it falls behind and catches up after.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::writer::{Command, WriterState};

/// Events indexed per transaction.
const BATCH: usize = 2000;

/// Body bytes indexed per transaction (at most; one body may pass it).
const BATCH_BYTES: usize = 1 << 20;

/// How often the indexer looks when nothing wakes it.
const IDLE: Duration = Duration::from_millis(500);

/// How long the indexer lets new events gather after a commit woke it, unless
/// a search waits. Every index transaction writes a new FTS5 segment that is
/// later merged: one per group commit (a few events each under load) cost the
/// indexer three times the CPU per event of batches of hundreds.
const GATHER: Duration = Duration::from_millis(100);

/// How the indexer thread is scheduled: below the router's other threads, so
/// ingest and delivery come first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lane {
    /// Nice 10, while it holds a read snapshot of the store: a snapshot held
    /// open holds the checkpointer back, and a RESTART checkpoint waits for it
    /// with the writer's lock taken, so the read must not starve.
    Reading,
    /// Linux's `SCHED_IDLE`, for the tokenizing and segment merging (nearly
    /// all of its CPU): it runs only on a core nothing else wants. At nice 10
    /// alone it still took its share of a busy core, and idle-scheduled it
    /// left durable ingest about 15% more on the 2-core machine (BENCHMARKS.md).
    /// Not while a search waits for the index: on a machine kept busy, an
    /// idle-scheduled indexer would keep that search waiting to its limit.
    Indexing,
}

/// Schedules the calling thread on `lane`. Where the policy cannot change,
/// the thread stays at nice 10 in both lanes.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn enter(lane: Lane) {
    let policy = match lane {
        Lane::Reading => libc::SCHED_OTHER,
        Lane::Indexing => libc::SCHED_IDLE,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is
    // the calling thread; both policies take priority 0.
    let _ = unsafe { libc::sched_setscheduler(0, policy, &param) };
}

/// Elsewhere than Linux both lanes are nice 10.
#[cfg(not(target_os = "linux"))]
fn enter(_: Lane) {}

/// `data/hookrouter.db` → `data/hookrouter.db-search`.
pub(super) fn search_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_os_string();
    name.push("-search");
    PathBuf::from(name)
}

/// Opens (creating if needed) the search index. WAL with `synchronous=NORMAL`:
/// commits are atomic and survive a crash of the process; after a power loss
/// the newest entries may be missing, and the high-water mark with them, so
/// they are indexed again.
pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Written in appends and read by the store's readers (which attach it):
    // the indexer's own page cache stays small.
    conn.pragma_update(None, "cache_size", -1024)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Contentless (the bodies stay only in `events`), keyed by the event's
    // `seq`, with deletes by key. `unicode61` splits on punctuation and folds
    // case, so `payment_loading_requested` holds the word `payment`; positions
    // are kept, so a query word the tokenizer splits further is matched as a
    // phrase of its parts.
    conn.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
             body, content = '', contentless_delete = 1,
             tokenize = 'unicode61 remove_diacritics 2'
         );
         CREATE TABLE IF NOT EXISTS indexed (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
         INSERT OR IGNORE INTO indexed (one, seq) VALUES (1, 0);",
    )?;
    Ok(conn)
}

/// Opens the index and reads its high-water mark. An index that cannot be
/// read (a torn or foreign file) is deleted and built again from `events`: it
/// holds nothing else, and must never keep the router from starting.
fn open_or_rebuild(path: &Path) -> anyhow::Result<(Connection, i64)> {
    let mark = |c: &Connection| c.query_row("SELECT seq FROM indexed", [], |r| r.get(0));
    match open(path).and_then(|c| mark(&c).map(|m| (c, m))) {
        Ok(opened) => Ok(opened),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "the search index cannot be read; rebuilding it from the store");
            for suffix in ["", "-wal", "-shm"] {
                let mut f = path.as_os_str().to_os_string();
                f.push(suffix);
                match std::fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            let c = open(path)?;
            let m = mark(&c)?;
            Ok((c, m))
        }
    }
}

/// What the store and its indexer share.
pub(super) struct Search {
    /// The highest `seq` every event up to which is in the index (or gone).
    indexed: watch::Sender<i64>,
    poke: Mutex<bool>,
    poked: Condvar,
    /// A search waits for the index: no gathering.
    awaited: AtomicBool,
    /// Searches waiting for the index now: it indexes at nice 10, not idle.
    waiting: AtomicUsize,
    stop: AtomicBool,
}

impl Search {
    /// Starts the indexer for the store at `store`; `writer` takes the
    /// `search_gone` entries it has dealt with.
    pub(super) fn start(
        store: &Path,
        writer: std::sync::mpsc::Sender<Command>,
        queue: Arc<WriterState>,
    ) -> anyhow::Result<Arc<Search>> {
        let (index, start) = open_or_rebuild(&search_path(store))?;
        let search = Arc::new(Search {
            indexed: watch::Sender::new(start),
            poke: Mutex::new(false),
            poked: Condvar::new(),
            awaited: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let (shared, store) = (search.clone(), store.to_path_buf());
        std::thread::Builder::new()
            .name("store-indexer".into())
            .spawn(move || {
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
                if let Err(e) = shared.run(&store, index, &writer, &queue) {
                    tracing::error!(error = %e, "the search indexer stopped; searches miss newer events");
                }
            })?;
        Ok(search)
    }

    /// Wakes the indexer (new events were committed).
    pub(super) fn poke(&self) {
        *self.poke.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.poked.notify_one();
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.poke();
    }

    /// Waits (up to `limit`) until every event up to `seq` is searchable.
    /// `false` when the index is still behind: the search answers with what
    /// it has.
    pub(super) async fn caught_up(&self, seq: i64, limit: Duration) -> bool {
        let mut rx = self.indexed.subscribe();
        if *rx.borrow() >= seq {
            return true;
        }
        // Counted while it waits, however the wait ends (or is dropped).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        self.awaited.store(true, Ordering::Relaxed);
        self.poke();
        tokio::time::timeout(limit, rx.wait_for(|v| *v >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The lane to tokenize and merge in: idle, unless a search waits.
    pub(super) fn indexing_lane(&self) -> Lane {
        if self.waiting.load(Ordering::Relaxed) > 0 {
            Lane::Reading
        } else {
            Lane::Indexing
        }
    }

    /// Waits until poked (or [`IDLE`]); after a commit's poke, lets more
    /// events gather for up to [`GATHER`] unless a search waits.
    fn wait(&self) {
        let mut poked = self.poke.lock().unwrap_or_else(|p| p.into_inner());
        if !*poked {
            poked = self
                .poked
                .wait_timeout(poked, IDLE)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let until = std::time::Instant::now() + GATHER;
        while !self.awaited.load(Ordering::Relaxed) && !self.stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            *poked = false;
            poked = self
                .poked
                .wait_timeout(poked, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *poked = false;
        self.awaited.store(false, Ordering::Relaxed);
    }

    fn run(
        &self,
        store: &Path,
        mut index: Connection,
        writer: &std::sync::mpsc::Sender<Command>,
        queue: &WriterState,
    ) -> rusqlite::Result<()> {
        let events = super::schema::open(store)?;
        events.pragma_update(None, "query_only", true)?;
        // It reads each new row once: a small page cache (the store's 64 MiB
        // one would fill with bodies it never reads again).
        events.pragma_update(None, "cache_size", -512)?;
        let mut mark = *self.indexed.borrow();
        while !self.stop.load(Ordering::Relaxed) {
            let forgot = forget(&events, &mut index, self)?;
            if !forgot.is_empty() {
                // Counted in the writer's queue like every command it takes.
                let (reply, _) = tokio::sync::oneshot::channel();
                queue.queued.fetch_add(1, Ordering::Relaxed);
                if writer.send(Command::Forget(forgot, reply)).is_err() {
                    queue.queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
            let (next, full) = index_new(&events, &mut index, mark, self)?;
            if next != mark {
                mark = next;
                self.indexed.send_replace(mark);
            }
            if !full {
                self.wait();
            }
        }
        Ok(())
    }
}

/// Removes from the index the events the writer deleted; returns their `seq`s.
fn forget(
    events: &Connection,
    index: &mut Connection,
    search: &Search,
) -> rusqlite::Result<Vec<i64>> {
    enter(Lane::Reading);
    let gone: Vec<i64> = events
        .prepare_cached("SELECT seq FROM search_gone ORDER BY seq LIMIT ?1")?
        .query_map([BATCH as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !gone.is_empty() {
        enter(search.indexing_lane());
        let tx = index.transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM events_fts WHERE rowid = ?1")?;
            for seq in &gone {
                del.execute([seq])?;
            }
        }
        tx.commit()?;
    }
    Ok(gone)
}

/// Indexes up to [`BATCH`] events after `mark`; returns the new mark and
/// whether the batch was full (more may be waiting).
fn index_new(
    events: &Connection,
    index: &mut Connection,
    mark: i64,
    search: &Search,
) -> rusqlite::Result<(i64, bool)> {
    enter(Lane::Reading);
    // One read transaction: the rows and the last `seq` of the same snapshot.
    let snapshot = events.unchecked_transaction()?;
    let mut rows: Vec<(i64, String)> = Vec::new();
    let mut bytes = 0;
    let mut full = false;
    {
        let mut stmt = snapshot
            .prepare_cached("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let mut q = stmt.query(params![mark, BATCH as i64])?;
        while let Some(r) = q.next()? {
            let body: String = r.get(1)?;
            bytes += body.len();
            rows.push((r.get(0)?, body));
            // Bounded in bytes too: large bodies are indexed a few at a time.
            if rows.len() == BATCH || bytes >= BATCH_BYTES {
                full = true;
                break;
            }
        }
    }
    let next = match rows.last() {
        Some((seq, _)) => *seq,
        // Nothing after the mark: every `seq` handed out so far is indexed or
        // gone, so the mark may move up to the last one (a search waiting for
        // an event deleted meanwhile need not wait).
        None => last_seq(&snapshot)?.max(mark),
    };
    snapshot.finish()?;
    enter(search.indexing_lane());
    if next == mark {
        return Ok((mark, false));
    }
    let tx = index.transaction()?;
    {
        let mut ins = tx.prepare_cached("INSERT INTO events_fts (rowid, body) VALUES (?1, ?2)")?;
        for (seq, body) in &rows {
            ins.execute(params![seq, body])?;
        }
        tx.prepare_cached("UPDATE indexed SET seq = ?1")?
            .execute([next])?;
    }
    tx.commit()?;
    Ok((next, full))
}

/// The last `seq` handed out: a search waits until the index has it.
pub(super) fn last_seq(c: &Connection) -> rusqlite::Result<i64> {
    Ok(
        c.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
            .query_row([], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0),
    )
}
