//! Connections: the stream of accepted TCP connections the gRPC server serves, each
//! wrapped so that it closes itself when it does nothing useful.
//!
//! HTTP/2 keepalive (hyper) only finds peers that are gone; a live peer that opens
//! connections and sends nothing, or only calls the server refuses, answers every ping and
//! would hold its sockets for ever. So every connection carries an [`Activity`] that the
//! admission layer updates (a call admitted begins, a call ends), and its reads fail
//! with `TimedOut`, which makes hyper drop the connection, once
//!
//! - it has not had an admitted call within `header_timeout` of being accepted (this also
//!   bounds a TLS handshake and a request's headers that trickle in), or
//! - it has had no call in flight for `idle_timeout`.
//!
//! A connection with a call in flight is never closed here: the call's own deadlines
//! (first message, request timeout, upload idle) bound it. At most `max_connections`
//! connections are open at once; beyond that a new one is closed at once, so the process
//! keeps file descriptors for the connections it serves.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::Stream;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::Metrics;

/// The limits of connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A new connection must have its first admitted call within this.
    pub header_timeout: Duration,
    /// A connection without a call in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// What a connection has been doing, shared by its IO and the calls on it.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    admitted: AtomicU64,
    idle_since: Mutex<Instant>,
    waker: AtomicWaker,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            idle_since: Mutex::new(now),
            waker: AtomicWaker::new(),
        }
    }

    /// A call on this connection was admitted; the connection counts as busy until the
    /// returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> CallOnConn {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.admitted.fetch_add(1, Ordering::SeqCst);
        CallOnConn(self.clone())
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A call in flight on a connection (see [`Activity::begin`]).
#[derive(Debug)]
pub struct CallOnConn(Arc<Activity>);

impl Drop for CallOnConn {
    fn drop(&mut self) {
        let a = &self.0;
        *a.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The connection's task may be parked on a read without a deadline: wake it
            // so that it arms the idle deadline.
            a.waker.wake();
        }
    }
}

/// The connect info of a guarded connection, found in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP addresses (the admission layer puts them into the request too, so that
    /// `tonic::Request::remote_addr` works).
    pub tcp: TcpConnectInfo,
    /// The connection's activity.
    pub activity: Arc<Activity>,
}

/// A TCP connection that closes itself as described in the module documentation.
pub struct GuardedStream {
    inner: TcpStream,
    info: ConnInfo,
    accepted: Instant,
    limits: ConnLimits,
    timer: Pin<Box<Sleep>>,
    metrics: Arc<Metrics>,
    _slot: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// When the connection is to be closed, if nothing changes; `None` while a call is in
    /// flight.
    fn deadline(&self) -> Option<Instant> {
        let a = &self.info.activity;
        if a.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if a.admitted.load(Ordering::SeqCst) == 0 {
            return Some(self.accepted + self.limits.header_timeout);
        }
        Some(a.idle_since() + self.limits.idle_timeout)
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.info.activity.waker.register(cx.waker());
        let Some(deadline) = self.deadline() else {
            return false;
        };
        if Instant::now() >= deadline {
            return true;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            let admitted = self.info.activity.admitted.load(Ordering::SeqCst);
            self.metrics.connection_timed_out(admitted == 0);
            tracing::debug!(peer = ?self.info.tcp.remote_addr(), admitted, "closing a connection without calls");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if admitted == 0 {
                    "no admitted call within the header timeout"
                } else {
                    "idle timeout"
                },
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
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

/// The connections accepted on `listener`, guarded. Accept errors (such as running out of
/// file descriptors) are logged and retried after a pause instead of ending the server
/// or spinning.
pub fn incoming(
    listener: TcpListener,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<GuardedStream>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    futures_util::stream::unfold(
        (listener, slots, metrics),
        move |(listener, slots, metrics)| async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics.connection_refused();
                    tracing::warn!(
                        limit = limits.max_connections,
                        "connection refused: the server holds its limit of open connections"
                    );
                    drop(stream);
                    continue;
                };
                // Small gRPC messages must not wait for Nagle's algorithm and delayed ACKs
                // (about 40 ms per round trip on loopback); the client side sets the same.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                let now = Instant::now();
                metrics.connection_opened();
                let guarded = GuardedStream {
                    info: ConnInfo {
                        tcp: stream.connect_info(),
                        activity: Arc::new(Activity::new(now)),
                    },
                    inner: stream,
                    accepted: now,
                    limits,
                    timer: Box::pin(tokio::time::sleep_until(now + limits.header_timeout)),
                    metrics: metrics.clone(),
                    _slot: slot,
                };
                return Some((Ok(guarded), (listener, slots, metrics)));
            }
        },
    )
}
