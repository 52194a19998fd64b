//! WASI preview 1 `poll_oneoff`, bounded by the run's deadline.
//!
//! wasmtime-wasi's own `poll_oneoff` waits on the calling thread for as long as the
//! guest's timers say, past any deadline (its preview 1 module is private, so it
//! cannot be wrapped). This one replaces it in the command linker and answers the
//! same way for what our sandbox has: clocks (monotonic and realtime, relative or
//! absolute), reads of stdin and writes to stdout and stderr (in-memory pipes,
//! always ready); any other descriptor is `badf`, as there are no files or sockets.
//! A wait that would end after the deadline ends at the deadline instead, and the
//! call fails the run as [`DeadlinePassed`].
//!
//! Owns: the preview 1 memory layout of `subscription` and `event`.
//! Never: sleeps past the run's deadline.

use std::time::{Duration, Instant};

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::{monotonic_clock, wall_clock};

use super::command::State;
use super::deadline::{DeadlinePassed, HasDeadline};

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;

/// Replaces `wasi_snapshot_preview1::poll_oneoff` in `linker`.
pub(crate) fn shadow(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "poll_oneoff", poll_oneoff)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One subscription as read from the guest.
struct Subscription {
    userdata: u64,
    kind: u8,
    /// When a clock fires (`None`: never, a time too far off to represent).
    fires: Option<Instant>,
}

fn poll_oneoff(
    mut caller: Caller<'_, State>,
    subs: i32,
    events: i32,
    nsubscriptions: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("poll_oneoff: the module exports no memory");
    };
    let n = nsubscriptions as u32 as usize;
    if n == 0 {
        // Indefinite sleeping is not supported in preview 1.
        return Ok(ERRNO_INVAL);
    }
    let Some(bytes) = slice(memory.data(&caller), subs, n * SUBSCRIPTION_SIZE) else {
        return Ok(ERRNO_FAULT);
    };
    let raw: Vec<[u8; SUBSCRIPTION_SIZE]> = bytes
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(|c| c.try_into().unwrap_or([0; SUBSCRIPTION_SIZE]))
        .collect();
    let mut parsed = Vec::with_capacity(n);
    for sub in &raw {
        match parse(&mut caller, sub) {
            Ok(s) => parsed.push(s),
            Err(errno) => return Ok(errno),
        }
    }

    // Descriptors are always ready here; otherwise wait for the first clock,
    // but never past the deadline.
    if !parsed.iter().any(|s| s.kind != EVENTTYPE_CLOCK) {
        let deadline = caller.data().deadline();
        let first = parsed.iter().filter_map(|s| s.fires).min();
        match first {
            Some(at) if at <= deadline => sleep_until(at),
            _ => {
                sleep_until(deadline);
                return Err(wasmtime::Error::new(DeadlinePassed));
            }
        }
    }

    let now = Instant::now();
    let mut out = Vec::with_capacity(n * EVENT_SIZE);
    let mut count = 0u32;
    for s in &parsed {
        let ready = s.kind != EVENTTYPE_CLOCK || s.fires.is_some_and(|at| at <= now);
        if ready {
            out.extend_from_slice(&event(s));
            count += 1;
        }
    }
    let data = memory.data_mut(&mut caller);
    let Some(target) = slice_mut(data, events, out.len()) else {
        return Ok(ERRNO_FAULT);
    };
    target.copy_from_slice(&out);
    let Some(target) = slice_mut(data, nevents, 4) else {
        return Ok(ERRNO_FAULT);
    };
    target.copy_from_slice(&count.to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

/// `subscription`: `userdata` u64 @0, tag u8 @8, then at @16 either a clock
/// (`id` u32 @16, `timeout` u64 @24, `precision` u64 @32, `flags` u16 @40) or a
/// descriptor (`fd` u32 @16).
fn parse(
    caller: &mut Caller<'_, State>,
    sub: &[u8; SUBSCRIPTION_SIZE],
) -> Result<Subscription, i32> {
    let u64_at = |at: usize| u64::from_le_bytes(sub[at..at + 8].try_into().unwrap_or_default());
    let u32_at = |at: usize| u32::from_le_bytes(sub[at..at + 4].try_into().unwrap_or_default());
    let userdata = u64_at(0);
    let kind = sub[8];
    let fires = match kind {
        EVENTTYPE_CLOCK => {
            let timeout = u64_at(24);
            let flags = u16::from_le_bytes([sub[40], sub[41]]);
            let absolute = flags & SUBCLOCK_ABSTIME != 0;
            let wait = match (u32_at(16), absolute) {
                (CLOCK_MONOTONIC | CLOCK_REALTIME, false) => timeout,
                (CLOCK_MONOTONIC, true) => timeout.saturating_sub(monotonic_now(caller)),
                (CLOCK_REALTIME, true) => timeout.saturating_sub(realtime_now(caller)),
                _ => return Err(ERRNO_INVAL),
            };
            Instant::now().checked_add(Duration::from_nanos(wait))
        }
        EVENTTYPE_FD_READ if u32_at(16) == 0 => None,
        EVENTTYPE_FD_WRITE if matches!(u32_at(16), 1 | 2) => None,
        EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => return Err(ERRNO_BADF),
        _ => return Err(ERRNO_INVAL),
    };
    Ok(Subscription {
        userdata,
        kind,
        fires,
    })
}

/// `event`: `userdata` u64 @0, `error` u16 @8, `type` u8 @10, `nbytes` u64 @16,
/// `flags` u16 @24 (32 bytes). A ready descriptor reports one byte, as
/// wasmtime-wasi does for pipes.
fn event(s: &Subscription) -> [u8; EVENT_SIZE] {
    let mut e = [0u8; EVENT_SIZE];
    e[0..8].copy_from_slice(&s.userdata.to_le_bytes());
    e[10] = s.kind;
    let nbytes: u64 = if s.kind == EVENTTYPE_CLOCK { 0 } else { 1 };
    e[16..24].copy_from_slice(&nbytes.to_le_bytes());
    e
}

/// The guest's monotonic clock (the one `clock_time_get` reads), in ns.
fn monotonic_now(caller: &mut Caller<'_, State>) -> u64 {
    let view = caller.data_mut().wasi.ctx();
    let mut clocks = WasiClocksCtxView {
        ctx: view.ctx.clocks(),
        table: view.table,
    };
    monotonic_clock::Host::now(&mut clocks).unwrap_or(0)
}

/// The guest's wall clock, in ns since the Unix epoch.
fn realtime_now(caller: &mut Caller<'_, State>) -> u64 {
    let view = caller.data_mut().wasi.ctx();
    let mut clocks = WasiClocksCtxView {
        ctx: view.ctx.clocks(),
        table: view.table,
    };
    wall_clock::Host::now(&mut clocks)
        .map(|t| {
            t.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(t.nanoseconds))
        })
        .unwrap_or(0)
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn slice(data: &[u8], ptr: i32, len: usize) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    data.get(start..start.checked_add(len)?)
}

fn slice_mut(data: &mut [u8], ptr: i32, len: usize) -> Option<&mut [u8]> {
    let start = ptr as u32 as usize;
    data.get_mut(start..start.checked_add(len)?)
}
