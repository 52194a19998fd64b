use std::path::Path;
use std::time::Duration;

use super::*;

fn env(k: &str) -> Option<String> {
    match k {
        "OPTUM_WEBHOOK_SECRET" | "OLD" | "NEW" | "ACME_WEBHOOK_SECRET" => {
            Some(format!("{k}-value"))
        }
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/hookrouter/router.toml"), text, &env)
}

#[test]
fn empty_file_gets_documented_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(
        c.store.path,
        Path::new("/etc/hookrouter/data/hookrouter.db")
    );
    assert_eq!(c.plugins.dir, Path::new("/etc/hookrouter/plugins"));
    assert_eq!(c.plugins.timeout, Duration::from_millis(1000));
    assert_eq!(c.plugins.memory_bytes, 64 << 20);
    assert_eq!(c.plugins.retry.max_attempts, 8);
    assert_eq!(c.plugins.retry.base, Duration::from_millis(1000));
    // The outbox inherits the plugin retry keys unless [outbox] sets its own.
    assert_eq!(c.outbox.retry.max_attempts, 8);
    assert_eq!(c.outbox.retry.base, Duration::from_millis(1000));
    // Forwards are network waits: their workers do not follow plugins.workers.
    assert_eq!(c.outbox.workers, 16);
}

#[test]
fn optum_preset_fills_type_id_and_verification() {
    let c = parse("[[sources]]\nname = \"optum\"\npreset = \"optum\"\n").unwrap();
    let s = c.source("optum").unwrap();
    assert_eq!(s.type_from.to_string(), "/type");
    assert_eq!(s.id_from.as_ref().unwrap().to_string(), "/causationId");
    assert_eq!(s.scheme_name, "hmac-sha256");
    assert_eq!(s.secret_envs, ["OPTUM_WEBHOOK_SECRET"]);
}

#[test]
fn explicit_keys_override_the_preset() {
    let c = parse(
        "[[sources]]\nname = \"optum\"\npreset = \"optum\"\nid_from = \"/id\"\n\
         verify = { header = \"X-Other\", secret_env = [\"OLD\", \"NEW\"] }\n",
    )
    .unwrap();
    let s = c.source("optum").unwrap();
    assert_eq!(s.id_from.as_ref().unwrap().to_string(), "/id");
    assert_eq!(s.secret_envs, ["OLD", "NEW"]);
    assert_eq!(s.scheme_name, "hmac-sha256");
}

#[test]
fn source_name_with_dash_maps_to_env_name() {
    let e = parse(
        "[[sources]]\nname = \"acme-pay\"\ntype_from = \"/t\"\nverify = { scheme = \"stripe\" }\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("ACME_PAY_WEBHOOK_SECRET is not set"),
        "{e}"
    );
}

#[test]
fn errors_carry_line_column_and_key() {
    let e = parse("[[sources]]\nname = \"optum\"\npreset = \"optum\"\n\n[[routes]]\nevents = [\"*\"]\nsource = \"optm\"\nplugins = [\"a\"]\n")
        .unwrap_err();
    assert_eq!(e.position, Some((7, 10)));
    assert_eq!(e.key, "routes[0].source");
    assert_eq!(
        e.to_string(),
        "/etc/hookrouter/router.toml:7:10: routes[0].source: unknown source \"optm\""
    );
}

#[test]
fn plugin_config_scalars_become_strings() {
    let c = parse(
        "[[routes]]\nevents = [\"*\"]\nplugins = [\"p\"]\n[plugin.p]\nconfig = { threshold = 1000, on = true, name = \"x\" }\n",
    )
    .unwrap();
    let s = c.settings("p").unwrap();
    assert_eq!(s.config["threshold"], "1000");
    assert_eq!(s.config["on"], "true");
    assert_eq!(s.config["name"], "x");
}

#[test]
fn unused_plugin_settings_and_unsigned_sources_warn() {
    let c = parse("[[sources]]\nname = \"open\"\ntype_from = \"/t\"\n[plugin.lonely]\n").unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn backoff_doubles_caps_and_jitters() {
    let r = Retry {
        max_attempts: 8,
        base: Duration::from_secs(1),
    };
    for _ in 0..100 {
        let d1 = r.backoff(1).as_secs_f64();
        assert!((0.8..=1.2).contains(&d1), "{d1}");
        let d3 = r.backoff(3).as_secs_f64();
        assert!((3.2..=4.8).contains(&d3), "{d3}");
        let d20 = r.backoff(20).as_secs_f64();
        assert!(
            (240.0..=360.0).contains(&d20),
            "capped at 5 min ± 20%: {d20}"
        );
    }
    // Retry after each of the first seven failures; the eighth is the last.
    let at = r.retry_at(1, 10_000).expect("first failure retries");
    assert!((10_800..=11_200).contains(&at), "{at}");
    assert!(r.retry_at(7, 0).is_some());
    assert_eq!(r.retry_at(8, 0), None);
}

#[test]
fn containment_keys_have_documented_defaults_and_per_plugin_overrides() {
    let c = parse("").unwrap();
    assert_eq!(c.plugins.max_emits_per_run, 20);
    assert_eq!(c.plugins.max_emits_per_event, 100);
    assert_eq!(c.plugins.max_plugin_bytes, 64 << 20);
    assert_eq!(
        c.plugins.cache_dir,
        Path::new("/etc/hookrouter/data/plugin-cache"),
        "beside the store"
    );
    assert_eq!(c.plugin_concurrency("any"), 2, "half of 4 workers");
    assert_eq!(c.plugin_timeout("any"), Duration::from_millis(1000));

    let c = parse(
        "[plugins]\nworkers = 3\ntimeout_ms = 500\nmemory_mb = 32\ncache_dir = \"/var/cache/hr\"\n\
         [plugin.slow]\ntimeout_ms = 2500\nmemory_mb = 128\nconcurrency = 3\n\
         [plugin.lean]\n",
    )
    .unwrap();
    assert_eq!(c.plugins.cache_dir, Path::new("/var/cache/hr"));
    assert_eq!(c.plugin_timeout("slow"), Duration::from_millis(2500));
    assert_eq!(c.plugin_timeout("lean"), Duration::from_millis(500));
    assert_eq!(c.plugin_memory_bytes("slow"), 128 << 20);
    assert_eq!(c.plugin_memory_bytes("lean"), 32 << 20);
    assert_eq!(c.plugin_concurrency("slow"), 3);
    assert_eq!(c.plugin_concurrency("lean"), 1, "half of 3, rounded down");
    assert_eq!(
        c.plugin_maxima(),
        (Duration::from_millis(2500), 128 << 20),
        "what the engine and the leases are sized for"
    );
    let c = parse("[plugins]\nworkers = 1\n").unwrap();
    assert_eq!(c.plugin_concurrency("any"), 1, "at least one");
    let c = parse("[plugins]\ncache_dir = \"cache\"\n").unwrap();
    assert_eq!(c.plugins.cache_dir, Path::new("/etc/hookrouter/cache"));
    assert!(parse("[plugins]\ncache_dir = \"\"\n").is_err());
}

#[test]
fn edge_limits_have_documented_defaults_and_are_checked() {
    let c = parse("").unwrap();
    assert_eq!(c.server.idle_timeout, Duration::from_millis(60_000));
    assert_eq!(c.server.http2_max_streams, 32);
    assert_eq!(c.server.max_connections, 4096);
    assert_eq!(c.server.max_inflight_bytes, 256 << 20);
    assert_eq!(c.admin_allowed_hosts, None);
    let err = parse("[server]\nmax_body_bytes = 2048\nmax_inflight_bytes = 1024\n").unwrap_err();
    assert_eq!(err.key, "server.max_inflight_bytes");
    let err = parse("[server]\nhttp2_max_streams = 0\n").unwrap_err();
    assert_eq!(err.key, "server.http2_max_streams");
}

#[test]
fn outbox_workers_are_set_apart_from_plugin_workers_and_checked() {
    let c = parse("[plugins]\nworkers = 2\n[outbox]\nworkers = 64\n").unwrap();
    assert_eq!((c.plugins.workers, c.outbox.workers), (2, 64));
    let c = parse("[plugins]\nworkers = 2\n").unwrap();
    assert_eq!(
        c.outbox.workers, 16,
        "the default, whatever plugins.workers is"
    );
    for bad in ["0", "257"] {
        let err = parse(&format!("[outbox]\nworkers = {bad}\n")).unwrap_err();
        assert_eq!(err.key, "outbox.workers", "{bad}: {err}");
        assert!(err.message.contains("out of range"), "{bad}: {err}");
    }
    assert!(parse("[outbox]\nworkers = -1\n").is_err());
}

#[test]
fn an_exposed_admin_listener_needs_a_token() {
    let err = parse("[server]\nadmin_listen = \"0.0.0.0:8081\"\n").unwrap_err();
    assert_eq!(err.key, "server.admin_listen");
    assert!(err.message.contains("token_env"), "{err}");
    assert_eq!(err.position, Some((2, 16)));
    let text = "[server]\nadmin_listen = \"0.0.0.0:8081\"\n[admin]\ntoken_env = \"OLD\"\nallowed_hosts = [\"router.internal:8081\", \"10.0.0.5\"]\n";
    let c = parse(text).unwrap();
    let hosts = c.admin_allowed_hosts.unwrap();
    assert_eq!(hosts[0].to_string(), "router.internal:8081");
    assert_eq!(hosts[1].port, None);
    let err = parse("[admin]\nallowed_hosts = [\"bad host\"]\n").unwrap_err();
    assert_eq!(err.key, "admin.allowed_hosts[0]");
    assert!(parse("[server]\nadmin_listen = \"[::1]:8081\"\n").is_ok());
}

#[test]
fn private_network_is_a_per_plugin_opt_in() {
    let c = parse(
        "[[routes]]\nevents = [\"*\"]\nplugins = [\"a\", \"b\"]\n\
         [plugin.a]\nallow_forward = [\"hooks.internal\"]\nallow_private_network = true\n\
         [plugin.b]\nallow_forward = [\"hooks.internal\"]\n",
    )
    .unwrap();
    assert!(c.forward_policy("a").allow_private_network);
    assert!(!c.forward_policy("b").allow_private_network);
    assert!(c.forward_policy("nobody").allow.is_empty());
}

#[test]
fn every_source_that_verifies_nothing_is_named() {
    let c = parse(
        "[[sources]]\nname = \"ce\"\npreset = \"cloudevents\"\n\
         [[sources]]\nname = \"open\"\ntype_from = \"/t\"\nverify = { scheme = \"none\" }\n",
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("\"ce\"") && c.warnings[0].contains("cloudevents preset"));
    assert!(c.warnings[1].contains("\"open\""));
}
