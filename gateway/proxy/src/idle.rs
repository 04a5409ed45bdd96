//! A response body that fails when the upstream goes quiet for longer than its timeout, so an
//! upstream hanging mid-body cannot hold a client connection forever. The error ends the body;
//! hyper then aborts the client's response (HTTP/1.1: the connection closes before the body is
//! complete; HTTP/2: the stream is reset), so the client never mistakes it for complete.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

pin_project_lite::pin_project! {
    /// A body that ends with an error once `inner` yields nothing for `idle`.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        idle: Duration,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; the clock starts now and restarts on every frame.
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "upstream sent nothing for {} s mid-body",
                    this.idle.as_secs()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A client connection that is closed once the client has sent nothing for `idle`. HTTP/2
    /// has no header timeout of its own after the preface: without this, a client that opens
    /// a connection, sends its SETTINGS and then nothing (or a TLS client that stops mid
    /// handshake) holds a connection slot forever. HTTP/2 clients send WINDOW_UPDATE frames
    /// while they read a response, so a download in progress is not idle.
    pub struct ReadIdle<S> {
        #[pin]
        inner: S,
        // Boxed, so the connection stays `Unpin` as hyper needs.
        sleep: Pin<Box<Sleep>>,
        idle: Duration,
    }
}

impl<S> ReadIdle<S> {
    /// Wraps `inner`; the clock starts now and restarts whenever the client sends bytes.
    pub fn new(inner: S, idle: Duration) -> Self {
        ReadIdle {
            inner,
            sleep: Box::pin(tokio::time::sleep(idle)),
            idle,
        }
    }

    /// The wrapped connection, to read its state without going through the timeout.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: tokio::io::AsyncRead> tokio::io::AsyncRead for ReadIdle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.sleep.as_mut().reset(Instant::now() + *this.idle);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for ReadIdle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_quiet_body_fails_and_a_lively_one_completes() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let body = http_body_util::StreamBody::new(stream);
        let mut wrapped = Box::pin(IdleTimeout::new(body, Duration::from_millis(200)));
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        let first = wrapped.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"abc"));
        // Nothing more arrives: after 200 ms the body fails instead of waiting forever.
        let err = wrapped.frame().await.unwrap();
        assert!(err.is_err());
        drop(tx);

        let lively = http_body_util::Full::new(Bytes::from_static(b"done"));
        let collected = Box::pin(IdleTimeout::new(lively, Duration::from_millis(200)))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(collected, Bytes::from_static(b"done"));
    }
}
