//! The command-module ABI (WASI preview 1, `_start`): the event as one JSON object
//! on stdin, config in the environment, actions as JSON lines on stdout, success
//! as exit status 0.
//!
//! Owns: the stdin document, the stdout line format, the exit-status rules.
//! Never: grants files, sockets or any environment beyond `HOOKROUTER_PLUGIN` and
//! the plugin's config entries, or touches the network.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Map, Value};
use wasmtime::{Engine, Linker, Module, ModuleExport, Store};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::deadline::HasDeadline;
use super::engine::PluginEngine;
use super::error::PluginError;
use super::poll_oneoff;
use super::sandbox::{self, Capture, Context, Limiter, LogBudget};
use crate::event::{Action, Event};

/// Store state of one command invocation.
pub(crate) struct State {
    pub(super) wasi: WasiP1Ctx,
    limiter: Limiter,
    deadline: Instant,
}

impl HasDeadline for State {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// The linker every command module is instantiated with: WASI preview 1 only,
/// with a `poll_oneoff` that never waits past the run's deadline.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)?;
    poll_oneoff::shadow(&mut linker)?;
    Ok(linker)
}

/// A validated, pre-instantiated command module.
pub(crate) struct Runner {
    pre: wasmtime::InstancePre<State>,
    start: ModuleExport,
}

impl Runner {
    /// Checks imports (only WASI preview 1) and the `_start` and `memory` exports.
    pub(crate) fn new(engine: &PluginEngine, module: Module) -> wasmtime::Result<Self> {
        let start = match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(f))
                if f.params().len() == 0 && f.results().len() == 0 =>
            {
                module.get_export_index("_start")
            }
            Some(_) => wasmtime::bail!("export `_start` is not a function of no arguments"),
            None => wasmtime::bail!(
                "a core module must be a WASI command exporting `_start` (is it a library or a reactor?)"
            ),
        };
        if !matches!(
            module.get_export("memory"),
            Some(wasmtime::ExternType::Memory(_))
        ) {
            wasmtime::bail!("a command module must export its `memory`");
        }
        let start = start.ok_or_else(|| wasmtime::format_err!("export `_start` not indexable"))?;
        let pre = engine.inner.command_linker.instantiate_pre(&module)?;
        Ok(Runner { pre, start })
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
        let mut builder = sandbox::wasi_builder(&stdout, &stderr);
        builder
            .stdin(MemoryInputPipe::new(stdin_document(event, attempt)))
            .arg(ctx.plugin)
            .env("HOOKROUTER_PLUGIN", ctx.plugin);
        for (key, value) in config {
            builder.env(key, value);
        }
        let state = State {
            wasi: builder.build_p1(),
            limiter: Limiter::new(limits),
            deadline: ctx.deadline,
        };
        let mut store = Store::new(&engine.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        sandbox::set_deadline(&mut store, limits);

        let result = self.pre.instantiate(&mut store).and_then(|instance| {
            let start = instance
                .get_module_export(&mut store, &self.start)
                .and_then(|e| e.into_func())
                .ok_or_else(|| wasmtime::format_err!("export `_start` disappeared"))?;
            start.typed::<(), ()>(&store)?.call(&mut store, ())
        });
        let (out, out_over) = stdout.finish();
        let (err, err_over) = stderr.finish();
        let mut budget = LogBudget::new(limits);
        sandbox::log_lines(ctx, "stderr", &err, &mut budget);
        budget.finish(ctx);
        let over = out_over || err_over;
        match result {
            Ok(()) => {}
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => {}
                Some(I32Exit(code)) => {
                    return Err(ctx.guest(format!("exited with status {code}")));
                }
                None => return Err(ctx.failure(&e, store.data().limiter.hit, over)),
            },
        }
        if over {
            return Err(ctx.output_limit());
        }
        parse_actions(ctx, &out, limits.max_actions)
    }
}

/// `{"id","type","source","received_at","attempt","headers":{...},"data":<body>}`.
/// Repeated headers are joined with ", " as HTTP allows; a body that is not JSON
/// (it always is, after ingress) is passed as a JSON string.
pub(crate) fn stdin_document(event: &Event, attempt: u32) -> Vec<u8> {
    let mut headers = Map::new();
    for (name, value) in &event.headers {
        match headers.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    // Written in the documented key order, on one line, with the body copied
    // in as it is when it is JSON on one line already (checked, not parsed
    // into a tree and printed again).
    let mut bytes = Vec::with_capacity(event.body.len() + 256);
    put(&mut bytes, "id", &event.id);
    put(&mut bytes, "type", &event.event_type);
    put(&mut bytes, "source", &event.source);
    put(&mut bytes, "received_at", &event.received_at_rfc3339());
    put(&mut bytes, "attempt", &attempt);
    put(&mut bytes, "headers", &headers);
    let body = event.body.as_str();
    let one_line = !body.contains(['\n', '\r']);
    match serde_json::from_str::<&serde_json::value::RawValue>(body) {
        Ok(raw) if one_line => {
            bytes.extend_from_slice(b",\"data\":");
            bytes.extend_from_slice(raw.get().as_bytes());
        }
        Ok(_) => {
            let data: Value = serde_json::from_str(body).unwrap_or_default();
            put(&mut bytes, "data", &data);
        }
        Err(_) => put(&mut bytes, "data", &body),
    }
    bytes.extend_from_slice(b"}\n");
    bytes
}

/// Appends `"key":value` to an object being written.
fn put(out: &mut Vec<u8>, key: &str, value: &impl serde::Serialize) {
    out.push(if out.is_empty() { b'{' } else { b',' });
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Parses stdout (the line format lives in `hookrouter_core::command_abi`).
pub(crate) fn parse_actions(
    ctx: &Context<'_>,
    stdout: &[u8],
    max_actions: usize,
) -> Result<Vec<Action>, PluginError> {
    crate::command_abi::parse_actions(stdout, max_actions).map_err(|e| ctx.bad_output(e))
}

/// An action as one JSON line of the command ABI (also what `run-plugin` prints).
pub(crate) fn action_json(action: &Action) -> Value {
    match action {
        Action::Forward { url, headers, body } => {
            let headers: Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let body =
                serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.clone()));
            serde_json::json!({ "action": "forward", "url": url, "headers": headers, "body": body })
        }
        Action::Emit { event_type, data } => {
            let data =
                serde_json::from_str::<Value>(data).unwrap_or_else(|_| Value::String(data.clone()));
            serde_json::json!({ "action": "emit", "type": event_type, "data": data })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::engine::Limits;

    fn parse(stdout: &[u8], max: usize) -> Result<Vec<Action>, String> {
        let limits = Limits::default();
        let ctx = Context {
            plugin: "p",
            event_id: "e-1",
            limits: &limits,
            deadline: std::time::Instant::now(),
        };
        parse_actions(&ctx, stdout, max).map_err(|e| e.to_string())
    }

    #[test]
    fn good_lines_become_actions() {
        let out = b"\n{\"action\":\"forward\",\"url\":\"http://a/\",\"headers\":{\"x-k\":\"v\"},\"body\":{\"n\":1}}\n  \n{\"action\":\"emit\",\"type\":\"t\",\"data\":[1]}\n";
        let actions = parse(out, 10).unwrap();
        assert_eq!(
            actions,
            vec![
                Action::Forward {
                    url: "http://a/".into(),
                    headers: vec![("x-k".into(), "v".into())],
                    body: "{\"n\":1}".into(),
                },
                Action::Emit {
                    event_type: "t".into(),
                    data: "[1]".into(),
                },
            ]
        );
    }

    #[test]
    fn garbage_output_is_refused_with_the_line_and_the_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff\xfe not utf-8", "stdout is not UTF-8"),
            (b"{oops", "stdout line 1: not JSON"),
            (b"[1,2]", "stdout line 1: not a JSON object"),
            (
                b"\n\n{\"url\":\"http://a/\"}",
                "stdout line 3: no \"action\"",
            ),
            (b"{\"action\":7}", "\"action\" is not a string"),
            (b"{\"action\":\"launch\"}", "unknown action \"launch\""),
            (b"{\"action\":\"forward\"}", "no \"url\""),
            (
                b"{\"action\":\"forward\",\"url\":\"http://a/\",\"headers\":[1]}",
                "\"headers\" is not an object",
            ),
            (
                b"{\"action\":\"forward\",\"url\":\"http://a/\",\"headers\":{\"k\":1}}",
                "header \"k\" is not a string",
            ),
            (b"{\"action\":\"emit\",\"type\":\"t\"}", "no \"data\""),
        ];
        for (out, want) in cases {
            let err = parse(out, 10).unwrap_err();
            assert!(err.contains(want), "{out:?}: {err}");
        }
    }

    #[test]
    fn the_stdin_document_keeps_its_key_order_on_one_line_whatever_the_body() {
        let event = |body: &str| Event {
            id: crate::event::EventId::new(),
            source: "optum".into(),
            event_type: "t\"q".into(),
            external_id: None,
            received_at: std::time::SystemTime::UNIX_EPOCH,
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            body: body.into(),
            hops: 0,
        };
        let cases = [
            (
                r#"{"id":"inner","n":[1,2]}"#,
                serde_json::json!({"id":"inner","n":[1,2]}),
            ),
            (" {\"a\": 1} ", serde_json::json!({"a": 1})),
            ("{\n  \"a\": \"x\"\r\n}", serde_json::json!({"a": "x"})),
            ("not json", serde_json::json!("not json")),
        ];
        for (body, data) in cases {
            let e = event(body);
            let doc = stdin_document(&e, 3);
            let text = std::str::from_utf8(&doc).unwrap();
            assert!(
                text.ends_with('\n') && text.matches('\n').count() == 1,
                "{text:?}"
            );
            let id = format!("{{\"id\":\"{}\",", e.id);
            assert!(text.starts_with(&id), "id first: {text}");
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["data"], data, "{body:?}");
            assert_eq!(v["type"], "t\"q");
            assert_eq!(v["attempt"], 3);
            assert_eq!(v["headers"]["x-a"], "1, 2");
            assert_eq!(v["received_at"], "1970-01-01T00:00:00.000Z");
            let at = |key: &str| text.find(&format!(",\"{key}\":")).unwrap();
            let order = [
                "type",
                "source",
                "received_at",
                "attempt",
                "headers",
                "data",
            ]
            .map(at);
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        }
    }

    #[test]
    fn more_actions_than_the_limit_are_refused() {
        let line = "{\"action\":\"emit\",\"type\":\"t\",\"data\":{}}\n";
        assert_eq!(parse(line.repeat(3).as_bytes(), 3).unwrap().len(), 3);
        let err = parse(line.repeat(4).as_bytes(), 3).unwrap_err();
        assert!(err.contains("more than 3 actions"), "{err}");
    }
}
