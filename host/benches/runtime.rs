//! Plugin runtime benchmark: prints figures, decides nothing.
//!
//! ```sh
//! scripts/build-plugins.sh && cargo test -p hookrouter-tests --no-run  # builds fixtures
//! cargo bench -p hookrouter --bench runtime
//! ```
//!
//! Per-event cost (fresh store + instantiate + call + drop) of a trivial component
//! and a trivial command module, pooling vs on-demand, beside a native call of the
//! same handler, and of a component that makes one zero-length `wasi:io/poll` wait
//! (the host call that deadlines shadow); then compile and cached-load time of each
//! example plugin. Uses only the API that predates the containment work, so the
//! same program measures an older build for a before/after in one sitting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hookrouter::event::Event;
use hookrouter::plugins::{EngineOptions, Plugin, PluginEngine};
use hookrouter_plugin_sdk as sdk;

const WARMUP: usize = 300;
const RUNS: usize = 3000;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let fixtures = std::env::var_os("HOOKROUTER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/fixtures"));
    let plugins = root.join("plugins");
    let event = Event {
        id: hookrouter::event::EventId::new(),
        source: "bench".into(),
        event_type: "ping".into(),
        external_id: None,
        received_at: SystemTime::now(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"type":"ping","data":{"amount":12}}"#.into(),
        hops: 0,
    };
    let config = BTreeMap::new();

    println!("per event ({RUNS} runs after {WARMUP} warm-up), µs:");
    println!("{:<44} {:>8} {:>8}", "case", "median", "p99");
    let native = measure(|| {
        let e = sdk::Event {
            id: event.id.to_string(),
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            received_at: event.received_at_rfc3339(),
            attempt: 1,
            headers: event.headers.clone(),
            data: event.body.clone(),
        };
        std::hint::black_box(trivial_handler(std::hint::black_box(e)).unwrap());
    });
    report("native Rust call of the trivial handler", native);
    for pooling in [true, false] {
        let engine = PluginEngine::new(EngineOptions {
            pooling,
            ..EngineOptions::default()
        })
        .expect("engine");
        let mode = if pooling { "pooling" } else { "on-demand" };
        for name in ["trivial", "cmd_emit"] {
            let plugin = load(&engine, &fixtures.join(format!("{name}.wasm")));
            let times = measure(|| {
                std::hint::black_box(plugin.run(&event, 1, &config).expect("runs"));
            });
            report(&format!("{} ({}), {mode}", name, plugin.kind()), times);
        }
        let sleeper = load(&engine, &fixtures.join("sleeper.wasm"));
        let nap = Event {
            body: r#"{"do":"nap","ms":0}"#.into(),
            ..event.clone()
        };
        let times = measure(|| {
            std::hint::black_box(sleeper.run(&nap, 1, &config).expect("runs"));
        });
        report(&format!("sleeper, one 0 ms wasi:io/poll, {mode}"), times);
    }

    println!("\nexample plugins, ms:");
    println!(
        "{:<20} {:>10} {:>12} {:>10}",
        "plugin", "size KiB", "compile", "cached"
    );
    let cache = std::env::temp_dir().join(format!("hookrouter-bench-{}", std::process::id()));
    for name in ["payment_audit", "batch_notify", "refund_alert"] {
        let path = plugins.join(format!("{name}.wasm"));
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{name:<20} (missing: run scripts/build-plugins.sh)");
            continue;
        };
        let options = EngineOptions {
            cache_dir: Some(cache.clone()),
            ..EngineOptions::default()
        };
        let cold = PluginEngine::new(options.clone()).expect("engine");
        let t = Instant::now();
        cold.load(name, &bytes).expect("loads");
        let compile = t.elapsed();
        let warm = PluginEngine::new(options).expect("engine");
        let t = Instant::now();
        warm.load(name, &bytes).expect("loads");
        let cached = t.elapsed();
        assert_eq!(warm.compile_count(), 0);
        println!(
            "{name:<20} {:>10} {:>12.1} {:>10.2}",
            bytes.len() / 1024,
            ms(compile),
            ms(cached)
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}

fn trivial_handler(_event: sdk::Event) -> sdk::Result<Vec<sdk::Action>> {
    Ok(vec![])
}

fn load(engine: &PluginEngine, path: &Path) -> Plugin {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-plugins.sh and the tests' build)",
            path.display()
        )
    });
    let name = path.file_stem().unwrap().to_str().unwrap();
    engine.load(name, &bytes).expect("loads")
}

fn measure(mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..WARMUP {
        f();
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(case: &str, times: Vec<Duration>) {
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!("{case:<44} {:>8.1} {:>8.1}", us(at(0.5)), us(at(0.99)));
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
