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

/// Most table elements one instance may have (each table counted alone).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Refuses memory past the cap and remembers that it did, so that the abort that
/// follows is reported as `MemoryLimit` rather than a plain trap.
///
/// The cap bounds the sum of every linear memory of the instance: wasmtime asks
/// `memory_growing(0, initial)` when it creates each memory, then again on each
/// growth, so a running total per `Store` sees them all. A growth that was
/// allowed here but then failed in wasmtime is rolled back in `memory_grow_failed`.
pub(crate) struct Limiter {
    memory_bytes: usize,
    /// Bytes of linear memory the instance holds (or is being given).
    used: usize,
    /// The last growth allowed, until the next one: what a failure takes back.
    last_allowed: usize,
    pub(crate) hit: bool,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory_bytes: limits.memory_bytes,
            used: 0,
            last_allowed: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        match self.used.checked_add(delta) {
            Some(total) if total <= self.memory_bytes => {
                self.used = total;
                self.last_allowed = delta;
                Ok(true)
            }
            _ => {
                self.hit = true;
                Ok(false)
            }
        }
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // wasmtime also reports growth past the memory type's own limits here,
        // before asking `memory_growing`: nothing was allowed, nothing to take back.
        if !error.to_string().contains("exceeds memory type's limits") {
            self.used = self.used.saturating_sub(self.last_allowed);
        }
        self.last_allowed = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
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

/// Sets the wall-clock deadline of the wasm code, in epoch ticks (the ticker
/// thread advances the epoch every `EPOCH_TICK`). One extra tick covers the
/// partial tick now running. Host calls that wait obey `Context::deadline`
/// instead (see `deadline`).
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
    /// When the run ends, whatever the guest is doing.
    pub(crate) deadline: std::time::Instant,
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

    pub(crate) fn emit_budget(&self, reason: impl Into<String>) -> PluginError {
        PluginError::EmitBudget {
            plugin: self.plugin.to_string(),
            event_id: self.event_id.to_string(),
            reason: reason.into(),
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
        if trap == Some(Trap::Interrupt) || super::deadline::passed(error) {
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

/// At most this many bytes of one log line are kept; the rest is cut.
const MAX_LOG_LINE_BYTES: usize = 2048;

/// How many log lines (stderr, a component's stdout, `log()`) one run may write.
pub(crate) struct LogBudget {
    left: usize,
    dropped: usize,
}

impl LogBudget {
    pub(crate) fn new(limits: &Limits) -> Self {
        LogBudget {
            left: limits.max_log_lines,
            dropped: 0,
        }
    }

    /// Whether one more line may be written; counts those that may not.
    pub(crate) fn take(&mut self) -> bool {
        if self.left == 0 {
            self.dropped += 1;
            return false;
        }
        self.left -= 1;
        true
    }

    /// One warning for the lines over the cap, if any.
    pub(crate) fn finish(&self, ctx: &Context<'_>) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin = ctx.plugin,
                event_id = ctx.event_id,
                dropped = self.dropped,
                "plugin wrote more log lines than the cap of {} per run; the rest were dropped",
                ctx.limits.max_log_lines
            );
        }
    }
}

/// A guest's text made safe for one log line: newlines, other control characters
/// (ANSI escapes among them) and bidirectional overrides are written as escapes,
/// so a plugin can neither start a line that looks like the router's own nor
/// restyle the terminal; the line is cut at `MAX_LOG_LINE_BYTES`.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if text.len() <= MAX_LOG_LINE_BYTES && !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_LOG_LINE_BYTES) + 16);
    for c in text.chars() {
        if out.len() >= MAX_LOG_LINE_BYTES {
            out.push_str("…[cut]");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Logs each line a guest wrote to stderr (or a component to stdout), tagged with
/// the plugin and the event, escaped, within the run's log budget.
pub(crate) fn log_lines(
    ctx: &Context<'_>,
    stream: &'static str,
    bytes: &[u8],
    budget: &mut LogBudget,
) {
    if bytes.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(bytes).lines() {
        if !line.trim().is_empty() && budget.take() {
            tracing::info!(
                plugin = ctx.plugin,
                event_id = ctx.event_id,
                stream,
                "{}",
                escape(line)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_escaped_and_cut() {
        assert_eq!(escape("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            escape("a\nINFO forged\r\x1b[31mred\x1b[0m\t\u{202e}x"),
            "a\\nINFO forged\\r\\u{1b}[31mred\\u{1b}[0m\\t\\u{202e}x"
        );
        let long = "é".repeat(MAX_LOG_LINE_BYTES);
        let cut = escape(&long);
        assert!(cut.len() < MAX_LOG_LINE_BYTES + 16 && cut.ends_with("…[cut]"));
    }

    #[test]
    fn log_budget_counts_what_it_drops() {
        let limits = Limits {
            max_log_lines: 2,
            ..Limits::default()
        };
        let mut b = LogBudget::new(&limits);
        assert!(b.take() && b.take());
        assert!(!b.take() && !b.take());
        assert_eq!(b.dropped, 2);
    }

    #[test]
    fn memory_cap_counts_every_memory_and_rolls_back_failed_growth() {
        let limits = Limits {
            memory_bytes: 100,
            ..Limits::default()
        };
        let mut l = Limiter::new(&limits);
        // Two memories created at 40 each: 80 of 100.
        assert!(l.memory_growing(0, 40, None).unwrap());
        assert!(l.memory_growing(0, 40, None).unwrap());
        // A third of 40 would make 120.
        assert!(!l.memory_growing(0, 40, None).unwrap());
        assert!(l.hit);
        // Growth allowed, then failed in wasmtime: taken back.
        assert!(l.memory_growing(40, 60, None).unwrap());
        l.memory_grow_failed(wasmtime::format_err!("mmap failed"))
            .unwrap();
        assert!(l.memory_growing(40, 60, None).unwrap());
        // Growth past the type's limits never reached `memory_growing`.
        l.memory_grow_failed(wasmtime::format_err!(
            "memory growth exceeds memory type's limits"
        ))
        .unwrap();
        assert_eq!(l.used, 100);
    }
}
