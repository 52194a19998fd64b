//! What the benchmark programs share: the signed sample event, client
//! connections, and the router started in this process.

#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

pub const SECRET: &str = "bench-secret";

/// The Optum sample `payment_loading_requested.json` (756 bytes).
pub fn body() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/optum/payment_loading_requested.json"
    ))
    .unwrap()
}

/// Hex HMAC-SHA256 of `body` under [`SECRET`], as Optum signs.
pub fn signature(body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One keep-alive HTTP/1.1 client connection to `addr`.
pub async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A POST of `body` to `path`, signed the Optum way.
pub fn signed(path: &str, body: &Bytes, sig: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("x-optum-webhook-callback-hmac-signature", sig)
        .body(Full::new(body.clone()))
        .unwrap()
}

/// The body of a 2xx answer (empty if it cannot be read).
pub async fn read_body(resp: hyper::Response<hyper::body::Incoming>) -> Bytes {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// Starts the router in this process on `config_text` (written to `dir`).
pub async fn router(dir: &std::path::Path, config_text: &str) -> SocketAddr {
    let path = dir.join("router.toml");
    std::fs::write(&path, config_text).unwrap();
    let config = hookrouter::config::Config::load_with_env(&path, &|k| {
        (k == "OPTUM_WEBHOOK_SECRET").then(|| SECRET.to_string())
    })
    .unwrap();
    let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ingress.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(hookrouter::run_with_ready(
        config,
        ingress,
        admin,
        std::future::pending(),
        move |_, _| {
            let _ = tx.send(());
        },
    ));
    rx.await.unwrap();
    addr
}
