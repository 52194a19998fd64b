//! Threads of our own for compiling plugins, bounded in number.
//!
//! Compiling a large plugin takes seconds of CPU. It runs here, never on the async
//! runtime, and never on rayon's global pool (wasmtime's `parallel_compilation` is
//! off), where one big compile would starve the next: with two or more threads, a
//! slow compile leaves the others free for the next plugin's reload.
//!
//! Owns: the compile threads and their queue.
//! Never: holds a lock of the registry while a job runs, or decides what a job does.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed number of compile threads, started on the first job.
pub(crate) struct Compiler {
    threads: usize,
    queue: Mutex<Option<Sender<Job>>>,
}

impl Compiler {
    pub(crate) fn new(threads: usize) -> Self {
        Compiler {
            threads: threads.max(1),
            queue: Mutex::new(None),
        }
    }

    /// How many jobs may run at once.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job`; its result arrives on the receiver (which fails if the job
    /// panicked or no thread could be started). Await it, or `blocking_recv` it
    /// outside the async runtime.
    pub(crate) fn submit<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> oneshot::Receiver<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            *queue = self.start();
        }
        if let Some(q) = queue.as_ref() {
            // A send fails only if every thread died; the receiver then reports it.
            let _ = q.send(job);
        }
        rx
    }

    /// Starts the threads; they end when the queue's sender is dropped (with the
    /// engine), each after its current job.
    fn start(&self) -> Option<Sender<Job>> {
        let (tx, rx) = channel::<Job>();
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for n in 0..self.threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hookrouter-compile-{n}"))
                .spawn(move || {
                    loop {
                        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = next else { break };
                        // A panicking job drops its sender (its receiver fails);
                        // the thread lives on for the next job.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a compile thread"),
            }
        }
        (started > 0).then_some(tx)
    }
}

/// The default number of compile threads: the cores, from 2 to 4.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_slow_job_leaves_the_other_thread_free() {
        let compiler = Compiler::new(2);
        let slow = compiler.submit(|| std::thread::sleep(Duration::from_secs(2)));
        let started = Instant::now();
        let quick = compiler.submit(|| 7);
        assert_eq!(quick.blocking_recv().unwrap(), 7);
        assert!(started.elapsed() < Duration::from_secs(1));
        slow.blocking_recv().unwrap();
    }

    #[test]
    fn a_panicking_job_fails_its_receiver_only() {
        let compiler = Compiler::new(1);
        let bad = compiler.submit(|| -> u32 { panic!("compile bug") });
        assert!(bad.blocking_recv().is_err());
        // The thread survives the panic and takes the next job.
        assert_eq!(compiler.submit(|| 1).blocking_recv().unwrap(), 1);
    }
}
