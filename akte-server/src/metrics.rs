//! Request metrics, as the outermost tower layer around all gRPC services, connection
//! counters, and the Prometheus text endpoint (a minimal HTTP/1.1 responder).
//!
//! The layer sees every call, refused ones included (the limits are the admission layer's,
//! `admission.rs`, inside this one): it counts request and response bytes, and records each
//! call's gRPC status (from the headers of a trailers-only response or from the trailers)
//! and latency when its response body ends.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use akte_core::records::Records;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::Code;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Debug, Default)]
struct MethodStats {
    by_code: BTreeMap<&'static str, Series>,
    bytes_in: u64,
    bytes_out: u64,
}

/// Counters of the server.
#[derive(Debug, Default)]
pub struct Metrics {
    methods: Mutex<BTreeMap<String, MethodStats>>,
    in_flight: AtomicU64,
    started: AtomicU64,
    rejected: AtomicU64,
    unauthenticated: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    connections_unused_closed: AtomicU64,
    connections_idle_closed: AtomicU64,
}

/// Most distinct method labels: a client can send any path (an unauthenticated one too),
/// and each must not become a time series of its own. akte has fewer than 100 methods.
const MAX_METHOD_LABELS: usize = 256;

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Metrics {
    fn record(&self, method: &str, code: Code, elapsed: Duration, bytes_in: u64, bytes_out: u64) {
        // Unknown paths must not create label values: they are all "unknown".
        let method = if code == Code::Unimplemented {
            "unknown"
        } else {
            method
        };
        let Ok(mut m) = self.methods.lock() else {
            return;
        };
        let method = if m.len() >= MAX_METHOD_LABELS && !m.contains_key(method) {
            "unknown"
        } else {
            method
        };
        let stats = m.entry(method.to_owned()).or_default();
        stats.bytes_in += bytes_in;
        stats.bytes_out += bytes_out;
        let s = stats.by_code.entry(code_name(code)).or_default();
        let secs = elapsed.as_secs_f64();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// Calls being served now (waiting for their first message included).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls started since the server started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// A call was refused at a concurrency limit.
    pub(crate) fn call_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A call was refused for want of a valid token (before its body was read).
    pub(crate) fn call_unauthenticated(&self) {
        self.unauthenticated.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed by the server's timeouts: `unused` when it never had an
    /// admitted call (header timeout), else for idleness.
    pub(crate) fn connection_timed_out(&self, unused: bool) {
        if unused {
            self.connections_unused_closed
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Connections closed so far because they had no admitted call within the header
    /// timeout, and because they stayed idle.
    pub fn connections_timed_out(&self) -> (u64, u64) {
        (
            self.connections_unused_closed.load(Ordering::Relaxed),
            self.connections_idle_closed.load(Ordering::Relaxed),
        )
    }

    /// Request body bytes the services read of calls to `method` (for tests).
    pub fn bytes_received(&self, method: &str) -> u64 {
        self.methods
            .lock()
            .ok()
            .and_then(|m| m.get(method).map(|s| s.bytes_in))
            .unwrap_or(0)
    }

    /// Number of calls of `method` that ended with `code` (for tests).
    pub fn count(&self, method: &str, code: Code) -> u64 {
        self.methods
            .lock()
            .ok()
            .and_then(|m| {
                m.get(method)
                    .and_then(|s| s.by_code.get(code_name(code)))
                    .map(|s| s.count)
            })
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of all counters, with the journals' figures.
    pub fn render(&self, records: Option<&Records>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP akted_requests_total gRPC calls by method and status."
        );
        let _ = writeln!(out, "# TYPE akted_requests_total counter");
        let methods = match self.methods.lock() {
            Ok(m) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.by_code
                            .iter()
                            .map(|(c, s)| (*c, s.clone()))
                            .collect::<Vec<_>>(),
                        v.bytes_in,
                        v.bytes_out,
                    )
                })
                .collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        for (m, codes, _, _) in &methods {
            for (c, s) in codes {
                let _ = writeln!(
                    out,
                    "akted_requests_total{{method=\"{}\",code=\"{c}\"}} {}",
                    esc(m),
                    s.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP akted_request_duration_seconds Latency of gRPC calls, to the end of the response."
        );
        let _ = writeln!(out, "# TYPE akted_request_duration_seconds histogram");
        for (m, codes, _, _) in &methods {
            for (c, s) in codes {
                let labels = format!("method=\"{}\",code=\"{c}\"", esc(m));
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "akted_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                        s.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "akted_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    s.count
                );
                let _ = writeln!(
                    out,
                    "akted_request_duration_seconds_sum{{{labels}}} {}",
                    s.sum
                );
                let _ = writeln!(
                    out,
                    "akted_request_duration_seconds_count{{{labels}}} {}",
                    s.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP akted_received_bytes_total Request body bytes received, by method."
        );
        let _ = writeln!(out, "# TYPE akted_received_bytes_total counter");
        for (m, _, bytes_in, _) in &methods {
            let _ = writeln!(
                out,
                "akted_received_bytes_total{{method=\"{}\"}} {bytes_in}",
                esc(m)
            );
        }
        let _ = writeln!(
            out,
            "# HELP akted_sent_bytes_total Response body bytes sent, by method."
        );
        let _ = writeln!(out, "# TYPE akted_sent_bytes_total counter");
        for (m, _, _, bytes_out) in &methods {
            let _ = writeln!(
                out,
                "akted_sent_bytes_total{{method=\"{}\"}} {bytes_out}",
                esc(m)
            );
        }
        let _ = writeln!(
            out,
            "# HELP akted_requests_in_flight gRPC calls being served."
        );
        let _ = writeln!(out, "# TYPE akted_requests_in_flight gauge");
        let _ = writeln!(
            out,
            "akted_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP akted_requests_rejected_total Calls refused at the concurrency limit."
        );
        let _ = writeln!(out, "# TYPE akted_requests_rejected_total counter");
        let _ = writeln!(
            out,
            "akted_requests_rejected_total {}",
            self.rejected.load(Ordering::Relaxed)
        );
        let counters: [(&str, &str, &str, &AtomicU64); 5] = [
            (
                "akted_requests_unauthenticated_total",
                "counter",
                "Calls refused before their body was read: no or an unknown token.",
                &self.unauthenticated,
            ),
            (
                "akted_connections_open",
                "gauge",
                "Client connections open.",
                &self.connections_open,
            ),
            (
                "akted_connections_refused_total",
                "counter",
                "Connections closed at once: the limit of open connections was reached.",
                &self.connections_refused,
            ),
            (
                "akted_connections_unused_closed_total",
                "counter",
                "Connections closed without an admitted call within the header timeout.",
                &self.connections_unused_closed,
            ),
            (
                "akted_connections_idle_closed_total",
                "counter",
                "Connections closed after the idle timeout without a call.",
                &self.connections_idle_closed,
            ),
        ];
        for (name, kind, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        if let Some(records) = records {
            let tenants = records.store().tenants();
            let series: [(&str, &str, &str); 4] = [
                ("akted_journal_size", "gauge", "Durable entries in the tenant's journal."),
                ("akted_journal_entries_total", "counter", "Entries made durable since the server started."),
                ("akted_journal_flushes_total", "counter", "Group commits (fdatasync) since the server started; entries/flushes is the mean group size."),
                ("akted_journal_bytes_total", "counter", "Bytes written to journal segments since the server started."),
            ];
            for (i, (name, kind, help)) in series.iter().enumerate() {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for t in &tenants {
                    let stats = t.journal().stats();
                    let v = match i {
                        0 => t.size().unwrap_or(0),
                        1 => stats.entries.load(Ordering::Relaxed),
                        2 => stats.flushes.load(Ordering::Relaxed),
                        _ => stats.bytes.load(Ordering::Relaxed),
                    };
                    let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {v}", esc(t.id()));
                }
            }
        }
        out
    }
}

/// The layer: request metrics.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> MetricsLayer {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for MetricsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let start = Instant::now();
        let method = req.uri().path().to_owned();
        let metrics = self.metrics.clone();
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics.started.fetch_add(1, Ordering::Relaxed);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let counted_in = bytes_in.clone();
        let req = req.map(|b| {
            Body::new(CountingBody {
                inner: b,
                bytes: counted_in,
            })
        });
        let fut = self.inner.call(req);
        // Created before the future so that a call dropped before it answers is counted.
        let mut call = Call {
            metrics,
            method,
            start,
            bytes_in,
            bytes_out: 0,
            code: None,
            done: false,
        };
        Box::pin(async move {
            let resp = fut.await?;
            let (parts, body) = resp.into_parts();
            call.code = parts
                .headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<i32>().ok())
                .map(Code::from_i32);
            Ok(http::Response::from_parts(
                parts,
                Body::new(ResponseBody { inner: body, call }),
            ))
        })
    }
}

/// One call in flight: recorded once, when its response ends or is dropped.
struct Call {
    metrics: Arc<Metrics>,
    method: String,
    start: Instant,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    code: Option<Code>,
    done: bool,
}

impl Call {
    fn finish(&mut self, dropped: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let code = self.code.unwrap_or(if dropped {
            Code::Cancelled
        } else {
            Code::Unknown
        });
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.record(
            &self.method,
            code,
            self.start.elapsed(),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out,
        );
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(true);
    }
}

struct CountingBody {
    inner: Body,
    bytes: Arc<AtomicU64>,
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
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

struct ResponseBody {
    inner: Body,
    call: Call,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.call.bytes_out += d.len() as u64;
                } else if let Some(t) = f.trailers_ref() {
                    self.call.code = t
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.parse::<i32>().ok())
                        .map(Code::from_i32);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.call.code.get_or_insert(Code::Internal);
                self.call.finish(false);
            }
            Poll::Ready(None) => self.call.finish(false),
            Poll::Pending => {}
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

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    records: Records,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let records = records.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics, &records))
                    .await;
        });
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: &Metrics,
    records: &Records,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            break;
        }
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            let records = records.clone();
            let text = metrics.render(Some(&records));
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        } else if method == "GET" && path == "/" {
            (
                "200 OK",
                "text/plain; charset=utf-8",
                "akted metrics: GET /metrics\n".to_owned(),
            )
        } else {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "not found; try /metrics\n".to_owned(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
