//! The single writer thread and group commit.
//!
//! Owns: draining queued commands, applying them in one transaction, committing
//! once (one fsync for the whole batch), then answering each caller. If any
//! command fails, the batch rolls back and each command is redone alone.
//! Never: answers a caller before the commit that holds its data has returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::SystemTime;

use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};

use super::ops::{
    claim_deliveries, claim_forwards, finish_delivery, finish_forward, ingest, replay,
};
use super::{ClaimedDelivery, ClaimedForward, Command, Ingested, StoreError};
use crate::event::unix_ms;

/// Upper bound on commands per transaction, so one batch cannot grow without end.
const MAX_BATCH: usize = 1024;

/// Which workers a committed batch gave something to do.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Wake {
    pub deliveries: bool,
    pub forwards: bool,
}

impl std::ops::BitOrAssign for Wake {
    fn bitor_assign(&mut self, o: Wake) {
        self.deliveries |= o.deliveries;
        self.forwards |= o.forwards;
    }
}

/// What a command produced, sent to its caller once the batch is committed.
enum Answer {
    Ingested(Ingested),
    Deliveries(Vec<ClaimedDelivery>),
    Forwards(Vec<ClaimedForward>),
    Done,
    Count(usize),
}

pub(super) struct Writer {
    pub conn: Connection,
    pub queued: Arc<AtomicUsize>,
    pub deliveries_due: Arc<Notify>,
    pub forwards_due: Arc<Notify>,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
    }

    /// Applies one batch and answers every command in it.
    pub(super) fn process(&mut self, batch: Vec<Command>) {
        let n = batch.len();
        let mut wake = Wake::default();
        match self.transaction(&batch, &mut wake) {
            Ok(answers) => {
                for (cmd, answer) in batch.into_iter().zip(answers) {
                    reply(cmd, Ok(answer));
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
                        Ok(mut a) => reply(cmd, Ok(a.pop().unwrap_or(Answer::Done))),
                        Err(e) => {
                            tracing::error!(error = %e, "store write failed");
                            reply_all(vec![cmd], &e);
                        }
                    }
                }
            }
        }
        self.queued.fetch_sub(n, Ordering::Relaxed);
        if wake.deliveries {
            self.deliveries_due.notify_waiters();
        }
        if wake.forwards {
            self.forwards_due.notify_waiters();
        }
        crate::metrics::observe_batch(n);
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
            answers.push(apply(&tx, cmd, now, &mut made_work)?);
        }
        tx.commit()?;
        *wake |= made_work;
        Ok(answers)
    }
}

fn apply(tx: &Connection, cmd: &Command, now: i64, wake: &mut Wake) -> rusqlite::Result<Answer> {
    Ok(match cmd {
        Command::Ingest { event, plugins, .. } => {
            let r = ingest(tx, event, plugins, None, now)?;
            wake.deliveries |= matches!(r, Ingested::Stored { deliveries, .. } if deliveries > 0);
            Answer::Ingested(r)
        }
        Command::ClaimDeliveries {
            loaded,
            limit,
            lease,
            ..
        } => Answer::Deliveries(claim_deliveries(tx, loaded, *limit, *lease, now)?),
        Command::FinishDelivery { id, outcome, .. } => {
            *wake |= finish_delivery(tx, *id, outcome, now)?;
            Answer::Done
        }
        Command::ClaimForwards { limit, lease, .. } => {
            Answer::Forwards(claim_forwards(tx, *limit, *lease, now)?)
        }
        Command::FinishForward { id, outcome, .. } => {
            finish_forward(tx, *id, outcome, now)?;
            Answer::Done
        }
        Command::Replay { target, .. } => {
            let n = replay(tx, target, now)?;
            wake.deliveries |= n > 0;
            wake.forwards |= n > 0;
            Answer::Count(n)
        }
    })
}

/// Sends each command's answer on its own reply channel.
fn reply(cmd: Command, answer: Result<Answer, StoreError>) {
    fn send<T>(tx: oneshot::Sender<Result<T, StoreError>>, v: Result<T, StoreError>) {
        let _ = tx.send(v);
    }
    let mismatch = || StoreError::Unavailable("internal: answer does not fit its command".into());
    match (cmd, answer) {
        (Command::Ingest { reply, .. }, Ok(Answer::Ingested(v))) => send(reply, Ok(v)),
        (Command::ClaimDeliveries { reply, .. }, Ok(Answer::Deliveries(v))) => send(reply, Ok(v)),
        (Command::ClaimForwards { reply, .. }, Ok(Answer::Forwards(v))) => send(reply, Ok(v)),
        (Command::Replay { reply, .. }, Ok(Answer::Count(v))) => send(reply, Ok(v)),
        (
            Command::FinishDelivery { reply, .. } | Command::FinishForward { reply, .. },
            Ok(Answer::Done),
        ) => send(reply, Ok(())),
        (cmd, answer) => {
            let e = answer.err().unwrap_or_else(mismatch);
            match cmd {
                Command::Ingest { reply, .. } => send(reply, Err(e)),
                Command::ClaimDeliveries { reply, .. } => send(reply, Err(e)),
                Command::ClaimForwards { reply, .. } => send(reply, Err(e)),
                Command::Replay { reply, .. } => send(reply, Err(e)),
                Command::FinishDelivery { reply, .. } | Command::FinishForward { reply, .. } => {
                    send(reply, Err(e))
                }
            }
        }
    }
}

fn reply_all(batch: Vec<Command>, e: &rusqlite::Error) {
    for cmd in batch {
        reply(cmd, Err(StoreError::Unavailable(e.to_string())));
    }
}
