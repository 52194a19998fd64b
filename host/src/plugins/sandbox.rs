//! What both ABIs share per invocation: the memory limiter, output capture, the
//! deadline, and turning a wasmtime failure into a `PluginError`.
//!
//! Owns: the sandbox's knobs for one `Store` and the classification of failures.
//! Never: grants a capability (files, sockets, env): each ABI's `WasiCtx` builder
//! starts from nothing and adds only what the contract names.

use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::engine::{EPOCH_TICK, Limits};
use super::error::PluginError;

/// Refuses memory growth past the cap and remembers that it did, so that the
/// abort that follows is reported as `MemoryLimit` rather than a plain trap.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub(crate) hit: bool,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory_bytes: limits.memory_bytes,
            hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The one WASI context policy of both ABIs: stdout and stderr captured, no
/// files (no preopens), no sockets, no name lookups, no environment. Each ABI adds
/// only what its contract hands the guest (the command ABI's stdin and env).
pub(crate) fn wasi_builder(stdout: &Capture, stderr: &Capture) -> wasmtime_wasi::WasiCtxBuilder {
    let mut builder = wasmtime_wasi::WasiCtx::builder();
    builder
        .stdout(stdout.pipe())
        .stderr(stderr.pipe())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}

/// Sets the wall-clock deadline, in epoch ticks (the ticker thread advances the
/// epoch every `EPOCH_TICK`). One extra tick covers the partial tick now running.
pub(crate) fn set_deadline<T>(store: &mut Store<T>, limits: &Limits) {
    let ticks = limits.timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1;
    store.set_epoch_deadline(ticks.max(2));
    store.epoch_deadline_trap();
}

/// A captured stdout or stderr stream with a cap.
#[derive(Clone)]
pub(crate) struct Capture {
    pipe: MemoryOutputPipe,
    limit: usize,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        // One byte over the cap, so that "exactly the cap" is allowed and anything
        // more is seen.
        Capture {
            pipe: MemoryOutputPipe::new(limit.saturating_add(1)),
            limit,
        }
    }

    pub(crate) fn pipe(&self) -> MemoryOutputPipe {
        self.pipe.clone()
    }

    /// What the guest wrote (one copy out of the pipe), and whether it wrote
    /// more than the limit.
    pub(crate) fn finish(&self) -> (bytes::Bytes, bool) {
        let bytes = self.pipe.contents();
        let over = bytes.len() > self.limit;
        (bytes, over)
    }
}

/// The plugin and event a failure is reported against.
pub(crate) struct Context<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) event_id: &'a str,
    pub(crate) limits: &'a Limits,
}

impl Context<'_> {
    pub(crate) fn guest(&self, message: impl Into<String>) -> PluginError {
        PluginError::Guest {
            plugin: self.plugin.to_string(),
            event_id: self.event_id.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_output(&self, reason: impl Into<String>) -> PluginError {
        PluginError::BadOutput {
            plugin: self.plugin.to_string(),
            event_id: self.event_id.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn output_limit(&self) -> PluginError {
        PluginError::OutputLimit {
            plugin: self.plugin.to_string(),
            event_id: self.event_id.to_string(),
            limit_bytes: self.limits.max_output_bytes,
        }
    }

    pub(crate) fn internal(&self, message: impl Into<String>) -> PluginError {
        PluginError::Internal {
            plugin: self.plugin.to_string(),
            event_id: self.event_id.to_string(),
            message: message.into(),
        }
    }

    /// Classifies a failed instantiation or call. The order matters: a timeout or
    /// a refused allocation usually surfaces as some trap, so they are checked first.
    pub(crate) fn failure(
        &self,
        error: &wasmtime::Error,
        memory_hit: bool,
        output_over: bool,
    ) -> PluginError {
        let trap = error.downcast_ref::<Trap>().copied();
        if trap == Some(Trap::Interrupt) {
            return PluginError::Timeout {
                plugin: self.plugin.to_string(),
                event_id: self.event_id.to_string(),
                timeout: self.limits.timeout,
            };
        }
        if output_over
            || error
                .chain()
                .any(|c| c.to_string().contains("beyond capacity"))
        {
            return self.output_limit();
        }
        if error.is::<wasmtime::PoolConcurrencyLimitError>() {
            return self.internal(super::engine::error_line(error));
        }
        if memory_hit {
            return PluginError::MemoryLimit {
                plugin: self.plugin.to_string(),
                event_id: self.event_id.to_string(),
                limit_bytes: self.limits.memory_bytes,
            };
        }
        PluginError::Trap {
            plugin: self.plugin.to_string(),
            event_id: self.event_id.to_string(),
            message: super::engine::error_line(error),
        }
    }
}

/// Logs each line a guest wrote to stderr (or a component to stdout), tagged with
/// the plugin and the event.
pub(crate) fn log_lines(ctx: &Context<'_>, stream: &'static str, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(bytes).lines() {
        if !line.trim().is_empty() {
            tracing::info!(
                plugin = ctx.plugin,
                event_id = ctx.event_id,
                stream,
                "{line}"
            );
        }
    }
}
