//! The admin listener's route table: every method and path it answers, who
//! may call it, and the handler.
//!
//! Owns: [`ROUTES`] and matching a request's method and path against it
//! (`{name}` segments capture one path segment; the first route that fits
//! wins, so literal paths go before captures).
//! Never: handles a request; it only finds the handler.

use std::future::Future;
use std::pin::Pin;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::api::{Answer, ApiError, Body};
use super::{Admin, assets, dead, events, plugins, stats, stream};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Anyone who reaches the listener: probes, and the dashboard's files
    /// (the page asks for the token itself).
    Open,
    /// Needs the bearer token when `[admin] token_env` is set.
    Token,
}

/// One handled request: the admin state, the request and the captured segments.
pub(super) struct Call<'a> {
    pub admin: &'a Admin,
    pub req: Request<Incoming>,
    pub params: Vec<String>,
}

impl Call<'_> {
    /// The `i`-th captured segment.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The query string ("" when none).
    pub fn query(&self) -> &str {
        self.req.uri().query().unwrap_or("")
    }
}

type BoxAnswer<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;
pub(super) type Handler = for<'a> fn(Call<'a>) -> BoxAnswer<'a>;

pub(super) struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

macro_rules! routes {
    ($($method:ident $path:literal $access:ident => $handler:path;)*) => {
        &[$(Route {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            handler: |call| Box::pin($handler(call)),
        }),*]
    };
}

/// Every route of the admin listener.
pub(super) static ROUTES: &[Route] = routes! {
    GET "/healthz" Open => stats::healthz;
    GET "/readyz" Open => stats::readyz;
    GET "/metrics" Token => stats::metrics;
    GET "/" Open => assets::index;
    GET "/assets/{file}" Open => assets::file;
    GET "/admin/plugins" Token => plugins::plugins;
    GET "/admin/routes" Token => plugins::routes;
    GET "/admin/store" Token => stats::store;
    GET "/admin/stats" Token => stats::stats;
    GET "/admin/events" Token => events::list;
    GET "/admin/events/stream" Token => stream::events;
    GET "/admin/events/{id}" Token => events::show;
    GET "/admin/dead" Token => dead::list;
    POST "/admin/dead/replay" Token => dead::replay_many;
    POST "/admin/dead/purge" Token => dead::purge_many;
    GET "/admin/dead/{id}" Token => dead::show;
    DELETE "/admin/dead/{id}" Token => dead::purge_one;
    POST "/admin/dead/{id}/replay" Token => dead::replay_one;
};

/// What matching a request found.
pub(super) enum Found {
    /// A route, with the captured segments.
    Route(&'static Route, Vec<String>),
    /// The path is served, with other methods (the `Allow` list).
    OtherMethods(String),
    Nothing,
}

impl Found {
    /// Who may learn the answer: a miss under `/admin` or `/metrics` needs the
    /// token as much as a hit would (paths are not disclosed to strangers).
    pub fn access(&self, path: &str) -> Access {
        match self {
            Found::Route(r, _) => r.access,
            _ if path == "/metrics" || path.starts_with("/admin") => Access::Token,
            _ => Access::Open,
        }
    }
}

/// The captured segments if `path` fits `pattern`.
fn fits(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.push(g.to_string())
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// The route for `method` and `path` (a `HEAD` is answered as a `GET`).
pub(super) fn find(method: &Method, path: &str) -> Found {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        if let Some(params) = fits(route.path, path) {
            if route.method == method {
                return Found::Route(route, params);
            }
            if !allowed.contains(&route.method.as_str()) {
                allowed.push(route.method.as_str());
            }
        }
    }
    if allowed.is_empty() {
        Found::Nothing
    } else {
        Found::OtherMethods(allowed.join(", "))
    }
}

/// Runs the handler of a found route.
pub(super) async fn run(route: &'static Route, call: Call<'_>) -> Response<Body> {
    (route.handler)(call)
        .await
        .unwrap_or_else(|e: ApiError| e.response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> String {
        match find(&method, path) {
            Found::Route(r, p) => format!("{} {:?}", r.path, p),
            Found::OtherMethods(m) => format!("allow {m}"),
            Found::Nothing => "404".into(),
        }
    }

    #[test]
    fn literal_paths_win_over_captures_and_methods_are_told_apart() {
        assert_eq!(found(Method::GET, "/admin/events"), "/admin/events []");
        assert_eq!(
            found(Method::GET, "/admin/events/stream"),
            "/admin/events/stream []"
        );
        assert_eq!(
            found(Method::GET, "/admin/events/abc"),
            "/admin/events/{id} [\"abc\"]"
        );
        assert_eq!(
            found(Method::POST, "/admin/dead/d-1/replay"),
            "/admin/dead/{id}/replay [\"d-1\"]"
        );
        assert_eq!(
            found(Method::POST, "/admin/dead/replay"),
            "/admin/dead/replay []"
        );
        assert_eq!(found(Method::HEAD, "/"), "/ []");
        assert_eq!(found(Method::PUT, "/admin/dead/d-1"), "allow GET, DELETE");
        assert_eq!(found(Method::GET, "/admin/events/"), "404");
        assert_eq!(found(Method::GET, "/admin/events/a/b"), "404");
        assert_eq!(found(Method::GET, "/nope"), "404");
    }

    #[test]
    fn misses_under_admin_need_the_token() {
        assert_eq!(
            find(&Method::GET, "/admin/nope").access("/admin/nope"),
            Access::Token
        );
        assert_eq!(find(&Method::GET, "/nope").access("/nope"), Access::Open);
        assert_eq!(
            find(&Method::GET, "/healthz").access("/healthz"),
            Access::Open
        );
        assert_eq!(
            find(&Method::GET, "/admin/dead").access("/admin/dead"),
            Access::Token
        );
    }
}
