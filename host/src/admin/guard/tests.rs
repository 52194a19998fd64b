use std::path::Path;

use hyper::{HeaderMap, Method, Uri};

use super::*;

fn config(extra: &str) -> Config {
    let text = format!("[server]\nadmin_listen = \"127.0.0.1:8081\"\n{extra}");
    Config::parse(Path::new("/x/router.toml"), &text, &|_| {
        Some("s3cret".into())
    })
    .unwrap()
}

fn status(
    guard: &Guard,
    config: &Config,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let uri: Uri = path.parse().unwrap();
    match guard.check(&method, &uri, &map, config, true) {
        Ok(()) => 200,
        Err(refusal) => refusal.response().status().as_u16(),
    }
}

#[test]
fn host_must_be_the_listener_localhost_or_loopback_with_its_port() {
    let g = Guard::new("127.0.0.1:8081".parse().unwrap());
    let c = config("");
    let get = |host: &str| status(&g, &c, Method::GET, "/admin/dead", &[("host", host)]);
    assert_eq!(get("127.0.0.1:8081"), 200);
    assert_eq!(get("localhost:8081"), 200);
    assert_eq!(get("LOCALHOST:8081"), 200);
    assert_eq!(get("evil.example"), 403);
    assert_eq!(get("evil.example:8081"), 403);
    assert_eq!(get("localhost:9999"), 403);
    assert_eq!(get("localhost"), 403, "no port is port 80");
    assert_eq!(
        status(&g, &c, Method::GET, "/admin/dead", &[]),
        403,
        "no Host at all"
    );
    // HTTP/2 carries the host in :authority.
    assert_eq!(
        status(&g, &c, Method::GET, "http://localhost:8081/admin/dead", &[]),
        200
    );
    // Probes answer whatever the Host.
    assert_eq!(
        status(
            &g,
            &c,
            Method::GET,
            "/healthz",
            &[("host", "10.1.2.3:8081")]
        ),
        200
    );
}

#[test]
fn allowed_hosts_replace_the_default() {
    let g = Guard::new("0.0.0.0:8081".parse().unwrap());
    let c = Config::parse(
        Path::new("/x/router.toml"),
        "[server]\nadmin_listen = \"0.0.0.0:8081\"\n[admin]\ntoken_env = \"T\"\nallowed_hosts = [\"router.internal:8081\", \"10.0.0.5\"]\n",
        &|_| Some("s3cret".into()),
    )
    .unwrap();
    let get = |host: &str| {
        status(
            &g,
            &c,
            Method::GET,
            "/admin/dead",
            &[("host", host), ("authorization", "Bearer s3cret")],
        )
    };
    assert_eq!(get("router.internal:8081"), 200);
    assert_eq!(
        get("10.0.0.5:1234"),
        200,
        "an entry without a port allows any"
    );
    assert_eq!(get("127.0.0.1:8081"), 403);
}

#[test]
fn state_changes_need_json_and_a_same_origin() {
    let g = Guard::new("127.0.0.1:8081".parse().unwrap());
    let c = config("");
    let post = |h: &[(&str, &str)]| {
        let mut all = vec![("host", "127.0.0.1:8081")];
        all.extend_from_slice(h);
        status(&g, &c, Method::POST, "/admin/dead/replay", &all)
    };
    assert_eq!(post(&[("content-type", "application/json")]), 200);
    assert_eq!(
        post(&[("content-type", "application/json; charset=utf-8")]),
        200
    );
    assert_eq!(post(&[]), 415);
    assert_eq!(post(&[("content-type", "text/plain")]), 415);
    assert_eq!(
        post(&[("content-type", "application/x-www-form-urlencoded")]),
        415
    );
    let json = ("content-type", "application/json");
    assert_eq!(post(&[json, ("origin", "http://127.0.0.1:8081")]), 200);
    assert_eq!(post(&[json, ("origin", "https://127.0.0.1:8081")]), 200);
    assert_eq!(post(&[json, ("origin", "http://evil.example")]), 403);
    assert_eq!(post(&[json, ("origin", "null")]), 403);
    assert_eq!(post(&[json, ("origin", "http://127.0.0.1:8082")]), 403);
    // Reads need neither.
    assert_eq!(
        status(
            &g,
            &c,
            Method::GET,
            "/admin/dead",
            &[
                ("host", "127.0.0.1:8081"),
                ("origin", "http://evil.example")
            ]
        ),
        200
    );
}

#[test]
fn the_token_guards_everything_but_probes() {
    let g = Guard::new("127.0.0.1:8081".parse().unwrap());
    let c = config("[admin]\ntoken_env = \"T\"\n");
    let host = ("host", "127.0.0.1:8081");
    assert_eq!(status(&g, &c, Method::GET, "/metrics", &[host]), 401);
    assert_eq!(
        status(
            &g,
            &c,
            Method::GET,
            "/metrics",
            &[host, ("authorization", "Bearer s3cre")]
        ),
        401
    );
    assert_eq!(
        status(
            &g,
            &c,
            Method::GET,
            "/metrics",
            &[host, ("authorization", "Bearer s3cret")]
        ),
        200
    );
    assert_eq!(status(&g, &c, Method::GET, "/readyz", &[]), 200);
}

#[test]
fn an_exposed_listener_without_a_token_does_not_serve() {
    let c = config("");
    let err = check_exposure("0.0.0.0:8081".parse().unwrap(), &c).unwrap_err();
    assert!(err.to_string().contains("token_env"), "{err}");
    assert!(check_exposure("[::1]:8081".parse().unwrap(), &c).is_ok());
    let c = config("[admin]\ntoken_env = \"T\"\n");
    assert!(check_exposure("0.0.0.0:8081".parse().unwrap(), &c).is_ok());
}
