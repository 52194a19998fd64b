use std::net::{IpAddr, SocketAddr};

use super::*;

fn allow(v: &[&str]) -> Vec<ForwardTarget> {
    v.iter().map(|s| ForwardTarget::parse(s).unwrap()).collect()
}

fn policy(a: &[ForwardTarget]) -> Policy<'_> {
    Policy {
        allow: a,
        allow_private_network: false,
    }
}

fn ok(url: &str, a: &[ForwardTarget]) -> bool {
    check(url, &[], policy(a)).is_ok()
}

#[test]
fn host_alone_allows_any_port() {
    let a = allow(&["hooks.slack.com"]);
    assert!(ok("https://hooks.slack.com/services/x", &a));
    assert!(ok("http://hooks.slack.com:8080/x", &a));
    assert!(
        ok("https://HOOKS.slack.com./x", &a),
        "case and the root dot do not matter"
    );
    assert!(!ok("https://evil.example/x", &a));
    assert!(!ok("https://hooks.slack.com.evil.example/x", &a));
}

#[test]
fn host_and_port_must_both_match() {
    let a = allow(&["127.0.0.1:9000"]);
    assert!(ok("http://127.0.0.1:9000/audit", &a));
    assert!(!ok("http://127.0.0.1:9001/audit", &a));
    assert!(!ok("http://127.0.0.1/audit", &a));
    let a = allow(&["example.com:443"]);
    assert!(ok("https://example.com/x", &a));
}

#[test]
fn empty_list_and_bad_urls_refuse() {
    assert!(!ok("http://127.0.0.1:9000/", &[]));
    let a = allow(&["127.0.0.1"]);
    for bad in [
        "ftp://127.0.0.1/",
        "not a url",
        "/relative",
        "http://user:pw@127.0.0.1/",
    ] {
        let err = check(bad, &[], policy(&a)).unwrap_err();
        assert!(!err.contains("pw@"), "{err}");
    }
}

#[test]
fn ipv6_hosts() {
    let a = allow(&["[::1]:9000"]);
    assert!(ok("http://[::1]:9000/x", &a));
    assert!(!ok("http://[::1]:9001/x", &a));
}

#[test]
fn names_reach_public_addresses_only_unless_allowed() {
    let a = allow(&["hooks.example.com", "10.0.0.5"]);
    let p = check("https://hooks.example.com/x", &[], policy(&a)).unwrap();
    assert_eq!(
        (p.reach, p.port, p.https, p.ip),
        (Reach::Public, 443, true, None)
    );
    let p = check("http://10.0.0.5/x", &[], policy(&a)).unwrap();
    assert_eq!(
        p.reach,
        Reach::Any,
        "an IP literal entry names the address itself"
    );
    assert_eq!(p.ip, Some("10.0.0.5".parse().unwrap()));
    let permissive = Policy {
        allow: &a,
        allow_private_network: true,
    };
    let p = check("https://hooks.example.com/x", &[], permissive).unwrap();
    assert_eq!(p.reach, Reach::Any);
}

#[test]
fn forbidden_headers_refuse_the_forward() {
    let a = allow(&["127.0.0.1"]);
    for name in [
        "Host",
        "connection",
        "Transfer-Encoding",
        "content-length",
        "upgrade",
        "TE",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        "Proxy-Connection",
        "bad header",
    ] {
        let h = vec![(name.to_string(), "x".to_string())];
        let err = check("http://127.0.0.1/x", &h, policy(&a)).unwrap_err();
        assert!(err.contains("header"), "{name}: {err}");
    }
    let h = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("authorization".to_string(), "Bearer t".to_string()),
        ("webhook-id".to_string(), "msg_1".to_string()),
    ];
    assert!(check("http://127.0.0.1/x", &h, policy(&a)).is_ok());
}

fn never_local(_: IpAddr) -> bool {
    false
}

#[test]
fn resolved_addresses_are_checked_under_the_reach() {
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    for bad in [
        "127.0.0.1:80",
        "[::1]:80",
        "[::ffff:127.0.0.1]:80",
        "10.0.0.1:443",
        "169.254.169.254:80",
        "[64:ff9b::a00:1]:80",
        "[2002:a00:1::1]:80",
    ] {
        let err = check_address(sa(bad), Reach::Public, &[], &never_local).unwrap_err();
        assert!(err.contains("resolves to"), "{bad}: {err}");
        assert!(
            check_address(sa(bad), Reach::Any, &[], &never_local).is_ok(),
            "{bad}"
        );
    }
    assert!(check_address(sa("93.184.216.34:443"), Reach::Public, &[], &never_local).is_ok());
}

#[test]
fn own_listeners_are_never_a_target() {
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let own = [sa("127.0.0.1:8081"), sa("0.0.0.0:8080")];
    let local = |ip: IpAddr| ip == "192.0.2.7".parse::<IpAddr>().unwrap();
    for target in [
        "127.0.0.1:8081",
        "[::ffff:127.0.0.1]:8081",
        "127.0.0.2:8081",
        "[::1]:8081",
        "0.0.0.0:8081",
        "127.0.0.1:8080",
        "192.0.2.7:8080",
    ] {
        let err = check_address(sa(target), Reach::Any, &own, &local).unwrap_err();
        assert!(err.contains("own listeners"), "{target}: {err}");
    }
    for fine in ["127.0.0.1:9000", "192.0.2.8:8080", "10.0.0.1:8081"] {
        assert!(
            check_address(sa(fine), Reach::Any, &own, &local).is_ok(),
            "{fine}"
        );
    }
}

#[test]
fn redaction_keeps_scheme_host_port_and_first_segment() {
    let url = "https://hooks.slack.com/services/T0/B0/SECRET?x=y";
    assert_eq!(redact(url), "https://hooks.slack.com:443/services/…");
    assert_eq!(
        redact("http://127.0.0.1:9000/audit"),
        "http://127.0.0.1:9000/audit"
    );
    assert_eq!(redact("http://127.0.0.1:9000/"), "http://127.0.0.1:9000/");
    assert_eq!(redact("http://[::1]:9/a/b"), "http://[::1]:9/a/…");
    assert_eq!(
        redact("http://a.example/x?token=1"),
        "http://a.example:80/x…"
    );
    assert_eq!(redact("http://u:pw@a.example/x"), "http://a.example:80/x…");
    assert_eq!(redact("not a url"), "<unparsable url>");
    let err = check(url, &[], policy(&allow(&["example.com"]))).unwrap_err();
    assert!(!err.contains("SECRET") && !err.contains("x=y"), "{err}");
    let err = check(
        "https://hooks.slack.com/services/T0/B0/SECRET",
        &[],
        policy(&allow(&["hooks.slack.com"])),
    );
    assert!(err.is_ok());
}
