//! Admission: the tower layer that decides, from a call's headers alone and before any of
//! its body is read, whether the server works on it.
//!
//! In this order:
//!
//! 1. **Authentication** from the `authorization` header. A call without a valid token is
//!    answered UNAUTHENTICATED at once; its body is never read, so it costs no permit, no
//!    buffer and no worker. Health checks and reflection (`/grpc.*`) need no token, but
//!    may send only [`ANONYMOUS_BODY_LIMIT`] bytes.
//! 2. **The first message**: the layer waits (up to the first-message timeout) until the
//!    body's first bytes arrive, so a call that sent its headers and stalls holds no
//!    permit; it is answered DEADLINE_EXCEEDED when the time is up. The rest of the first
//!    message must also arrive by then ([`CheckedBody`]).
//! 3. **Limits**: at most `max_concurrent` calls at once in all and at most
//!    `max_per_principal` of one principal, so one client (or one stolen token) cannot
//!    crowd out the others. Beyond either the call is refused with RESOURCE_EXHAUSTED
//!    (reason OVERLOADED, metadata `scope`), not queued: the client retries after the
//!    RetryInfo delay. Health and reflection are exempt, so they stay answerable.
//!
//! The limits are counted here rather than with tower's `ConcurrencyLimit` and `LoadShed`:
//! those take their permit in `poll_ready`, before the request (and so its principal and
//! its first message) is known, wait instead of refusing unless shed, and give the permit
//! back when the response future resolves, while a streaming call must count until its
//! response body ends. A per-principal share is not a tower concept either.
//!
//! An admitted call's permits, and its mark on the connection ([`crate::conn`]), are
//! held until its response body ends or is dropped, so streaming calls count for their
//! whole length. The principal goes into the request's extensions ([`Admitted`]), where
//! the services find it instead of checking the token again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::{Code, Status};

use crate::auth::Principal;
use crate::conn::{CallOnConn, ConnInfo};
use crate::error::server_status_with;
use crate::metrics::Metrics;
use crate::request_body::{first_message_late, BodyRules, CheckedBody, ANONYMOUS_BODY_LIMIT};
use crate::service::State;

/// The principal of an admitted call, in its request extensions.
#[derive(Debug, Clone)]
pub struct Admitted(pub Arc<Principal>);

/// The limits the layer enforces.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Calls at once, in all.
    pub max_concurrent: usize,
    /// Calls at once of one principal.
    pub max_per_principal: usize,
    /// How long a call may take from its headers to the end of its first message.
    pub first_message_timeout: Duration,
}

/// Calls holding permits now.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_principal: HashMap<String, usize>,
}

#[derive(Debug)]
struct Shared {
    state: Arc<State>,
    metrics: Arc<Metrics>,
    limits: AdmissionLimits,
    counts: Mutex<Counts>,
    /// The second in which a refusal was last logged (refusals are logged at most once a
    /// second, so that a flood of them cannot flood the log).
    logged: AtomicU64,
}

/// Why a call was not admitted.
enum Refusal {
    Total,
    Principal,
}

/// Permits of one admitted call, returned when dropped.
#[derive(Debug)]
struct Permit {
    shared: Arc<Shared>,
    principal: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_principal.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                c.by_principal.remove(&self.principal);
            }
        }
    }
}

impl Shared {
    fn acquire(self: &Arc<Self>, principal: &str) -> Result<Permit, Refusal> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.limits.max_concurrent {
            return Err(Refusal::Total);
        }
        let mine = c.by_principal.get(principal).copied().unwrap_or(0);
        if mine >= self.limits.max_per_principal {
            return Err(Refusal::Principal);
        }
        c.total += 1;
        *c.by_principal.entry(principal.to_owned()).or_insert(0) += 1;
        Ok(Permit {
            shared: self.clone(),
            principal: principal.to_owned(),
        })
    }

    /// Whether a refusal may be logged now.
    fn may_log(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.logged.swap(now, Ordering::Relaxed) != now
    }
}

/// The layer (see the module documentation).
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    shared: Arc<Shared>,
}

impl AdmissionLayer {
    /// A layer admitting calls to the services over `state`.
    pub fn new(state: Arc<State>, metrics: Arc<Metrics>, limits: AdmissionLimits) -> Self {
        AdmissionLayer {
            shared: Arc::new(Shared {
                state,
                metrics,
                limits,
                counts: Mutex::new(Counts::default()),
                logged: AtomicU64::new(0),
            }),
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A refusal, as the trailers-only response tonic would send for it.
fn refuse(status: Status) -> http::Response<Body> {
    status.into_http()
}

impl<S> tower::Service<http::Request<Body>> for Admission<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        // The clone that was polled ready serves this call; a fresh clone stays for the
        // next (tower's usual pattern for services called from a future).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let anonymous = req.uri().path().starts_with("/grpc.");
        let principal = if anonymous {
            None
        } else {
            let header = req.headers().get(http::header::AUTHORIZATION);
            match shared.state.authenticate(header.map(|v| v.as_bytes())) {
                Ok(p) => Some(p),
                Err(e) => {
                    shared.metrics.call_unauthenticated();
                    if shared.may_log() {
                        let peer = req
                            .extensions()
                            .get::<ConnInfo>()
                            .and_then(|c| c.tcp.remote_addr());
                        tracing::warn!(method = %req.uri().path(), peer = ?peer, "denied: {e} (further denials within this second are only counted)");
                    }
                    // The body is dropped unread: h2 resets the stream and discards
                    // whatever the client still sends on it.
                    return Box::pin(async move { Ok(refuse(e.to_status())) });
                }
            }
        };
        let conn = req.extensions().get::<ConnInfo>().cloned();
        if let Some(c) = &conn {
            req.extensions_mut().insert(c.tcp.clone());
        }
        if let Some(p) = &principal {
            req.extensions_mut().insert(Admitted(p.clone()));
        }
        Box::pin(async move {
            let limits = shared.limits;
            let by = Instant::now() + limits.first_message_timeout;
            // Marks the connection busy while the call waits for its first bytes too, so
            // that the connection is not closed under it as idle.
            let on_conn = conn.map(|c| c.activity.begin());
            let (parts, mut body) = req.into_parts();
            let first = match tokio::time::timeout_at(
                by,
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
            )
            .await
            {
                Err(_) => return Ok(refuse(first_message_late(limits.first_message_timeout))),
                Ok(None) => None,
                Ok(Some(Ok(frame))) => Some(frame),
                // The stream failed (reset by the client): tonic reports it as it does.
                Ok(Some(Err(status))) => return Ok(refuse(status)),
            };
            // WatchEntries streams last for hours; they have a limit of their own
            // (service::MAX_WATCHERS) instead of holding a permit each.
            let long_lived = parts.uri.path() == "/akte.v1.JournalService/WatchEntries";
            let permit = match &principal {
                None => None,
                Some(_) if long_lived => None,
                Some(p) => match shared.acquire(&p.name) {
                    Ok(permit) => Some(permit),
                    Err(why) => {
                        shared.metrics.call_rejected();
                        let (scope, limit) = match why {
                            Refusal::Total => ("server", limits.max_concurrent),
                            Refusal::Principal => ("principal", limits.max_per_principal),
                        };
                        if shared.may_log() {
                            tracing::warn!(principal = %p.name, method = %parts.uri.path(), scope, limit, "call refused: concurrency limit reached (further refusals within this second are only counted)");
                        }
                        let message = match why {
                            Refusal::Total => format!("the server is at its limit of {limit} concurrent calls; retry shortly"),
                            Refusal::Principal => format!("{} has {limit} calls in flight, its limit; retry shortly", p.name),
                        };
                        return Ok(refuse(overloaded(&message, scope, limit)));
                    }
                },
            };
            let rules = BodyRules {
                first_message_by: by,
                first_message_timeout: limits.first_message_timeout,
                need_message: !anonymous,
                limit: anonymous.then_some(ANONYMOUS_BODY_LIMIT),
            };
            let req =
                http::Request::from_parts(parts, Body::new(CheckedBody::new(first, body, rules)));
            let resp = inner.call(req).await?;
            Ok(resp.map(|b| {
                Body::new(Held {
                    inner: b,
                    _permit: permit,
                    _conn: on_conn,
                })
            }))
        })
    }
}

fn overloaded(message: &str, scope: &'static str, limit: usize) -> Status {
    server_status_with(
        Code::ResourceExhausted,
        crate::pb::akte::v1::ErrorReason::Overloaded,
        message,
        vec![("scope", scope.to_owned()), ("limit", limit.to_string())],
    )
}

/// A response body holding the call's permits until it ends or is dropped.
struct Held {
    inner: Body,
    _permit: Option<Permit>,
    _conn: Option<CallOnConn>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &r {
            self._permit = None;
            self._conn = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
