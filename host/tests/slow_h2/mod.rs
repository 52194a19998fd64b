//! An HTTP/2 client (prior knowledge) that sends bodies slowly.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;

/// A body fed chunk by chunk from a channel.
pub struct Slow(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Slow {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

pub async fn connect(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Slow> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// POSTs `body` in `chunks` pieces, `pause` apart; with a Content-Length
/// when `declare`. Returns the status and whether Retry-After was set.
pub async fn post(
    mut send: hyper::client::conn::http2::SendRequest<Slow>,
    url: String,
    body: Bytes,
    chunks: usize,
    pause: Duration,
    declare: bool,
) -> (u16, bool) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut req = hyper::Request::post(url).header("content-type", "application/json");
    if declare {
        req = req.header("content-length", body.len());
    }
    let req = req.body(Slow(rx)).unwrap();
    let size = body.len().div_ceil(chunks);
    let feed = tokio::spawn(async move {
        let mut off = 0;
        while off < body.len() {
            let end = (off + size).min(body.len());
            if tx.send(body.slice(off..end)).await.is_err() {
                return; // refused: the server dropped the body
            }
            off = end;
            tokio::time::sleep(pause).await;
        }
    });
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let _ = resp.into_body().collect().await;
    feed.abort();
    (status, retry_after)
}
