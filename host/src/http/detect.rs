//! Protocol detection under a deadline: HTTP/1.1 or HTTP/2 with prior
//! knowledge (h2c), told apart by the 24-byte HTTP/2 preface.
//!
//! Owns: reading a new connection's first bytes with a deadline (a peer that
//! sends nothing, or only part of the preface, is dropped when it passes), and
//! handing the bytes read back to hyper through [`Rewind`].
//! Never: parses HTTP; hyper does, on the rewound stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// Why a connection was dropped before it spoke HTTP.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DetectError {
    #[error("no request within {0:?}")]
    Deadline(Duration),
    #[error("closed before sending a request")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads until the bytes are either the whole preface (HTTP/2) or differ from
/// it (HTTP/1), within `deadline`. Returns the protocol and the bytes read.
pub(crate) async fn detect<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
) -> Result<(Protocol, Vec<u8>), DetectError> {
    let mut buf = Vec::with_capacity(PREFACE.len());
    let read = async {
        let mut chunk = [0u8; PREFACE.len()];
        loop {
            let want = PREFACE.len() - buf.len();
            let n = stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(DetectError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf[..] != PREFACE[..buf.len()] {
                return Ok(Protocol::Http1);
            }
            if buf.len() == PREFACE.len() {
                return Ok(Protocol::Http2);
            }
        }
    };
    let protocol = tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| DetectError::Deadline(deadline))??;
    Ok((protocol, buf))
}

/// A stream that first yields the bytes detection consumed, then the rest.
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let rest = &self.prefix[self.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn http1_is_told_by_its_first_differing_byte() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"POST /webhooks/x HTTP/1.1\r\n")
            .await
            .unwrap();
        let (p, read) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert!(
            read.starts_with(b"PO") && read.len() <= 24,
            "reads no further than the preface's length"
        );
        let mut rewound = Rewind::new(read, server);
        let mut line = vec![0u8; 27];
        rewound.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"POST /webhooks/x HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn the_whole_preface_is_http2() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(PREFACE).await.unwrap();
        client.write_all(b"\x00\x00").await.unwrap();
        let (p, read) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!((p, read.len()), (Protocol::Http2, 24));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_half_a_preface_meet_the_deadline() {
        let (_client, mut server) = tokio::io::duplex(64);
        let err = detect(&mut server, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, DetectError::Deadline(_)), "{err}");

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&PREFACE[..16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = detect(&mut server, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, DetectError::Deadline(_)), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_a_request() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let err = detect(&mut server, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, DetectError::Closed), "{err}");
    }
}
