//! The admin listener: health, readiness, metrics, the admin API (a route
//! table, typed answers) and the web dashboard.
//!
//! Owns: `GET /healthz`, `/readyz`, `/metrics`, `/admin/*`, the dashboard at
//! `/` and `/assets/*`. Who may call them is [`guard`]'s (Host, Origin,
//! Content-Type, and the bearer token that guards `/admin/*` and `/metrics`),
//! checked once before any route. Modules: [`routes`] (the table), [`api`]
//! (answers and errors), [`mask`] (what views hide), and one module per area:
//! `events`, `dead`, `plugins`, `stats`, `stream`, `assets`.
//! Never: serves webhooks; it listens on its own (loopback by default) address.
//! Event data is shown, never interpreted: the dashboard renders it as text
//! under a `default-src 'self'` content security policy.

mod api;
mod assets;
mod dead;
mod events;
pub(crate) mod guard;
pub(crate) mod mask;
mod plugins;
mod routes;
mod stats;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, header};

pub(crate) use self::events::event_view;

use self::api::{ApiError, Body};
use self::routes::{Access, Call, Found};
use crate::activity::Activity;
use crate::live::Shared;
use crate::plugins::PluginRegistry;
use crate::store::SharedStore;

/// What the admin handlers read: one per listener, shared behind an `Arc`.
#[derive(Clone)]
pub(crate) struct Admin {
    pub live: Shared,
    pub store: SharedStore,
    pub registry: Arc<PluginRegistry>,
    pub activity: Arc<Activity>,
    /// Turns true when the router shuts down (open event streams end then).
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub guard: guard::Guard,
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let mut resp = self.answer(req).await;
        secure(resp.headers_mut());
        resp
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        // The guards of every admin request (Host, token, Content-Type and
        // Origin: DESIGN.md, "Containment and limits", Admin), as one call,
        // before anything else reads the request.
        let path = req.uri().path().to_string();
        let found = routes::find(req.method(), &path);
        if let Err(refused) = self.guard.check(
            req.method(),
            req.uri(),
            req.headers(),
            &self.live.load().config,
            found.access(&path) == Access::Token,
        ) {
            return refused.response().map(http_body_util::Either::Left);
        }
        match found {
            // (hyper leaves out the body of an answer to HEAD.)
            Found::Route(route, params) => {
                let call = Call {
                    admin: self,
                    req,
                    params,
                };
                routes::run(route, call).await
            }
            Found::OtherMethods(allow) => ApiError::MethodNotAllowed(allow).response(),
            Found::Nothing => ApiError::NotFound(format!("not found: {path}")).response(),
        }
    }
}

/// Headers on every admin answer: the content security policy (event data is
/// never run: no inline script or style, nothing from elsewhere), no MIME
/// sniffing, no framing, and nothing cached (answers hold event data).
fn secure(h: &mut hyper::HeaderMap) {
    use header::HeaderValue as V;
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        V::from_static("default-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, V::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, V::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, V::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(V::from_static("no-store"));
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    conns: Arc<crate::http::Conns>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits =
        crate::http::Limits::from_config(&admin.live.load().config.server, Duration::from_secs(2));
    let admin = Arc::new(admin);
    crate::http::serve(
        listener,
        limits,
        conns,
        move |req| {
            // One shared service per listener: a request clones an `Arc`, nothing more.
            let service = admin.clone();
            async move { service.handle(req).await }
        },
        shutdown,
    )
    .await;
}
