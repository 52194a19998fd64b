//! `GET /admin/events/stream`: new events and outcomes on this replica as
//! server-sent events (`event: event|delivery|forward|lagged`, `data:` one
//! JSON object), with a comment line every 15 s so idle connections stay up.
//! The dashboard reads it with `fetch` (the bearer token travels in a header;
//! never in the URL), `hookrouter events tail` with its HTTP client.
//!
//! Owns: one forwarding task per subscriber, from the activity bus into the
//! response body, and [`SseBody`].
//! Never: waits for a slow subscriber: its queue is bounded, and what does not
//! fit is dropped and announced as `lagged` with how many were missed.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::Frame;
use hyper::{Response, StatusCode, header};
use tokio::sync::{broadcast, mpsc};

use super::api::{Answer, ApiError};
use super::routes::Call;

/// How often an idle stream sends a comment line.
const PING: Duration = Duration::from_secs(15);

/// Frames waiting for the client.
const QUEUE: usize = 256;

/// A body that yields whatever its task sends, and ends when the task does.
#[derive(Debug)]
pub(crate) struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|b| Ok(Frame::data(b))))
    }
}

fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

pub(super) async fn events(c: Call<'_>) -> Answer {
    if !c.query().is_empty() {
        return Err(ApiError::bad("the stream takes no query parameters"));
    }
    let mut bus = c.admin.activity.subscribe();
    let mut stop = c.admin.stop.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    tokio::spawn(async move {
        // The first bytes go out at once, so the client knows it is subscribed.
        if tx
            .send(Bytes::from_static(b": subscribed\nretry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
        // Messages this client lost, announced as soon as there is room.
        let mut missed: u64 = 0;
        loop {
            let (out, counts) = tokio::select! {
                m = bus.recv() => match m {
                    Ok(m) => match serde_json::to_string(&*m) {
                        Ok(json) => (frame(m.kind(), &json), true),
                        Err(_) => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        missed += n;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = ping.tick() => (Bytes::from_static(b": ping\n\n"), false),
                _ = stop.wait_for(|stopped| *stopped) => break,
                _ = tx.closed() => break,
            };
            // A full queue means a slow client: drop rather than wait.
            if missed > 0 {
                match tx.try_send(frame("lagged", &format!("{{\"missed\":{missed}}}"))) {
                    Ok(()) => missed = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        missed += u64::from(counts);
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            match tx.try_send(out) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => missed += u64::from(counts),
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Either::Right(SseBody { rx }))
        .expect("static response parts are valid"))
}
