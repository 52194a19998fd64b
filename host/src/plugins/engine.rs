//! The shared wasmtime engine: pooling allocator, epoch ticker, concurrency limit,
//! and loading a plugin from its bytes.
//!
//! Owns: the `wasmtime::Engine` and its configuration, the linkers of both ABIs, the
//! thread that ticks epochs, the permits in front of the instance pool.
//! Never: reads plugin folders (the registry does), touches the network, or knows
//! about routes and deliveries.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::compile::Compiler;
use super::error::PluginError;
use super::plugin::{Plugin, PluginKind, Runner};
use super::{cache, command, component};

/// How often the epoch ticks; deadlines are counted in ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// `emit` chains are cut after this many hops: a run whose emit would be hop 9
/// fails as `emit_budget`.
pub const MAX_HOPS: u32 = 8;

/// Limits of one invocation: the engine's defaults, or a plugin's own (see
/// [`crate::plugin_limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one invocation, host calls included (`timeout_ms`).
    pub timeout: Duration,
    /// Cap on all linear memories of one instance together (`memory_mb`).
    pub memory_bytes: usize,
    /// Cap on what one invocation may write to stdout (and, separately, stderr
    /// and host logs).
    pub max_output_bytes: usize,
    /// Cap on the number of actions one invocation may return.
    pub max_actions: usize,
    /// Cap on the emits among them (`plugins.max_emits_per_run`).
    pub max_emits_per_run: usize,
    /// Cap on one emitted event's data (`server.max_body_bytes`).
    pub max_emit_bytes: usize,
    /// Log lines one invocation may write (stderr, `log()`); the rest are dropped.
    pub max_log_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(1000),
            memory_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
            max_actions: 100,
            max_emits_per_run: 20,
            max_emit_bytes: 1 << 20,
            max_log_lines: 100,
        }
    }
}

impl Limits {
    /// Limits from the `[plugins]` keys of `router.toml`; the caps keep their defaults.
    pub fn from_config(timeout_ms: u64, memory_mb: u64) -> Self {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: usize::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            ..Limits::default()
        }
    }
}

/// How an engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Limits of every invocation.
    pub limits: Limits,
    /// How many invocations may run at once (the pool is sized for this many
    /// instances; callers beyond it wait for a free slot).
    pub max_concurrency: u32,
    /// The largest memory cap any invocation may be given (the pool is sized for
    /// it); `None`: `limits.memory_bytes`. Larger per-run caps are clamped to it.
    pub max_memory_bytes: Option<usize>,
    /// Where compiled plugins are cached; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Plugin files larger than this are refused (`plugins.max_plugin_bytes`).
    pub max_plugin_bytes: u64,
    /// Threads that compile plugins (`None`: the cores, from 2 to 4).
    pub compile_threads: Option<usize>,
    /// Use the pooling allocator (the default); `false` allocates on demand, which
    /// exists for the benchmark's comparison.
    pub pooling: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            limits: Limits::default(),
            max_concurrency: 32,
            max_memory_bytes: None,
            cache_dir: None,
            max_plugin_bytes: 64 << 20,
            compile_threads: None,
            pooling: true,
        }
    }
}

/// The plugin engine. Cheap to clone; every clone shares one wasmtime engine.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    /// The pool's memory size: no invocation's cap goes beyond it.
    pub(crate) max_memory_bytes: usize,
    pub(crate) max_plugin_bytes: u64,
    pub(crate) compiler: Compiler,
    pub(crate) component_linker: wasmtime::component::Linker<component::State>,
    pub(crate) command_linker: wasmtime::Linker<command::State>,
    pub(crate) permits: Permits,
    pub(crate) cache_dir: Option<PathBuf>,
    /// The cache folder was refused (warned once).
    pub(crate) cache_refused: AtomicBool,
    pub(crate) compiles: AtomicU64,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEngine")
            .field("limits", &self.inner.limits)
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new(options: EngineOptions) -> anyhow::Result<Self> {
        let limits = options.limits.clone();
        let max_memory_bytes = options
            .max_memory_bytes
            .unwrap_or(limits.memory_bytes)
            .max(limits.memory_bytes);
        let slots = options.max_concurrency.max(1);
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.wasm_component_model(true);
        // Compiles run on our own bounded threads (see `compile`), one function
        // after another, not on rayon's global pool.
        config.parallel_compilation(false);
        // Memories never move: reserve the cap up front (rounded to 64 KiB pages).
        let reservation = (max_memory_bytes as u64)
            .next_multiple_of(1 << 16)
            .max(1 << 16);
        config.memory_reservation(reservation);
        config.memory_reservation_for_growth(0);
        if options.pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                // Large guests (componentize-py) hold a dozen core instances.
                .total_core_instances(slots * 16)
                .max_core_instances_per_component(32)
                .total_memories(slots * 4)
                .max_memories_per_component(8)
                .max_memories_per_module(1)
                .total_tables(slots * 8)
                .max_tables_per_component(16)
                .table_elements(100_000)
                .total_stacks(slots)
                .max_memory_size(reservation as usize)
                .max_core_instance_size(4 << 20)
                .max_component_instance_size(4 << 20)
                // Resetting pages with memset instead of madvise: without this every
                // instance page-faults its memory again (see WASMTIME-NOTES.md).
                .linear_memory_keep_resident(2 << 20)
                .table_keep_resident(64 << 10)
                .pagemap_scan(Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(anyhow_from)?;
        let component_linker = component::linker(&engine).map_err(anyhow_from)?;
        let command_linker = command::linker(&engine).map_err(anyhow_from)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("hookrouter-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(PluginEngine {
            inner: Arc::new(EngineInner {
                engine,
                limits,
                max_memory_bytes,
                max_plugin_bytes: options.max_plugin_bytes,
                compiler: Compiler::new(
                    options
                        .compile_threads
                        .unwrap_or_else(super::compile::default_threads),
                ),
                component_linker,
                command_linker,
                permits: Permits::new(slots as usize),
                cache_dir: options.cache_dir,
                cache_refused: AtomicBool::new(false),
                compiles: AtomicU64::new(0),
                stop,
                ticker: Mutex::new(Some(ticker)),
            }),
        })
    }

    /// The limits every invocation runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// How many times this engine has compiled wasm (cache hits do not count).
    pub fn compile_count(&self) -> u64 {
        self.inner.compiles.load(Ordering::Relaxed)
    }

    /// Compiles (or loads from the cache), validates and pre-instantiates a plugin.
    ///
    /// The ABI is read from the binary: a component must export the `plugin`
    /// world's `handle`; a core module must be a WASI preview 1 command (`_start`
    /// and `memory`).
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            plugin: name.to_string(),
            reason,
        };
        if bytes.len() as u64 > self.inner.max_plugin_bytes {
            return Err(invalid(too_large(
                bytes.len() as u64,
                self.inner.max_plugin_bytes,
            )));
        }
        let kind = detect_kind(bytes).map_err(|r| invalid(r.to_string()))?;
        let version = hex::encode(Sha256::digest(bytes));
        let runner = match kind {
            PluginKind::Component => {
                let compiled =
                    cache::component(self, &version, bytes).map_err(|e| invalid(error_line(&e)))?;
                Runner::Component(
                    component::Runner::new(self, compiled).map_err(|e| invalid(error_line(&e)))?,
                )
            }
            PluginKind::Command => {
                let compiled =
                    cache::module(self, &version, bytes).map_err(|e| invalid(error_line(&e)))?;
                Runner::Command(
                    command::Runner::new(self, compiled).map_err(|e| invalid(error_line(&e)))?,
                )
            }
        };
        Ok(Plugin::new(name, version, kind, runner, self.clone()))
    }

    /// Like [`PluginEngine::load`], on one of the engine's compile threads (never
    /// the async runtime's); await the result, or `blocking_recv` it.
    pub fn load_in_background(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> tokio::sync::oneshot::Receiver<Result<Plugin, PluginError>> {
        let (engine, name) = (self.clone(), name.to_string());
        self.inner
            .compiler
            .submit(move || engine.load(&name, &bytes))
    }

    /// The largest memory cap a run may have (what the pool was sized for).
    pub fn max_memory_bytes(&self) -> usize {
        self.inner.max_memory_bytes
    }

    /// Plugin files larger than this are refused unread.
    pub fn max_plugin_bytes(&self) -> u64 {
        self.inner.max_plugin_bytes
    }

    /// How many plugins may compile at once.
    pub fn compile_threads(&self) -> usize {
        self.inner.compiler.threads()
    }
}

/// Why a plugin file of `size` bytes is refused.
pub(crate) fn too_large(size: u64, max: u64) -> String {
    format!("the file is {size} bytes, more than plugins.max_plugin_bytes ({max})")
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            let _ = ticker.join();
        }
    }
}

/// Tells a component from a core module by the header, before compiling anything.
fn detect_kind(bytes: &[u8]) -> Result<PluginKind, &'static str> {
    match bytes {
        [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => Ok(PluginKind::Command),
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => Ok(PluginKind::Component),
        [0, b'a', b's', b'm', ..] => Err("unsupported WebAssembly version"),
        [] => Err("empty file, not a WebAssembly binary"),
        _ => Err("not a WebAssembly binary (no \\0asm header)"),
    }
}

/// A counting semaphore in front of the instance pool: a full pool fails
/// instantiation, so callers wait for a slot instead.
pub(crate) struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

pub(crate) struct Permit<'a>(&'a Permits);

impl Permits {
    fn new(n: usize) -> Self {
        Permits {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// One line describing a wasmtime error: its own message and its root cause.
pub(crate) fn error_line(e: &wasmtime::Error) -> String {
    let top = e.to_string();
    let top = top.lines().next().unwrap_or_default().to_string();
    let root = e.root_cause().to_string();
    let root = root.lines().next().unwrap_or_default();
    if top.contains(root) {
        top
    } else {
        format!("{top}: {root}")
    }
}

fn anyhow_from(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", error_line(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds_by_header() {
        let module = wat::parse_str("(module)").unwrap();
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(detect_kind(&module), Ok(PluginKind::Command));
        assert_eq!(detect_kind(&component), Ok(PluginKind::Component));
        assert!(detect_kind(b"hello").is_err());
        assert!(detect_kind(b"").is_err());
    }
}
