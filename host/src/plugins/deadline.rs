//! Deadlines that hold inside host calls.
//!
//! Epoch interruption stops a guest only while it runs wasm code; a guest that
//! waits inside a WASI call (a clock subscription polled, `poll_oneoff` on a
//! 60 s timer) would keep its thread, its engine permit and its pool slot for as
//! long as it asked. So every host call that can wait is shadowed by a version
//! that waits at most until the run's deadline and then fails the run as
//! [`DeadlinePassed`] (reported as a timeout):
//!
//! - WASI 0.2: `wasi:io/poll` `poll` and `[method]pollable.block` (every wait of
//!   a component ends in one of these: clocks, and streams' `blocking-*`
//!   operations on pipes that are never pending in our sandbox);
//! - WASI preview 1: `poll_oneoff`, re-implemented in [`super::poll_oneoff`]
//!   (wasmtime-wasi's own one waits for the whole timer on the calling thread).
//!
//! Calls stay synchronous: the guest runs on the dispatcher's blocking thread and
//! no call pays for `call_async`. Nothing else in our sandbox can wait: there are
//! no files, no sockets, no name lookups, and stdin and stdout are in-memory pipes.
//!
//! Owns: the run's deadline as seen by host calls, and the error they fail with.
//! Never: changes what a call returns before the deadline.

use std::future::Future;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};

/// The `wasi:io/poll` interface as wasmtime-wasi 48 names it in the linker
/// (guests importing any 0.2.x version link to it).
const POLL: &str = "wasi:io/poll@0.2.12";

/// A host call reached the run's deadline: the run ends as a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run's deadline passed while the guest waited in a host call")]
pub(crate) struct DeadlinePassed;

/// Store state that knows its run's deadline.
pub(crate) trait HasDeadline {
    fn deadline(&self) -> Instant;
}

/// Replaces `poll` and `pollable.block` in `linker` (which already holds WASI
/// 0.2) with versions that give up at the run's deadline.
pub(crate) fn shadow_p2<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: WasiView + HasDeadline + 'static,
{
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, T>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let deadline = store.data().deadline();
            let table = store.data_mut().ctx().table;
            let ready = until(deadline, table.poll(pollables))??;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, T>, (pollable,): (Resource<DynPollable>,)| {
            let deadline = store.data().deadline();
            let table = store.data_mut().ctx().table;
            until(deadline, table.block(pollable))??;
            Ok(())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Drives `wait` (a WASI readiness future, which needs tokio's timers) on the
/// calling thread until it is ready or `deadline` passes.
fn until<F: Future>(deadline: Instant, wait: F) -> wasmtime::Result<F::Output> {
    let deadline = tokio::time::Instant::from_std(deadline);
    // The timer is made inside the runtime `in_tokio` enters (the dispatcher's,
    // or wasmtime-wasi's own when there is none, as under `run-plugin`).
    wasmtime_wasi::runtime::in_tokio(async move { tokio::time::timeout_at(deadline, wait).await })
        .map_err(|_| wasmtime::Error::new(DeadlinePassed))
}

/// Whether a failed call ended at a host call's deadline.
pub(crate) fn passed(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<DeadlinePassed>().is_some()
        || error.chain().any(|c| c.is::<DeadlinePassed>())
}
