//! The component ABI (WASI 0.2): the one `bindgen!` of `plugin-sdk/wit/plugin.wit`,
//! the host side of its `host` interface, and one call of `handle`.
//!
//! Owns: the conversion between `Event`/`Action` and the WIT types, and the
//! per-call store of a component.
//! Never: grants files, sockets or environment to a guest, or touches the network.

use std::collections::BTreeMap;
use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::deadline::{self, HasDeadline};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::sandbox::{self, Capture, Context, Limiter, LogBudget};
use crate::event::{Action, Event};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "plugin",
    });
}

use bindings::hookrouter::plugin::{host, types};

/// Store state of one component invocation.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    plugin: String,
    event_id: String,
    config: BTreeMap<String, String>,
    /// Bytes `log()` may still write in this run.
    log_bytes: usize,
    log_dropped: bool,
    log_lines: LogBudget,
    deadline: Instant,
}

impl HasDeadline for State {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        if message.len() > self.log_bytes {
            if !self.log_dropped {
                self.log_dropped = true;
                tracing::warn!(plugin = %self.plugin, event_id = %self.event_id,
                    "plugin log output over its cap; further lines dropped");
            }
            return;
        }
        if !self.log_lines.take() {
            return;
        }
        self.log_bytes -= message.len();
        let message = sandbox::escape(&message);
        let (plugin, event_id) = (self.plugin.as_str(), self.event_id.as_str());
        match level {
            host::Level::Trace => tracing::trace!(plugin, event_id, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, event_id, "{message}"),
            host::Level::Info => tracing::info!(plugin, event_id, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, event_id, "{message}"),
            host::Level::Error => tracing::error!(plugin, event_id, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

/// The linker every component is instantiated with: WASI 0.2 (its waits bounded
/// by the run's deadline) and our `host`.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    deadline::shadow_p2(&mut linker)?;
    bindings::Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A validated, pre-instantiated component.
pub(crate) struct Runner {
    pre: bindings::PluginPre<State>,
}

impl Runner {
    /// Checks imports (only WASI 0.2 and `host`) and the `handle` export.
    pub(crate) fn new(engine: &PluginEngine, component: Component) -> wasmtime::Result<Self> {
        let pre = engine.inner.component_linker.instantiate_pre(&component)?;
        Ok(Runner {
            pre: bindings::PluginPre::new(pre)?,
        })
    }

    pub(crate) fn run(
        &self,
        engine: &PluginEngine,
        ctx: &Context<'_>,
        event: &Event,
        attempt: u32,
        config: &BTreeMap<String, String>,
    ) -> Result<Vec<Action>, PluginError> {
        let limits = ctx.limits;
        let stdout = Capture::new(limits.max_output_bytes);
        let stderr = Capture::new(limits.max_output_bytes);
        let wasi = sandbox::wasi_builder(&stdout, &stderr).build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            plugin: ctx.plugin.to_string(),
            event_id: event.id.to_string(),
            config: config.clone(),
            log_bytes: limits.max_output_bytes,
            log_dropped: false,
            log_lines: LogBudget::new(limits),
            deadline: ctx.deadline,
        };
        let mut store = Store::new(&engine.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        sandbox::set_deadline(&mut store, limits);

        let wit_event = types::Event {
            id: event.id.to_string(),
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            received_at: event.received_at_rfc3339(),
            attempt,
            headers: event.headers.clone(),
            data: event.body.clone(),
        };
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|plugin| plugin.call_handle(&mut store, &wit_event));
        let (out, out_over) = stdout.finish();
        let (err, err_over) = stderr.finish();
        let budget = &mut store.data_mut().log_lines;
        sandbox::log_lines(ctx, "stdout", &out, budget);
        sandbox::log_lines(ctx, "stderr", &err, budget);
        budget.finish(ctx);
        let over = out_over || err_over;
        let actions = match result {
            Err(e) => return Err(ctx.failure(&e, store.data().limiter.hit, over)),
            Ok(_) if over => return Err(ctx.output_limit()),
            Ok(Err(message)) => return Err(ctx.guest(message)),
            Ok(Ok(actions)) => actions,
        };
        if actions.len() > limits.max_actions {
            return Err(ctx.bad_output(format!(
                "{} actions, more than the limit of {}",
                actions.len(),
                limits.max_actions
            )));
        }
        Ok(actions
            .into_iter()
            .map(|action| match action {
                types::Action::Forward(f) => Action::Forward {
                    url: f.url,
                    headers: f.headers,
                    body: f.body,
                },
                types::Action::Emit(e) => Action::Emit {
                    event_type: e.event_type,
                    data: e.data,
                },
            })
            .collect())
    }
}
