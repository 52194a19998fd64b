//! Fair share of the plugin workers: per-plugin queues of claimed work, each
//! plugin's quota, and plugins taken in turn.
//!
//! A plugin holds at most its quota of the workers while another plugin has work
//! waiting; a plugin alone may use every worker. The next free worker goes to the
//! plugin under its quota that runs the fewest items (the next in turn among
//! equals), so when every run of one plugin lasts until its deadline, another
//! plugin's work waits at most about one deadline (until the first of those runs
//! ends), and then gets its share of the workers, not just of the starts. Each plugin may claim ahead only
//! its part of the prefetch window, so one plugin's backlog cannot fill the local
//! queues either.
//!
//! Owns: the queues, the quota rule, the turn order, and the claim-and-run loop
//! the dispatcher drives with its closures.
//! Never: talks to the store or runs a plugin itself (`claim`, `handle` and
//! `give_back` do), or knows what an item is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::store::{Wake, Work};

/// Claimed items waiting per plugin, and which plugin's turn comes next.
pub(crate) struct Queues<T> {
    workers: usize,
    /// Items claimed ahead, per key, over all keys at most `workers × prefetch`.
    prefetch: usize,
    keys: HashMap<String, Key<T>>,
    /// Keys with queued items, in the order they get their turn.
    turn: VecDeque<String>,
    /// Keys whose last claim filled their room: more of their work is likely due
    /// in the store, so they count as waiting even with an empty queue.
    backlog: HashSet<String>,
    running: usize,
}

struct Key<T> {
    queued: VecDeque<T>,
    running: usize,
}

impl<T> Default for Key<T> {
    fn default() -> Self {
        Key {
            queued: VecDeque::new(),
            running: 0,
        }
    }
}

/// How many more items each key may claim now (see [`Queues::room`]).
#[derive(Debug, Clone)]
pub(crate) struct Room {
    per_key: HashMap<String, usize>,
    /// For keys with nothing queued or running.
    idle: usize,
}

impl Room {
    pub(crate) fn for_key(&self, key: &str) -> usize {
        self.per_key.get(key).copied().unwrap_or(self.idle)
    }
}

impl<T> Queues<T> {
    pub(crate) fn new(workers: usize, prefetch: usize) -> Self {
        Queues {
            workers: workers.max(1),
            prefetch: prefetch.max(1),
            keys: HashMap::new(),
            turn: VecDeque::new(),
            backlog: HashSet::new(),
            running: 0,
        }
    }

    /// Adds a claimed item of `key` at the end of its queue.
    pub(crate) fn push(&mut self, key: &str, item: T) {
        let k = self.keys.entry(key.to_string()).or_default();
        if k.queued.is_empty() {
            self.turn.push_back(key.to_string());
        }
        k.queued.push_back(item);
    }

    /// Adds what a claim with `room` returned, and remembers which keys filled
    /// their room (more of their work is likely due).
    pub(crate) fn claimed(&mut self, room: &Room, items: Vec<(String, T)>) {
        let mut got: HashMap<String, usize> = HashMap::new();
        for (key, item) in items {
            *got.entry(key.clone()).or_default() += 1;
            self.push(&key, item);
        }
        for (key, n) in &got {
            if *n >= room.for_key(key) {
                self.backlog.insert(key.clone());
            }
        }
        // A key that was offered room and did not fill it has nothing more due.
        self.backlog.retain(|key| {
            got.get(key).is_some_and(|n| *n >= room.for_key(key)) || room.for_key(key) == 0
        });
    }

    /// Whether a claim is worth making now: the queues run low, or a key with
    /// more work due has used up what it claimed.
    pub(crate) fn wants_claim(&self) -> bool {
        self.queued() < self.workers * self.prefetch / 2
            || self
                .backlog
                .iter()
                .any(|key| self.keys.get(key).is_none_or(|k| k.queued.is_empty()))
    }

    /// The next item to start, if a worker is free: from the key that runs the
    /// fewest items among those under `quota(key)` (or the only key with work
    /// waiting), the first in turn among equals. That key then goes to the back of
    /// the turn. Counting what runs, not what started, keeps the share fair in
    /// time: a plugin whose runs are quick is not held to one start per turn of
    /// plugins whose runs last until their deadline.
    pub(crate) fn next(&mut self, quota: &dyn Fn(&str) -> usize) -> Option<(String, T)> {
        if self.running >= self.workers {
            return None;
        }
        let alone = self.turn.len() == 1
            && self
                .backlog
                .iter()
                .all(|key| self.turn.front() == Some(key));
        let pos = self
            .turn
            .iter()
            .enumerate()
            .filter_map(|(pos, key)| {
                let running = self.keys.get(key)?.running;
                (alone || running < quota(key).max(1)).then_some((running, pos))
            })
            .min()?
            .1;
        let key = self.turn.remove(pos)?;
        let k = self.keys.get_mut(&key)?;
        let item = k.queued.pop_front()?;
        k.running += 1;
        self.running += 1;
        if !k.queued.is_empty() {
            self.turn.push_back(key.clone());
        }
        Some((key, item))
    }

    /// An item of `key` finished.
    pub(crate) fn done(&mut self, key: &str) {
        if let Some(k) = self.keys.get_mut(key) {
            k.running = k.running.saturating_sub(1);
            self.running = self.running.saturating_sub(1);
            if k.running == 0 && k.queued.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// How much each key may claim: the prefetch window (`workers × prefetch`)
    /// split among the keys with work (a key without any gets the share it would
    /// have as one more), less what each has queued. An item queued at the back
    /// of its key's share starts within about `prefetch` deadlines, whatever the
    /// number of keys: that is what the leases are sized for.
    pub(crate) fn room(&self) -> Room {
        let window = self.workers * self.prefetch;
        let share = |keys: usize| (window / keys.max(1)).max(2);
        let cap = share(self.keys.len());
        Room {
            per_key: self
                .keys
                .iter()
                .map(|(name, k)| (name.clone(), cap.saturating_sub(k.queued.len())))
                .collect(),
            idle: share(self.keys.len() + 1),
        }
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }

    pub(crate) fn queued(&self) -> usize {
        self.keys.values().map(|k| k.queued.len()).sum()
    }

    /// Takes every queued item out (to give them back on stop).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.turn.clear();
        self.backlog.clear();
        let mut items = Vec::new();
        for k in self.keys.values_mut() {
            items.extend(k.queued.drain(..));
        }
        self.keys.retain(|_, k| k.running > 0);
        items
    }
}

/// The loop's knobs.
pub(crate) struct Settings {
    pub workers: usize,
    /// Items claimed ahead per worker.
    pub prefetch: usize,
    /// How often to claim when nothing wakes the loop (retries coming due).
    pub poll: Duration,
    /// Which wake-up says work is due.
    pub work: Work,
}

/// Runs until `stop` turns true, then gives back what is queued and waits for
/// running items to finish.
///
/// `claim(room)` leases items for any key, at most `room.for_key(key)` each, and
/// returns them with their key; items handed over in `inbox` (already leased,
/// see `handoff`) join the same queues; `handle` runs one on its own task;
/// `quota(key)` is read at each decision (it may change with the config);
/// `give_back` returns queued items that were never started.
#[allow(clippy::too_many_arguments)] // the loop's collaborators, each one closure
pub(crate) async fn run<T, C, CF, H, HF, G, GF>(
    settings: Settings,
    quota: impl Fn(&str) -> usize,
    wake: &Wake,
    mut inbox: mpsc::UnboundedReceiver<(String, T)>,
    mut stop: watch::Receiver<bool>,
    claim: C,
    handle: H,
    give_back: G,
) where
    T: Send + 'static,
    C: Fn(Room) -> CF,
    CF: Future<Output = Vec<(String, T)>>,
    H: Fn(T) -> HF,
    HF: Future<Output = ()> + Send + 'static,
    G: FnOnce(Vec<T>) -> GF,
    GF: Future<Output = ()>,
{
    let mut queues: Queues<T> = Queues::new(settings.workers, settings.prefetch);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut want_claim = true;
    let mut next_poll = tokio::time::Instant::now() + settings.poll;
    // The claim in flight, with the room it was made for. The loop goes on
    // while it waits for its commit: items queued or handed over start as
    // workers free up. (Awaited inline, a claim left the workers idle for a
    // commit's length each time the queues ran low, and the backlog drained
    // at a fraction of what the workers could run.)
    let mut claiming: Option<(Room, std::pin::Pin<Box<CF>>)> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        // Register for the wake-up before looking, so a commit in between is not missed.
        let woken = wake.notified(settings.work);
        tokio::pin!(woken);
        woken.as_mut().enable();

        if want_claim && claiming.is_none() {
            want_claim = false;
            let room = queues.room();
            claiming = Some((room.clone(), Box::pin(claim(room))));
        }
        while let Some((key, item)) = queues.next(&quota) {
            let work = handle(item);
            let done = done_tx.clone();
            tokio::spawn(async move {
                work.await;
                let _ = done.send(key);
            });
        }
        let in_flight = async {
            match claiming.as_mut() {
                Some((_, claim)) => claim.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            items = in_flight => {
                if let Some((room, _)) = claiming.take() {
                    queues.claimed(&room, items);
                }
            }
            Some((key, item)) = inbox.recv() => {
                queues.push(&key, item);
                while let Ok((key, item)) = inbox.try_recv() {
                    queues.push(&key, item);
                }
            }
            Some(key) = done_rx.recv() => {
                queues.done(&key);
                while let Ok(key) = done_rx.try_recv() {
                    queues.done(&key);
                }
                want_claim = queues.wants_claim();
            }
            _ = &mut woken => want_claim = true,
            _ = tokio::time::sleep_until(next_poll) => {
                want_claim = true;
                next_poll = tokio::time::Instant::now() + settings.poll;
            }
            _ = stop.changed() => {}
        }
    }
    // What a claim in flight leased is given back with the rest.
    if let Some((room, claim)) = claiming.take() {
        let items = claim.await;
        queues.claimed(&room, items);
    }
    inbox.close();
    while let Ok((key, item)) = inbox.try_recv() {
        queues.push(&key, item);
    }
    give_back(queues.drain()).await;
    while queues.running() > 0 {
        match done_rx.recv().await {
            Some(key) => queues.done(&key),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests;
