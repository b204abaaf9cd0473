//! Request metrics, as the outermost tower layer around all gRPC services, connection
//! counters, and the Prometheus endpoint.
//!
//! The layer sees every call, refused ones included (the limits are the admission layer's,
//! `admission.rs`, inside this one): it counts request and response bytes, and records each
//! call's gRPC status (from the headers of a trailers-only response or from the trailers)
//! and latency when its response body ends. The series are `prometheus-client` metrics;
//! the journals' figures are read at each scrape; hyper serves `GET /metrics`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use akte_core::records::Records;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::Code;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The labels of a call's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: &'static str,
}

/// The label of a method's byte counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

type Histograms = Family<CallLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Counters of the server.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<CallLabels, Counter>,
    durations: Histograms,
    bytes_in: Family<MethodLabel, Counter>,
    bytes_out: Family<MethodLabel, Counter>,
    /// The method labels given out so far (bounded by [`MAX_METHOD_LABELS`]).
    methods: Mutex<HashSet<String>>,
    in_flight: Gauge,
    started: AtomicU64,
    rejected: Counter,
    unauthenticated: Counter,
    connections_open: Gauge,
    connections_refused: Counter,
    connections_unused_closed: Counter,
    connections_idle_closed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            durations: Histograms::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            methods: Mutex::new(HashSet::new()),
            in_flight: Gauge::default(),
            started: AtomicU64::new(0),
            rejected: Counter::default(),
            unauthenticated: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            connections_unused_closed: Counter::default(),
            connections_idle_closed: Counter::default(),
        }
    }
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
    /// The label a call to `method` is counted under: unknown paths, and any new one once
    /// [`MAX_METHOD_LABELS`] are in use, are all "unknown".
    fn method_label(&self, method: &str, code: Code) -> String {
        if code == Code::Unimplemented {
            return "unknown".to_owned();
        }
        let Ok(mut known) = self.methods.lock() else {
            return "unknown".to_owned();
        };
        if known.contains(method) {
            return method.to_owned();
        }
        if known.len() >= MAX_METHOD_LABELS {
            return "unknown".to_owned();
        }
        known.insert(method.to_owned());
        method.to_owned()
    }

    fn record(&self, method: &str, code: Code, elapsed: Duration, bytes_in: u64, bytes_out: u64) {
        let method = self.method_label(method, code);
        let bytes = MethodLabel {
            method: method.clone(),
        };
        self.bytes_in.get_or_create(&bytes).inc_by(bytes_in);
        self.bytes_out.get_or_create(&bytes).inc_by(bytes_out);
        let call = CallLabels {
            method,
            code: code_name(code),
        };
        self.requests.get_or_create(&call).inc();
        self.durations
            .get_or_create(&call)
            .observe(elapsed.as_secs_f64());
    }

    /// Calls being served now (waiting for their first message included).
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.in_flight.get()).unwrap_or(0)
    }

    /// Calls started since the server started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// A call was refused at a concurrency limit.
    pub(crate) fn call_rejected(&self) {
        self.rejected.inc();
    }

    /// A call was refused for want of a valid token (before its body was read).
    pub(crate) fn call_unauthenticated(&self) {
        self.unauthenticated.inc();
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A connection was closed by the server's timeouts: `unused` when it never had an
    /// admitted call (header timeout), else for idleness.
    pub(crate) fn connection_timed_out(&self, unused: bool) {
        if unused {
            self.connections_unused_closed.inc();
        } else {
            self.connections_idle_closed.inc();
        }
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        u64::try_from(self.connections_open.get()).unwrap_or(0)
    }

    /// Connections closed so far because they had no admitted call within the header
    /// timeout, and because they stayed idle.
    pub fn connections_timed_out(&self) -> (u64, u64) {
        (
            self.connections_unused_closed.get(),
            self.connections_idle_closed.get(),
        )
    }

    /// Request body bytes the services read of calls to `method` (for tests).
    pub fn bytes_received(&self, method: &str) -> u64 {
        self.bytes_in
            .get(&MethodLabel {
                method: method.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    /// Number of calls of `method` that ended with `code` (for tests).
    pub fn count(&self, method: &str, code: Code) -> u64 {
        self.requests
            .get(&CallLabels {
                method: method.to_owned(),
                code: code_name(code),
            })
            .map_or(0, |c| c.get())
    }

    /// The exposition (OpenMetrics text) of all series, with the journals' figures.
    pub fn render(&self, records: Option<&Records>) -> String {
        let mut registry = Registry::default();
        // The handles share their values with the ones the layer updates.
        registry.register(
            "akted_requests",
            "gRPC calls by method and status",
            self.requests.clone(),
        );
        registry.register(
            "akted_request_duration_seconds",
            "Latency of gRPC calls, to the end of the response",
            self.durations.clone(),
        );
        registry.register(
            "akted_received_bytes",
            "Request body bytes received, by method",
            self.bytes_in.clone(),
        );
        registry.register(
            "akted_sent_bytes",
            "Response body bytes sent, by method",
            self.bytes_out.clone(),
        );
        registry.register(
            "akted_requests_in_flight",
            "gRPC calls being served",
            self.in_flight.clone(),
        );
        registry.register(
            "akted_requests_rejected",
            "Calls refused at the concurrency limit",
            self.rejected.clone(),
        );
        registry.register(
            "akted_requests_unauthenticated",
            "Calls refused before their body was read: no or an unknown token",
            self.unauthenticated.clone(),
        );
        registry.register(
            "akted_connections_open",
            "Client connections open",
            self.connections_open.clone(),
        );
        registry.register(
            "akted_connections_refused",
            "Connections closed at once: the limit of open connections was reached",
            self.connections_refused.clone(),
        );
        registry.register(
            "akted_connections_unused_closed",
            "Connections closed without an admitted call within the header timeout",
            self.connections_unused_closed.clone(),
        );
        registry.register(
            "akted_connections_idle_closed",
            "Connections closed after the idle timeout without a call",
            self.connections_idle_closed.clone(),
        );
        if let Some(records) = records {
            registry.register_collector(Box::new(Journals(records.clone())));
        }
        let mut out = String::new();
        // Writing into a String cannot fail; a metric that could not be encoded would
        // show as a truncated exposition, which the scraper reports.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The journals' figures per tenant, read at each scrape.
#[derive(Debug)]
struct Journals(Records);

impl Collector for Journals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tenants = self.0.store().tenants();
        let size = |t: &akte_core::store::Tenant| t.size().unwrap_or(0);
        let entries =
            |t: &akte_core::store::Tenant| t.journal().stats().entries.load(Ordering::Relaxed);
        let flushes =
            |t: &akte_core::store::Tenant| t.journal().stats().flushes.load(Ordering::Relaxed);
        let bytes =
            |t: &akte_core::store::Tenant| t.journal().stats().bytes.load(Ordering::Relaxed);
        type Figure<'a> = (
            &'a str,
            &'a str,
            bool,
            &'a dyn Fn(&akte_core::store::Tenant) -> u64,
        );
        let figures: [Figure; 4] = [
            ("akted_journal_size", "Durable entries in the tenant's journal", false, &size),
            ("akted_journal_entries", "Entries made durable since the server started", true, &entries),
            ("akted_journal_flushes", "Group commits (fdatasync) since the server started; entries/flushes is the mean group size", true, &flushes),
            ("akted_journal_bytes", "Bytes written to journal segments since the server started", true, &bytes),
        ];
        for (name, help, counter, value) in figures {
            let kind = if counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for t in &tenants {
                let labels = [("tenant", t.id())];
                let metric = family.encode_family(&labels)?;
                let v = value(t);
                if counter {
                    ConstCounter::new(v).encode(metric)?;
                } else {
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(metric)?;
                }
            }
        }
        Ok(())
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
        metrics.in_flight.inc();
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
        self.metrics.in_flight.dec();
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

/// Serves `GET /metrics` on `listener` until `shutdown` resolves: HTTP/1.1 by hyper, one
/// response per connection, each connection given 10 s.
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
            let service = hyper::service::service_fn(move |req| {
                let response = answer(&req, &metrics, &records);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(10), connection).await;
        });
    }
}

/// The response to one request of the metrics port.
fn answer<B>(
    req: &http::Request<B>,
    metrics: &Metrics,
    records: &Records,
) -> http::Response<http_body_util::Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            http::StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(Some(records)),
        ),
        (&http::Method::GET, "/") => (
            http::StatusCode::OK,
            "text/plain; charset=utf-8",
            "akted metrics: GET /metrics\n".to_owned(),
        ),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_owned(),
        ),
    };
    let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_series_and_bounds_the_method_labels() {
        let m = Metrics::default();
        let get = "/akte.v1.FileService/GetFile";
        m.record(get, Code::Ok, Duration::from_millis(3), 10, 20);
        m.record("/no.Such/Method", Code::Unimplemented, Duration::ZERO, 0, 0);
        for i in 0..300 {
            m.record(&format!("/s.S/M{i}"), Code::NotFound, Duration::ZERO, 1, 1);
        }
        m.call_unauthenticated();
        m.connection_opened();
        let text = m.render(None);
        for line in [
            format!("akted_requests_total{{method=\"{get}\",code=\"OK\"}} 1"),
            format!(
                "akted_request_duration_seconds_bucket{{le=\"0.005\",method=\"{get}\",code=\"OK\"}} 1"
            ),
            format!(
                "akted_request_duration_seconds_bucket{{le=\"0.0025\",method=\"{get}\",code=\"OK\"}} 0"
            ),
            format!("akted_received_bytes_total{{method=\"{get}\"}} 10"),
            format!("akted_sent_bytes_total{{method=\"{get}\"}} 20"),
            "akted_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 1".to_owned(),
            "akted_requests_unauthenticated_total 1".to_owned(),
            "akted_connections_open 1".to_owned(),
            "# TYPE akted_requests_in_flight gauge".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // 256 method labels at most: GetFile and M0..M254; the other 45 are "unknown".
        assert_eq!(m.count("unknown", Code::NotFound), 45);
        assert_eq!(m.count("/s.S/M254", Code::NotFound), 1);
        assert_eq!(m.count("/s.S/M255", Code::NotFound), 0);
        assert_eq!(m.bytes_received(get), 10);
    }
}
