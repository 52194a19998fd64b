//! The time series of `GET /admin/stats`: counts of this replica's events,
//! attempts and forward latencies, closed into one point every
//! [`INTERVAL`], with the store's backlog sampled at the close; the last hour
//! is kept in memory.
//!
//! Owns: the counters (atomics on the hot path), the closing of intervals and
//! the ring of points.
//! Never: queries the store on the hot path; only the sampler reads the backlog.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::event::unix_ms;

/// One point per interval.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Points kept: one hour.
const KEPT: usize = 720;

/// Forward latencies kept per interval for its percentiles.
const LATENCIES_KEPT: usize = 4096;

/// One closed interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// When the interval began, unix milliseconds.
    pub at: i64,
    pub secs: f64,
    /// Events stored (from the wire and emitted), per second.
    pub events_per_sec: f64,
    pub duplicates: u64,
    /// Delivery attempts that succeeded, and that failed (retried or dead).
    pub deliveries_ok: u64,
    pub deliveries_failed: u64,
    /// Deliveries and forwards that went dead in the interval.
    pub dead: u64,
    /// Failed attempts over all attempts, deliveries and forwards (`None`
    /// when nothing ran).
    pub failure_rate: Option<f64>,
    pub forwards_sent: u64,
    pub forwards_failed: u64,
    /// Forward attempts' durations (`None` when there were none).
    pub forward_p50_ms: Option<f64>,
    pub forward_p95_ms: Option<f64>,
    /// Pending deliveries and forwards at the close.
    pub backlog: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    duplicates: AtomicU64,
    deliveries_ok: AtomicU64,
    deliveries_failed: AtomicU64,
    dead: AtomicU64,
    forwards_sent: AtomicU64,
    forwards_failed: AtomicU64,
}

/// The counters of the open interval and the closed points.
#[derive(Debug)]
pub struct Series {
    now: Counters,
    latencies: Mutex<Vec<Duration>>,
    closed: Mutex<(SystemTime, VecDeque<Point>)>,
}

/// What an attempt's outcome adds to the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    DeliveryOk,
    /// Failed; `dead` when it will not be retried.
    DeliveryFailed {
        dead: bool,
    },
    ForwardSent(Duration),
    ForwardFailed {
        dead: bool,
        took: Duration,
    },
}

impl Series {
    /// A series whose first interval opens at `start`.
    pub fn new(start: SystemTime) -> Series {
        Series {
            now: Counters::default(),
            latencies: Mutex::default(),
            closed: Mutex::new((start, VecDeque::new())),
        }
    }

    pub(crate) fn event(&self, n: u64) {
        self.now.events.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn duplicate(&self) {
        self.now.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn attempt(&self, a: Attempt) {
        let add = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match a {
            Attempt::DeliveryOk => add(&self.now.deliveries_ok),
            Attempt::DeliveryFailed { dead } => {
                add(&self.now.deliveries_failed);
                if dead {
                    add(&self.now.dead);
                }
            }
            Attempt::ForwardSent(took) => {
                add(&self.now.forwards_sent);
                self.latency(took);
            }
            Attempt::ForwardFailed { dead, took } => {
                add(&self.now.forwards_failed);
                if dead {
                    add(&self.now.dead);
                }
                self.latency(took);
            }
        }
    }

    fn latency(&self, took: Duration) {
        let mut l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() < LATENCIES_KEPT {
            l.push(took);
        }
    }

    /// Closes the open interval at `now` with the backlog read then, and opens
    /// the next one.
    pub fn close(&self, now: SystemTime, backlog: Option<u64>) {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let mut latencies =
            std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|p| p.into_inner()));
        latencies.sort();
        let pct = |p: f64| {
            (!latencies.is_empty()).then(|| {
                let i = ((latencies.len() - 1) as f64 * p).round() as usize;
                latencies[i].as_secs_f64() * 1000.0
            })
        };
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        let (start, points) = &mut *closed;
        let secs = now
            .duration_since(*start)
            .unwrap_or_default()
            .as_secs_f64()
            .max(0.001);
        let (ok, failed) = (
            take(&self.now.deliveries_ok),
            take(&self.now.deliveries_failed),
        );
        let (sent, fwd_failed) = (
            take(&self.now.forwards_sent),
            take(&self.now.forwards_failed),
        );
        let attempts = ok + failed + sent + fwd_failed;
        let point = Point {
            at: unix_ms(*start),
            secs,
            events_per_sec: take(&self.now.events) as f64 / secs,
            duplicates: take(&self.now.duplicates),
            deliveries_ok: ok,
            deliveries_failed: failed,
            dead: take(&self.now.dead),
            failure_rate: (attempts > 0).then(|| (failed + fwd_failed) as f64 / attempts as f64),
            forwards_sent: sent,
            forwards_failed: fwd_failed,
            forward_p50_ms: pct(0.50),
            forward_p95_ms: pct(0.95),
            backlog,
        };
        if points.len() == KEPT {
            points.pop_front();
        }
        points.push_back(point);
        *start = now;
    }

    /// The closed points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        closed.1.iter().cloned().collect()
    }
}
