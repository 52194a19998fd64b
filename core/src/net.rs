//! Host names, `host[:port]` entries and IP address classes.
//!
//! Owns: the `host` / `host:port` / `[v6]:port` syntax of `allow_forward` and
//! `[admin] allowed_hosts`, matching a request's host and port against such an
//! entry, and the list of address blocks that are not on the public Internet
//! (loopback, private, shared, link-local, multicast, NAT64, 6to4, …).
//! Never: resolves a name or opens a socket; the outbox resolves, this module
//! only judges the addresses it is handed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `host` (any port) or `host:port`, parsed once when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Lower-case DNS name without a trailing dot, or an IP address (IPv6
    /// without brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    /// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; `None`
    /// if it is none of those.
    pub fn parse(entry: &str) -> Option<HostPort> {
        let (host, port) = match entry.strip_prefix('[') {
            Some(rest) => {
                let (inner, after) = rest.split_once(']')?;
                inner.parse::<Ipv6Addr>().ok()?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':')?.parse().ok()?),
                };
                (inner, port)
            }
            None => match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p.parse().ok()?)),
                _ => (entry, None),
            },
        };
        let host = normalize_host(host)?;
        Some(HostPort { host, port })
    }

    /// Whether a request to `host:port` (as returned by [`normalize_host`]) is
    /// allowed by this entry.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }

    /// Whether the entry names an IP address rather than a DNS name.
    pub fn is_ip_literal(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

/// A host as compared: an IP address in its canonical text, or a DNS name in
/// lower case without its trailing dot (`Example.COM.` is `example.com`).
/// `None` when it is neither (empty labels, characters outside `a-z0-9-_`).
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| name.to_ascii_lowercase())
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// carries; every other address unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why `ip` is not a public Internet address (`"loopback"`, `"private"`, …), or
/// `None` when it is one. IPv4-mapped IPv6 addresses are unmapped first.
///
/// The blocks follow IANA's special-purpose registries (as `is_global` of the
/// standard library, unstable on Rust 1.95, does), and add what a forward
/// must never reach even where IANA calls it global: multicast, NAT64
/// (`64:ff9b::/96`, which reaches IPv4 addresses through a translator) and
/// 6to4 (`2002::/16`).
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match unmap(ip) {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Whether `ip` is a public Internet address (see [`non_public_reason`]).
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// (network, prefix length, why), checked in order.
const V4_BLOCKS: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "unspecified"),    // 0.0.0.0/8, "this network"
    (0x0a00_0000, 8, "private"),        // 10.0.0.0/8
    (0x6440_0000, 10, "shared"),        // 100.64.0.0/10, carrier-grade NAT
    (0x7f00_0000, 8, "loopback"),       // 127.0.0.0/8
    (0xa9fe_0000, 16, "link-local"),    // 169.254.0.0/16 (cloud metadata lives here)
    (0xac10_0000, 12, "private"),       // 172.16.0.0/12
    (0xc000_0000, 24, "reserved"),      // 192.0.0.0/24, IETF protocol assignments
    (0xc000_0200, 24, "documentation"), // 192.0.2.0/24
    (0xc058_6300, 24, "6to4 relay"),    // 192.88.99.0/24
    (0xc0a8_0000, 16, "private"),       // 192.168.0.0/16
    (0xc612_0000, 15, "benchmarking"),  // 198.18.0.0/15
    (0xc633_6400, 24, "documentation"), // 198.51.100.0/24
    (0xcb00_7100, 24, "documentation"), // 203.0.113.0/24
    (0xe000_0000, 4, "multicast"),      // 224.0.0.0/4
    (0xf000_0000, 4, "reserved"),       // 240.0.0.0/4, with 255.255.255.255
];

/// Globally reachable exceptions inside the blocks above (IANA: 192.0.0.9 and
/// 192.0.0.10 are anycast services).
const V4_GLOBAL: &[u32] = &[0xc000_0009, 0xc000_000a];

const V6_BLOCKS: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified"),                                    // ::
    (1, 128, "loopback"),                                       // ::1
    (0, 96, "reserved"),                                        // ::/96, IPv4-compatible
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96, "NAT64"),   // 64:ff9b::/96
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48, "NAT64"),   // 64:ff9b:1::/48
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, "discard"), // 100::/64
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        "documentation",
    ), // 2001:db8::/32
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23, "reserved"), // 2001::/23 (Teredo among them)
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16, "6to4"),    // 2002::/16
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        "documentation",
    ), // 3fff::/20
    (
        0x5f00_0000_0000_0000_0000_0000_0000_0000,
        16,
        "segment routing",
    ), // 5f00::/16
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, "private"),  // fc00::/7, unique local
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, "link-local"), // fe80::/10
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, "site-local"), // fec0::/10, deprecated
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, "multicast"), // ff00::/8
];

/// Globally reachable blocks inside `2001::/23`: PCP and TURN anycast
/// (`2001:1::1`, `2001:1::2`, as /128), AMT (`2001:3::/32`), AS112
/// (`2001:4:112::/48`), ORCHIDv2 and DETs (`2001:20::/27`).
const V6_GLOBAL: &[(u128, u8)] = &[
    (0x2001_0001_0000_0000_0000_0000_0000_0001, 128),
    (0x2001_0001_0000_0000_0000_0000_0000_0002, 128),
    (0x2001_0003_0000_0000_0000_0000_0000_0000, 32),
    (0x2001_0004_0112_0000_0000_0000_0000_0000, 48),
    (0x2001_0020_0000_0000_0000_0000_0000_0000, 27),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    if V4_GLOBAL.contains(&n) {
        return None;
    }
    V4_BLOCKS
        .iter()
        .find(|(net, len, _)| n >> (32 - len) == net >> (32 - len))
        .map(|(_, _, why)| *why)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let n = u128::from(ip);
    let within = |net: u128, len: u8| len == 0 || n >> (128 - len) == net >> (128 - len);
    if V6_GLOBAL.iter().any(|&(net, len)| within(net, len)) {
        return None;
    }
    V6_BLOCKS
        .iter()
        .find(|&&(net, len, _)| within(net, len))
        .map(|(_, _, why)| *why)
}

#[cfg(test)]
mod tests;
