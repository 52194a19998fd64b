//! Which forwards may go where: the one rule that dispatch (when a plugin asks
//! for a forward) and the outbox (before and while it connects) both apply.
//!
//! Owns: matching a forward's URL against `allow_forward`, refusing headers a
//! plugin may not set, deciding which resolved addresses a forward may reach
//! (public only, unless the entry is an IP literal or the plugin sets
//! `allow_private_network`), recognising the router's own listeners, and the
//! redacted form of a URL that logs and admin views show.
//! Never: resolves names or connects (the outbox's connector does, and asks
//! [`check_address`] about every address it resolved), and never puts a whole
//! URL into an error message: for Slack- or Teams-style webhooks the path is
//! the credential.

use std::net::{IpAddr, SocketAddr};

use crate::net::{self, HostPort};

/// One `allow_forward` entry: a host (any port) or `host:port`.
pub type ForwardTarget = HostPort;

/// Bytes of a target's answer the outbox reads at most.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A plugin's forward policy, borrowed from its `[plugin.NAME]` settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy<'a> {
    pub allow: &'a [ForwardTarget],
    /// `allow_private_network = true`: names may resolve to any address.
    pub allow_private_network: bool,
}

/// Which addresses a checked forward may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Public addresses only (a DNS name under the default policy).
    Public,
    /// Any address but the router's own listeners (an IP literal entry, or a
    /// plugin with `allow_private_network = true`).
    Any,
}

/// A forward that passed [`check`]: where to connect and under which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub https: bool,
    /// Normalized (see [`net::normalize_host`]).
    pub host: String,
    pub port: u16,
    /// The URL's host when it is an IP address (no resolution happens).
    pub ip: Option<IpAddr>,
    pub reach: Reach,
}

/// Headers a plugin may not set on a forward: the host sets them itself
/// (`Host`, framing) or they are hop-by-hop.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
];

/// Checks a forward's URL against the plugin's policy and its headers against
/// the forbidden ones. `Err` says why in one line, naming the URL only in its
/// [`redact`]ed form.
pub fn check(
    url: &str,
    headers: &[(String, String)],
    policy: Policy<'_>,
) -> Result<Permit, String> {
    // The redacted form is built only for an error: it parses the URL again.
    let shown = || redact(url);
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("invalid url {}", shown()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("url {} is not http or https", shown())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("url {} has no host", shown()))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "url {} carries credentials before its host",
            shown()
        ));
    }
    let host = net::normalize_host(authority.host())
        .ok_or_else(|| format!("url {} has an invalid host", shown()))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    check_headers(headers)?;
    let ip = host.parse::<IpAddr>().ok();
    if !policy.allow.iter().any(|t| t.allows(&host, port)) {
        let host = HostPort {
            host,
            port: Some(port),
        };
        return Err(format!("host {host} is not in allow_forward"));
    }
    // An IP literal URL can only match an IP literal entry: the user named the
    // address, so it may be private. A name is trusted only as far as it resolves.
    let reach = if ip.is_some() || policy.allow_private_network {
        Reach::Any
    } else {
        Reach::Public
    };
    Ok(Permit {
        https,
        host,
        port,
        ip,
        reach,
    })
}

/// Refuses a forward whose headers set `Host`, framing or hop-by-hop headers.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    for (full, _) in headers {
        // A plugin may send a name of any length; an error shows its start.
        let name: String = full.chars().take(64).collect();
        let full = full.as_str();
        let lower = full.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(format!(
                "forward sets header {name:?}, which only the router may set"
            ));
        }
        if http::HeaderName::from_bytes(full.as_bytes()).is_err() {
            return Err(format!(
                "forward header name {name:?} is not a valid header name"
            ));
        }
    }
    Ok(())
}

/// Whether a forward under `reach` may connect to `addr` (one the outbox
/// resolved, or the URL's own IP). `listeners` are the router's own; `is_local`
/// tells whether an IP is assigned to this machine (for a listener bound to
/// `0.0.0.0` or `::`).
pub fn check_address(
    addr: SocketAddr,
    reach: Reach,
    listeners: &[SocketAddr],
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Result<(), String> {
    let ip = net::unmap(addr.ip());
    if is_own_listener(SocketAddr::new(ip, addr.port()), listeners, is_local) {
        return Err(format!(
            "{} is one of the router's own listeners",
            SocketAddr::new(ip, addr.port())
        ));
    }
    match (reach, net::non_public_reason(ip)) {
        (Reach::Public, Some(why)) => Err(format!(
            "resolves to {ip} ({why}); list the address itself in allow_forward, or set allow_private_network = true"
        )),
        _ => Ok(()),
    }
}

fn is_own_listener(
    addr: SocketAddr,
    listeners: &[SocketAddr],
    is_local: &dyn Fn(IpAddr) -> bool,
) -> bool {
    let ip = addr.ip();
    listeners.iter().any(|l| {
        let lip = net::unmap(l.ip());
        l.port() == addr.port()
            && (lip == ip
                || (ip.is_loopback() && lip.is_loopback())
                || ip.is_unspecified()
                || (lip.is_unspecified() && (ip.is_loopback() || is_local(ip))))
    })
}

/// A URL as logs and admin views show it: scheme, host, port and the first
/// path segment; whatever followed (more segments, a query) becomes `…`.
/// `https://hooks.slack.com/services/T0/B0/SECRET?x=y` is
/// `https://hooks.slack.com:443/services/…`.
pub fn redact(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "<unparsable url>".to_owned();
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return "<url without scheme or host>".to_owned();
    };
    let scheme = match scheme {
        "http" | "https" => scheme,
        _ => "<other scheme>",
    };
    let host = authority.host();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri.path();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (first, more_path) = match trimmed.split_once('/') {
        Some((first, rest)) => (first, !rest.is_empty()),
        None => (trimmed, false),
    };
    let cut = if more_path {
        "/…"
    } else if uri.query().is_some() || authority.as_str().contains('@') {
        "…"
    } else {
        ""
    };
    format!("{scheme}://{host}:{port}/{first}{cut}")
}

#[cfg(test)]
mod tests;
