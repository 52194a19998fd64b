//! The single writer thread and group commit.
//!
//! Owns: draining queued commands, applying them in one transaction, committing
//! once (one fsync for the whole batch), then answering each caller. If any
//! command fails, the batch rolls back and each command is redone alone, except
//! when the disk is full: then the whole batch is refused at once.
//! Never: answers a caller before the commit that holds its data has returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{ops, retain};
use crate::event::unix_ms;
use crate::store::{
    ClaimedDelivery, ClaimedForward, DeadId, DeliveryClaim, DeliveryId, DeliveryOutcome, Finished,
    ForwardId, ForwardOutcome, Ingested, LeaseToken, NewEvent, Pruned, Purged, Retention,
    StoreError, Work,
};

/// Upper bound on commands per transaction, so one batch cannot grow without end.
const MAX_BATCH: usize = 1024;

/// How long a batch that nobody waits on (outcomes only) may wait for more
/// commands, and how many it gathers before it commits anyway. A commit costs
/// an fsync and rewrites the pages every command touched (the tables' and
/// indexes' right edges), so outcomes committed four at a time cost the writer
/// several times what they cost in batches of dozens; an outcome's caller has
/// moved on (the dispatcher records outcomes while it runs the next item), so
/// only the forwards it hands over wait, by at most this much.
const GATHER_FOR: Duration = Duration::from_millis(4);
const GATHER_UP_TO: usize = 128;

/// How long the writer's restart of the WAL waits for readers of its old
/// frames before it gives up until the next round.
const RESTART_WAIT: Duration = Duration::from_millis(20);

/// After a window this long with fewer than [`QUIET`] commands (the
/// periodic claims and prunes of an idle router), following one with more, the
/// writer hands its page cache back (`PRAGMA shrink_memory`): a burst fills
/// it, and an idle router need not keep it resident. The next commands read
/// their pages from the OS's cache.
const IDLE_SHRINK: Duration = Duration::from_secs(2);
const QUIET: usize = 64;

/// Which workers a committed batch gave something to do.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Wake {
    pub deliveries: bool,
    pub forwards: bool,
    /// New events were stored (the search indexer has work).
    pub events: bool,
}

impl std::ops::BitOrAssign for Wake {
    fn bitor_assign(&mut self, o: Wake) {
        self.deliveries |= o.deliveries;
        self.forwards |= o.forwards;
        self.events |= o.events;
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Command {
    /// With a lease, the deliveries are stored leased to this process and
    /// answered as claimed (the hand-off).
    Ingest(
        NewEvent,
        Option<Duration>,
        Reply<(Ingested, Vec<ClaimedDelivery>)>,
    ),
    ClaimDeliveries(DeliveryClaim, Reply<Vec<ClaimedDelivery>>),
    /// With a lease, the run's forwards are stored leased to this process and
    /// answered as claimed.
    FinishDelivery(
        DeliveryId,
        LeaseToken,
        DeliveryOutcome,
        Option<Duration>,
        Reply<(Finished, Vec<ClaimedForward>)>,
    ),
    ClaimForwards(usize, Duration, Reply<Vec<ClaimedForward>>),
    FinishForward(ForwardId, LeaseToken, ForwardOutcome, Reply<Finished>),
    Replay(Vec<DeadId>, Reply<usize>),
    Purge(Vec<DeadId>, Reply<Purged>),
    Prune(Retention, Reply<Pruned>),
    ReleaseLeases(Reply<usize>),
    /// The search indexer has removed these from its index.
    Forget(Vec<i64>, Reply<usize>),
}

impl Command {
    /// Whether a caller waits on this command's commit before it goes on: an
    /// acknowledgement, a worker's claim, an operator's request. Outcomes are
    /// recorded while their worker runs its next item.
    fn awaited(&self) -> bool {
        !matches!(
            self,
            Command::FinishDelivery(..) | Command::FinishForward(..) | Command::Forget(..)
        )
    }
}

/// The next batch: `first` and what is queued behind it (up to
/// [`MAX_BATCH`]). A batch that nobody waits on waits up to [`GATHER_FOR`] for
/// more, until it holds [`GATHER_UP_TO`] commands or one that is awaited.
fn gather(rx: &Receiver<Command>, first: Command) -> Vec<Command> {
    let until = Instant::now() + GATHER_FOR;
    let mut awaited = first.awaited();
    let mut batch = vec![first];
    loop {
        while batch.len() < MAX_BATCH
            && let Ok(cmd) = rx.try_recv()
        {
            awaited |= cmd.awaited();
            batch.push(cmd);
        }
        if awaited || batch.len() >= GATHER_UP_TO {
            return batch;
        }
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(cmd) => {
                awaited |= cmd.awaited();
                batch.push(cmd);
            }
            Err(_) => return batch,
        }
    }
}

/// What a command produced, sent to its caller once the batch is committed.
enum Answer {
    Ingested(Ingested, Vec<DeliveryId>, LeaseToken),
    Recorded(Finished, ops::Leased, LeaseToken),
    Deliveries(Vec<ClaimedDelivery>),
    Forwards(Vec<ClaimedForward>),
    Finished(Finished),
    Count(usize),
    Purged(Purged),
    Pruned(Pruned),
}

/// Shared between the writer and the store handle.
pub(super) struct WriterState {
    pub queued: AtomicUsize,
    /// Set while commits fail for lack of space; cleared by the next success.
    pub full: AtomicBool,
    pub alive: AtomicBool,
    /// Set by the checkpointer when the WAL holds more than
    /// [`super::WAL_BOUND`]: the writer starts it over before its next batch
    /// (see [`Writer::restart_wal`]).
    pub restart_wal: AtomicBool,
    /// The checkpoint thread, woken by the writer when a commit takes the WAL
    /// past its bound, so the WAL's growth does not wait for the next round.
    pub checkpointer: std::sync::OnceLock<std::thread::Thread>,
}

thread_local! {
    /// Frames in the WAL after the writer's last commit (SQLite's WAL hook).
    static WAL_FRAMES: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames.into());
    Ok(())
}

pub(super) struct Writer {
    pub conn: Connection,
    pub state: Arc<WriterState>,
    pub wake: Arc<crate::store::Wake>,
    /// This process's name on the leases it takes.
    pub owner: String,
    /// When "disk full" was last logged (it is logged once a minute, not per request).
    pub full_logged: Option<Instant>,
    /// Told when new events are committed.
    pub search: Option<Arc<super::search::Search>>,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Command>) {
        // (When the window began, commands in it), and whether the cache was
        // given back since the last busy window.
        let (mut window, mut commands, mut shrunk) = (Instant::now(), 0, true);
        self.conn.wal_hook(Some(note_wal_frames));
        let bound = super::schema::wal_bound_frames(&self.conn);
        // Whether the checkpointer was woken for the WAL's present growth.
        let mut woken = false;
        loop {
            let next = rx.recv_timeout(IDLE_SHRINK);
            if window.elapsed() >= IDLE_SHRINK {
                if commands < QUIET && !shrunk {
                    shrunk = true;
                    if let Err(e) = self.conn.execute_batch("PRAGMA shrink_memory") {
                        tracing::debug!(error = %e, "shrink_memory failed");
                    }
                }
                (window, commands) = (Instant::now(), 0);
            }
            let first = match next {
                Ok(cmd) => cmd,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if self.state.restart_wal.swap(false, Ordering::Relaxed) {
                self.restart_wal();
            }
            let batch = gather(&rx, first);
            commands += batch.len();
            shrunk &= commands < QUIET;
            self.process(batch);
            if WAL_FRAMES.get() <= bound {
                woken = false;
            } else if !woken {
                woken = true;
                if let Some(t) = self.state.checkpointer.get() {
                    t.unpark();
                }
            }
        }
        self.state.alive.store(false, Ordering::Relaxed);
    }

    /// Applies one batch and answers every command in it.
    pub(super) fn process(&mut self, batch: Vec<Command>) {
        let n = batch.len();
        let mut wake = Wake::default();
        let written = self.conn.total_changes();
        match self.transaction(&batch, &mut wake) {
            Ok(answers) => {
                // Only a commit that wrote rows shows that there is space
                // again: one that changed nothing (a claim that found no work)
                // commits on a full disk too, and would flip readiness back.
                if self.conn.total_changes() > written {
                    self.space_returned();
                }
                for (cmd, answer) in batch.into_iter().zip(answers) {
                    reply(cmd, Ok(answer));
                }
            }
            Err(e) if is_full(&e) => {
                // Redoing the commands one by one cannot help: refuse them all.
                self.out_of_space(&e);
                let err = StoreError::Full(e.to_string());
                for cmd in batch {
                    reply(cmd, Err(err.clone()));
                }
            }
            Err(e) if n == 1 => {
                tracing::error!(error = %e, "store write failed");
                reply_all(batch, &e);
            }
            Err(e) => {
                // One command (or the commit) failed and the whole batch rolled
                // back: redo each alone, so one bad command fails alone.
                tracing::warn!(error = %e, batch = n, "store batch failed; retrying its commands one by one");
                for cmd in batch {
                    match self.transaction(std::slice::from_ref(&cmd), &mut wake) {
                        Ok(mut a) => match a.pop() {
                            Some(answer) => reply(cmd, Ok(answer)),
                            None => reply_all(vec![cmd], &rusqlite::Error::InvalidQuery),
                        },
                        Err(e) if is_full(&e) => {
                            self.out_of_space(&e);
                            reply(cmd, Err(StoreError::Full(e.to_string())));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "store write failed");
                            reply_all(vec![cmd], &e);
                        }
                    }
                }
            }
        }
        self.state.queued.fetch_sub(n, Ordering::Relaxed);
        if wake.deliveries {
            self.wake.notify(Work::Deliveries);
        }
        if wake.forwards {
            self.wake.notify(Work::Forwards);
        }
        if wake.events
            && let Some(search) = &self.search
        {
            search.poke();
        }
        crate::metrics::observe_batch(n);
    }

    /// Copies what is left of the WAL into the database and has the next commit
    /// write it from its start again, overwriting the frames it holds rather
    /// than growing the file. Only between this thread's transactions can that
    /// be done at once: run from the checkpointer, the checkpoint waited on
    /// this thread's write lock, which under steady load it took only seconds
    /// later, by which time the WAL had grown to 200-250 MiB (BENCHMARKS.md).
    /// The passive checkpoint just before leaves little to copy. Readers get
    /// [`RESTART_WAIT`] to move off the WAL's old frames; if one is still
    /// reading, the WAL goes on growing and the next round tries again.
    fn restart_wal(&mut self) {
        let _ = self.conn.busy_timeout(RESTART_WAIT);
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        let _ = self.conn.busy_timeout(super::schema::BUSY_TIMEOUT);
        match busy {
            Ok(0) => {}
            Ok(_) => tracing::debug!("WAL restart waited on a reader; retried at the next round"),
            Err(e) => tracing::warn!(error = %e, "WAL restart failed; retried at the next round"),
        }
    }

    fn out_of_space(&mut self, e: &rusqlite::Error) {
        self.state.full.store(true, Ordering::Relaxed);
        let due = self
            .full_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if due {
            self.full_logged = Some(Instant::now());
            tracing::error!(error = %e, "store is out of disk space: ingress answers 503 until space returns (logged once a minute)");
        }
    }

    fn space_returned(&mut self) {
        if self.state.full.swap(false, Ordering::Relaxed) {
            self.full_logged = None;
            tracing::info!("store has disk space again; accepting events");
        }
    }

    /// Applies `batch` in one transaction and one fsync (no per-command
    /// savepoints: on any error the whole transaction rolls back and the caller
    /// redoes the commands one by one).
    fn transaction(&mut self, batch: &[Command], wake: &mut Wake) -> rusqlite::Result<Vec<Answer>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = unix_ms(SystemTime::now());
        let mut answers = Vec::with_capacity(batch.len());
        let mut made_work = Wake::default();
        for cmd in batch {
            answers.push(apply(&tx, cmd, &self.owner, now, &mut made_work)?);
        }
        tx.commit()?;
        *wake |= made_work;
        Ok(answers)
    }
}

fn apply(
    tx: &Connection,
    cmd: &Command,
    owner: &str,
    now: i64,
    wake: &mut Wake,
) -> rusqlite::Result<Answer> {
    Ok(match cmd {
        Command::Ingest(new, lease, _) => {
            let token = LeaseToken::new();
            let hold = lease.map(|l| ops::Hold {
                until: now + l.as_millis() as i64,
                token,
                owner,
            });
            let (r, leased) = ops::ingest(tx, new, None, now, hold.as_ref())?;
            // Deliveries handed off leased need no claim: no wake-up for them.
            wake.deliveries |=
                matches!(r, Ingested::Stored { deliveries, .. } if deliveries > leased.len());
            wake.events |= matches!(r, Ingested::Stored { .. });
            Answer::Ingested(r, leased, token)
        }
        Command::ClaimDeliveries(claim, _) => {
            Answer::Deliveries(ops::claim_deliveries(tx, claim, owner, now)?)
        }
        Command::FinishDelivery(id, token, outcome, lease, _) => {
            let forward_token = LeaseToken::new();
            let hold = lease.map(|l| ops::Hold {
                until: now + l.as_millis() as i64,
                token: forward_token,
                owner,
            });
            let mut leased = ops::Leased::default();
            let f = ops::finish_delivery(
                tx,
                *id,
                *token,
                outcome,
                now,
                wake,
                hold.as_ref(),
                &mut leased,
            )?;
            Answer::Recorded(f, leased, forward_token)
        }
        Command::ClaimForwards(limit, lease, _) => {
            Answer::Forwards(ops::claim_forwards(tx, *limit, *lease, owner, now)?)
        }
        Command::FinishForward(id, token, outcome, _) => {
            let f = ops::finish_forward(tx, *id, *token, outcome, now)?;
            wake.forwards |= matches!(outcome, ForwardOutcome::Release);
            Answer::Finished(f)
        }
        Command::Replay(ids, _) => {
            let mut n = 0;
            for id in ids {
                if ops::replay_one(tx, *id, now)? {
                    n += 1;
                    match id {
                        DeadId::Delivery(_) => wake.deliveries = true,
                        DeadId::Forward(_) => wake.forwards = true,
                    }
                }
            }
            Answer::Count(n)
        }
        Command::Purge(ids, _) => {
            let mut purged = Purged::default();
            for id in ids {
                let (entry, events) = retain::purge_one(tx, *id)?;
                purged.entries += usize::from(entry);
                purged.events += events;
            }
            Answer::Purged(purged)
        }
        Command::Prune(policy, _) => {
            let cutoff = |d: Duration| now.saturating_sub(d.as_millis() as i64);
            Answer::Pruned(Pruned {
                events: retain::prune_events(tx, cutoff(policy.retention), policy.batch)?,
                dedupe: retain::prune_dedupe(tx, cutoff(policy.dedupe_horizon), policy.batch)?,
            })
        }
        Command::Forget(seqs, _) => {
            let mut stmt = tx.prepare_cached("DELETE FROM search_gone WHERE seq = ?1")?;
            let mut n = 0;
            for seq in seqs {
                n += stmt.execute([seq])?;
            }
            Answer::Count(n)
        }
        Command::ReleaseLeases(_) => {
            let n = ops::release_leases(tx, Some(owner), now)?;
            wake.deliveries |= n > 0;
            wake.forwards |= n > 0;
            Answer::Count(n)
        }
    })
}

/// SQLite's "database or disk is full", or the OS's ENOSPC / EDQUOT under an I/O error.
fn is_full(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            f.code == rusqlite::ErrorCode::DiskFull
                || (f.code == rusqlite::ErrorCode::SystemIoFailure
                    && msg.as_deref().is_some_and(|m| m.contains("space")))
        }
        _ => false,
    }
}

/// Sends each command's answer on its own reply channel.
fn reply(cmd: Command, answer: Result<Answer, StoreError>) {
    fn send<T>(tx: Reply<T>, v: Result<T, StoreError>) {
        let _ = tx.send(v);
    }
    let mismatch = || StoreError::Unavailable("internal: answer does not fit its command".into());
    match (cmd, answer) {
        (Command::ClaimDeliveries(_, r), Ok(Answer::Deliveries(v))) => send(r, Ok(v)),
        (Command::ClaimForwards(_, _, r), Ok(Answer::Forwards(v))) => send(r, Ok(v)),
        (Command::Ingest(new, _, r), Ok(Answer::Ingested(v, leased, token))) => {
            send(r, Ok((v, handed_deliveries(new, leased, token))))
        }
        (Command::FinishDelivery(_, _, outcome, _, r), Ok(Answer::Recorded(v, leased, token))) => {
            send(r, Ok((v, handed_forwards(outcome, leased, token))))
        }
        (Command::FinishForward(.., r), Ok(Answer::Finished(v))) => send(r, Ok(v)),
        (Command::Replay(_, r), Ok(Answer::Count(v))) => send(r, Ok(v)),
        (Command::ReleaseLeases(r), Ok(Answer::Count(v))) => send(r, Ok(v)),
        (Command::Forget(_, r), Ok(Answer::Count(v))) => send(r, Ok(v)),
        (Command::Purge(_, r), Ok(Answer::Purged(v))) => send(r, Ok(v)),
        (Command::Prune(_, r), Ok(Answer::Pruned(v))) => send(r, Ok(v)),
        (cmd, answer) => {
            let e = answer.err().unwrap_or_else(mismatch);
            match cmd {
                Command::Ingest(_, _, r) => send(r, Err(e)),
                Command::ClaimDeliveries(_, r) => send(r, Err(e)),
                Command::ClaimForwards(_, _, r) => send(r, Err(e)),
                Command::FinishDelivery(.., r) => send(r, Err(e)),
                Command::FinishForward(.., r) => send(r, Err(e)),
                Command::Replay(_, r) | Command::ReleaseLeases(r) | Command::Forget(_, r) => {
                    send(r, Err(e))
                }
                Command::Purge(_, r) => send(r, Err(e)),
                Command::Prune(_, r) => send(r, Err(e)),
            }
        }
    }
}

/// The deliveries an ingest stored leased, as claimed work: the event moves
/// out of the command into the one `Arc` they share.
fn handed_deliveries(
    new: NewEvent,
    leased: Vec<DeliveryId>,
    token: LeaseToken,
) -> Vec<ClaimedDelivery> {
    if leased.is_empty() {
        return Vec::new();
    }
    let event = std::sync::Arc::new(new.event);
    leased
        .into_iter()
        .zip(new.plugins)
        .map(|(id, plugin)| ClaimedDelivery {
            id,
            token,
            plugin,
            attempts: 0,
            event: event.clone(),
        })
        .collect()
}

/// The forwards an outcome stored leased, as claimed work (in the run's order,
/// refused ones left out, as `ops::insert_forwards` inserted them).
fn handed_forwards(
    outcome: DeliveryOutcome,
    leased: ops::Leased,
    token: LeaseToken,
) -> Vec<ClaimedForward> {
    let (DeliveryOutcome::Done { forwards, .. }, Some((event_id, plugin))) = (outcome, leased.of)
    else {
        return Vec::new();
    };
    leased
        .ids
        .into_iter()
        .zip(forwards.into_iter().filter(|f| f.refused.is_none()))
        .map(|(id, f)| ClaimedForward {
            id,
            token,
            event_id,
            plugin: plugin.clone(),
            url: f.url,
            headers: f.headers,
            body: f.body,
            attempts: 0,
        })
        .collect()
}

fn reply_all(batch: Vec<Command>, e: &rusqlite::Error) {
    for cmd in batch {
        reply(cmd, Err(StoreError::Unavailable(e.to_string())));
    }
}
