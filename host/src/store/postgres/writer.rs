//! Group commit on PostgreSQL: a few writer tasks share one queue; each takes
//! whatever is queued, applies it in one transaction and one COMMIT, and only
//! then answers each caller.
//!
//! Owns: batching, the transaction around a batch (its `now` is the database's
//! clock), waking this replica's workers and telling the notifier (for the
//! others) what a committed batch made due, and what happens on failure: a
//! batch that lost a deadlock or a serialization race is run again; one that
//! failed on a command is redone one command at a time, so a bad command fails
//! alone; a full disk refuses the batch at once; a lost connection answers
//! `Unavailable` and leaves the pool.
//! Never: answers a caller before the COMMIT that holds its data has returned,
//! and never reuses a connection whose transaction state is unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper as Conn, Object, Pool};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use super::finish;
use super::ingest::{self, Item};
use super::listen::Notifier;
use super::ops::{self, Made};
use super::{Fail, retain};
use crate::store::{
    ClaimedDelivery, ClaimedForward, DeadId, DeliveryClaim, DeliveryId, DeliveryOutcome, Finished,
    ForwardId, ForwardOutcome, Ingested, LeaseToken, NewEvent, Pruned, Purged, Retention,
    StoreError, Wake, Work,
};

/// Upper bound on commands per transaction.
const MAX_BATCH: usize = 1024;

/// How many times a batch that lost a deadlock or serialization race is retried.
const CONFLICT_RETRIES: usize = 4;

/// A batch taking longer than this is abandoned (its connection dropped).
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) enum Op {
    Ingest(NewEvent),
    ClaimDeliveries(DeliveryClaim),
    FinishDelivery(DeliveryId, LeaseToken, DeliveryOutcome),
    ClaimForwards(usize, Duration),
    FinishForward(ForwardId, LeaseToken, ForwardOutcome),
    Replay(Vec<DeadId>),
    Purge(Vec<DeadId>),
    Prune(Retention),
    ReleaseLeases,
}

pub(super) enum Answer {
    Ingested(Ingested),
    Deliveries(Vec<ClaimedDelivery>),
    Forwards(Vec<ClaimedForward>),
    Finished(Finished),
    Count(usize),
    Purged(Purged),
    Pruned(Pruned),
}

pub(super) type Reply = oneshot::Sender<Result<Answer, StoreError>>;

/// The queue the store handle sends to, and its length.
pub(super) struct Queue {
    pub tx: mpsc::UnboundedSender<(Op, Reply)>,
    pub queued: Arc<AtomicUsize>,
}

/// Starts `n` writers on one queue; they stop when the queue's sender is dropped.
pub(super) fn spawn(
    n: usize,
    pool: Pool,
    wake: Arc<Wake>,
    owner: Arc<str>,
    notifier: Arc<Notifier>,
) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = Arc::new(Mutex::new(rx));
    let queued = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let w = Writer {
            pool: pool.clone(),
            wake: wake.clone(),
            owner: owner.clone(),
            queued: queued.clone(),
            notifier: notifier.clone(),
        };
        tokio::spawn(w.run(rx.clone()));
    }
    Queue { tx, queued }
}

struct Writer {
    pool: Pool,
    wake: Arc<Wake>,
    owner: Arc<str>,
    queued: Arc<AtomicUsize>,
    notifier: Arc<Notifier>,
}

impl Writer {
    async fn run(self, rx: Arc<Mutex<mpsc::UnboundedReceiver<(Op, Reply)>>>) {
        loop {
            // One writer at a time takes what is queued; the others wait their
            // turn, so commands that arrive meanwhile make the next batch.
            let batch = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                batch
            };
            let n = batch.len();
            self.process(batch).await;
            self.queued.fetch_sub(n, Ordering::Relaxed);
            crate::metrics::observe_batch(n);
        }
    }

    async fn process(&self, batch: Vec<(Op, Reply)>) {
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().unzip();
        let all: Vec<usize> = (0..ops.len()).collect();
        match self.attempt(&ops, &all).await {
            Ok(answers) => {
                for (reply, a) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(a));
                }
            }
            Err(e) if ops.len() > 1 && e.redo_alone() => {
                tracing::warn!(error = %e, batch = ops.len(), "store batch failed; retrying its commands one by one");
                for (i, reply) in replies.into_iter().enumerate() {
                    let answer = self.attempt(&ops, &[i]).await.map(|mut a| a.remove(0));
                    if let Err(e) = &answer {
                        tracing::error!(error = %e, "store write failed");
                    }
                    let _ = reply.send(answer.map_err(|e| e.to_store()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = ops.len(), "store write failed");
                let err = e.to_store();
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Runs `ops[pick]` in one transaction, again after a lost race.
    async fn attempt(&self, ops: &[Op], pick: &[usize]) -> Result<Vec<Answer>, Fail> {
        let mut tries = 0;
        loop {
            let conn = self.pool.get().await.map_err(Fail::pool)?;
            let run = tokio::time::timeout(BATCH_TIMEOUT, self.transaction(&conn, ops, pick)).await;
            let result = match run {
                Ok(r) => r,
                Err(_) => Err(Fail::Lost(format!(
                    "the database did not finish a batch within {BATCH_TIMEOUT:?}"
                ))),
            };
            match result {
                Ok((answers, made)) => {
                    if made.deliveries {
                        self.wake.notify(Work::Deliveries);
                    }
                    if made.forwards {
                        self.wake.notify(Work::Forwards);
                    }
                    self.notifier.tell(made);
                    return Ok(answers);
                }
                Err(e) => {
                    // Roll back what the failed batch began; a connection that
                    // cannot, or whose state is unknown, leaves the pool.
                    let clean = !e.is_lost()
                        && !conn.is_closed()
                        && conn.batch_execute("ROLLBACK").await.is_ok();
                    if !clean {
                        drop(Object::take(conn));
                    }
                    if e.is_conflict() && tries < CONFLICT_RETRIES {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(
                            fastrand::u64(1..20) * tries as u64,
                        ))
                        .await;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn transaction(
        &self,
        c: &Conn,
        ops: &[Op],
        pick: &[usize],
    ) -> Result<(Vec<Answer>, Made), Fail> {
        // BEGIN and the database's clock in one round trip; every command of
        // the batch uses that time, as the leases of every replica do.
        let mut now = None;
        for m in c
            .simple_query("BEGIN; SELECT (extract(epoch FROM now()) * 1000)::int8")
            .await?
        {
            if let SimpleQueryMessage::Row(r) = m {
                now = r.get(0).and_then(|s| s.parse::<i64>().ok());
            }
        }
        let now = now.ok_or(Fail::Retry("the database did not give its time"))?;
        let mut made = Made::default();
        let mut answers: Vec<Option<Answer>> = pick.iter().map(|_| None).collect();

        // Every ingest of the batch in one set of statements.
        let ingests: Vec<(usize, Item<'_>)> = pick
            .iter()
            .enumerate()
            .filter_map(|(slot, &i)| match &ops[i] {
                Op::Ingest(new) => Some((
                    slot,
                    Item {
                        event: &new.event,
                        plugins: &new.plugins,
                        parent: None,
                    },
                )),
                _ => None,
            })
            .collect();
        if !ingests.is_empty() {
            let (slots, items): (Vec<usize>, Vec<Item<'_>>) = ingests.into_iter().unzip();
            let done = ingest::ingest(c, &items, now).await?;
            for (slot, r) in slots.into_iter().zip(done) {
                made.deliveries |=
                    matches!(r, Ingested::Stored { deliveries, .. } if deliveries > 0);
                answers[slot] = Some(Answer::Ingested(r));
            }
        }
        for (slot, &i) in pick.iter().enumerate() {
            if answers[slot].is_none() {
                answers[slot] = Some(self.apply(c, &ops[i], now, &mut made).await?);
            }
        }
        if let Err(e) = c.batch_execute("COMMIT").await {
            // A COMMIT whose answer was lost may have committed: say so by
            // dropping the connection (the callers get `Unavailable`).
            return Err(if e.code().is_some() {
                Fail::Db(e)
            } else {
                Fail::Lost(format!("the database connection failed during COMMIT: {e}"))
            });
        }
        Ok((answers.into_iter().flatten().collect(), made))
    }

    async fn apply(&self, c: &Conn, op: &Op, now: i64, made: &mut Made) -> Result<Answer, Fail> {
        Ok(match op {
            Op::Ingest(new) => {
                let items = [Item {
                    event: &new.event,
                    plugins: &new.plugins,
                    parent: None,
                }];
                Answer::Ingested(ingest::ingest(c, &items, now).await?.remove(0))
            }
            Op::ClaimDeliveries(claim) => {
                Answer::Deliveries(ops::claim_deliveries(c, claim, &self.owner, now).await?)
            }
            Op::FinishDelivery(id, token, outcome) => {
                Answer::Finished(finish::finish_delivery(c, *id, *token, outcome, now, made).await?)
            }
            Op::ClaimForwards(limit, lease) => {
                Answer::Forwards(ops::claim_forwards(c, *limit, *lease, &self.owner, now).await?)
            }
            Op::FinishForward(id, token, outcome) => {
                Answer::Finished(finish::finish_forward(c, *id, *token, outcome, now, made).await?)
            }
            Op::Replay(ids) => Answer::Count(ops::replay(c, ids, now, made).await?),
            Op::Purge(ids) => {
                let mut purged = Purged::default();
                for id in ids {
                    let (entry, events) = retain::purge_one(c, *id).await?;
                    purged.entries += usize::from(entry);
                    purged.events += events;
                }
                Answer::Purged(purged)
            }
            Op::Prune(policy) => {
                let cutoff = |d: Duration| now.saturating_sub(d.as_millis() as i64);
                Answer::Pruned(Pruned {
                    events: retain::prune_events(c, cutoff(policy.retention), policy.batch).await?,
                    dedupe: retain::prune_dedupe(c, cutoff(policy.dedupe_horizon), policy.batch)
                        .await?,
                })
            }
            Op::ReleaseLeases => {
                let n = ops::release_leases(c, &self.owner).await?;
                made.deliveries |= n > 0;
                made.forwards |= n > 0;
                Answer::Count(n)
            }
        })
    }
}

impl Fail {
    /// A lost deadlock or serialization race: running the batch again succeeds.
    fn is_conflict(&self) -> bool {
        match self {
            Fail::Db(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
            ),
            Fail::Retry(_) => true,
            Fail::Lost(_) | Fail::Pool(_) => false,
        }
    }

    /// The connection is gone or in an unknown state.
    fn is_lost(&self) -> bool {
        match self {
            Fail::Db(e) => e.code().is_none() || e.is_closed(),
            Fail::Lost(_) => true,
            Fail::Retry(_) | Fail::Pool(_) => false,
        }
    }

    /// Whether redoing the commands one by one may help: a command failed, not
    /// the database.
    fn redo_alone(&self) -> bool {
        match self {
            Fail::Db(e) => {
                !self.is_lost()
                    && !matches!(e.code(), Some(c) if *c == SqlState::DISK_FULL
                        || c.code().starts_with("08") || c.code().starts_with("57"))
            }
            Fail::Retry(_) => true,
            Fail::Lost(_) | Fail::Pool(_) => false,
        }
    }
}
