//! `hookrouter check`: validate the config and every plugin, print what runs.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::plugins::PluginRegistry;

/// Prints sources, routes and plugins; one precise line per error; exit 1 on any.
pub(super) fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    println!("config {}: ok", path.display());
    println!(
        "ingress http://{}  admin http://{}",
        config.server.listen, config.server.admin_listen
    );
    match &config.store.backend {
        crate::config::Backend::Sqlite => println!("store {}", config.store.path.display()),
        crate::config::Backend::Postgres { url_env, .. } => {
            println!("store postgres (URL from {url_env}; not contacted by check)")
        }
    }
    println!("sources:");
    for s in &config.sources {
        let preset = s
            .preset
            .as_deref()
            .map(|p| format!(" (preset {p})"))
            .unwrap_or_default();
        let secrets = if s.secret_envs.is_empty() {
            String::new()
        } else {
            format!(", secret from {}", s.secret_envs.join(" + "))
        };
        println!(
            "  POST /webhooks/{}{preset}: verify {}{secrets}; type from {}",
            s.name, s.scheme_name, s.type_from
        );
    }
    println!("routes:");
    for r in &config.routes {
        let events: Vec<&str> = r.events.iter().map(|e| e.as_str()).collect();
        let plugins: Vec<&str> = r.plugins.iter().map(|p| p.as_str()).collect();
        let source = r
            .source
            .as_ref()
            .map(|s| format!(" from {s}"))
            .unwrap_or_default();
        println!("  {}{source} -> {}", events.join(", "), plugins.join(", "));
    }
    println!("plugins ({}):", config.plugins.dir.display());
    let engine = match crate::plugin_engine(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the plugin engine: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let registry = PluginRegistry::new(engine);
    if config.plugins.dir.is_dir() {
        match registry.load_dir(&config.plugins.dir) {
            Ok(set) => {
                for p in set.plugins() {
                    println!(
                        "  {} ({:?}, version {})",
                        p.name(),
                        p.kind(),
                        p.short_version()
                    );
                }
                for (name, e) in set.errors() {
                    eprintln!(
                        "{}: {e}",
                        config.plugins.dir.join(format!("{name}.wasm")).display()
                    );
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!(
                    "{}: cannot read plugin folder: {e}",
                    config.plugins.dir.display()
                );
                failed = true;
            }
        }
    }
    let set = registry.snapshot();
    for name in config.routed_plugins() {
        if set.get(name.as_str()).is_none() {
            println!(
                "warning: plugin \"{name}\" is routed but {} is missing; its deliveries wait until it appears",
                config.plugins.dir.join(format!("{name}.wasm")).display()
            );
        }
    }
    for w in &config.warnings {
        println!("warning: {w}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
