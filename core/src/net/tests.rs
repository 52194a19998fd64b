use std::net::IpAddr;

use super::*;

fn reason(s: &str) -> Option<&'static str> {
    non_public_reason(s.parse::<IpAddr>().unwrap())
}

#[test]
fn every_refused_block_is_refused_with_its_name() {
    let cases = [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared"),
        ("100.127.255.255", "shared"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::7f00:1", "reserved"),
        ("64:ff9b::7f00:1", "NAT64"),
        ("64:ff9b::808:808", "NAT64"),
        ("64:ff9b:1::1", "NAT64"),
        ("2002:7f00:1::1", "6to4"),
        ("2002::1", "6to4"),
        ("2001::1", "reserved"),
        ("2001:db8::1", "documentation"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("100::1", "discard"),
    ];
    for (ip, why) in cases {
        assert_eq!(reason(ip), Some(why), "{ip}");
    }
}

#[test]
fn public_addresses_pass() {
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.0.9",
        "192.169.0.1",
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "2001:20::1",
        "2001:3::1",
        "::ffff:8.8.8.8",
    ] {
        assert_eq!(reason(ip), None, "{ip}");
        assert!(is_public(ip.parse().unwrap()));
    }
}

#[test]
fn mapped_addresses_are_unmapped() {
    let ip: IpAddr = "::ffff:192.168.0.1".parse().unwrap();
    assert_eq!(unmap(ip), "192.168.0.1".parse::<IpAddr>().unwrap());
    let ip: IpAddr = "2606:4700::1".parse().unwrap();
    assert_eq!(unmap(ip), ip);
}

#[test]
fn entries_parse_with_and_without_ports() {
    let p = |s: &str| HostPort::parse(s);
    assert_eq!(
        p("hooks.slack.com"),
        Some(HostPort {
            host: "hooks.slack.com".into(),
            port: None
        })
    );
    assert_eq!(p("Example.COM.:8443").unwrap().host, "example.com");
    assert_eq!(p("Example.COM.:8443").unwrap().port, Some(8443));
    assert_eq!(p("[::1]:9000").unwrap().host, "::1");
    assert_eq!(p("[::1]").unwrap().port, None);
    assert_eq!(p("::1").unwrap().host, "::1");
    assert!(p("127.0.0.1").unwrap().is_ip_literal());
    assert!(!p("localhost").unwrap().is_ip_literal());
    for bad in [
        "",
        ":80",
        "a..b",
        "host:99999",
        "host:",
        "[nope]:1",
        "a b",
        "a/b",
        "[::1",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
    assert_eq!(p("[::1]:9000").unwrap().to_string(), "[::1]:9000");
    assert_eq!(p("a.example").unwrap().to_string(), "a.example");
}

#[test]
fn entries_match_host_and_port() {
    let any_port = HostPort::parse("hooks.slack.com").unwrap();
    assert!(any_port.allows("hooks.slack.com", 443));
    assert!(any_port.allows("hooks.slack.com", 8081));
    assert!(!any_port.allows("hooks.slack.com.evil.example", 443));
    let one_port = HostPort::parse("127.0.0.1:9000").unwrap();
    assert!(one_port.allows("127.0.0.1", 9000));
    assert!(!one_port.allows("127.0.0.1", 9001));
    assert_eq!(normalize_host("[::1]").as_deref(), Some("::1"));
    assert_eq!(normalize_host("LOCALHOST.").as_deref(), Some("localhost"));
    assert_eq!(normalize_host("bad host"), None);
}
