//! Prometheus metrics of the server, served at `/metrics` in the text exposition format.

use super::state::AppState;
use crate::runtime::Runtime;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Labels of the request counters: method, route template (not the raw path, which would
/// create a series per run id) and status code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The server's metrics and the registry that encodes them.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    ingested_metrics: Counter,
}

impl Telemetry {
    /// Registers the request, ingestion and plugin-call metrics.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let mut registry = Registry::with_prefix("runledger");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests handled, by method, route and status",
            requests.clone(),
        );
        // Buckets from 100 us to about 26 s, doubling.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 19))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route",
            latency.clone(),
        );
        let ingested_metrics = Counter::default();
        registry.register(
            "ingested_metrics",
            "Metric values committed through the API",
            ingested_metrics.clone(),
        );
        registry.register_collector(Box::new(PluginCalls(runtime)));
        Self {
            registry,
            requests,
            latency,
            ingested_metrics,
        }
    }

    /// Counts metric values committed through the API.
    pub fn add_ingested_metrics(&self, count: u64) {
        self.ingested_metrics.inc_by(count);
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let route = route.to_owned();
        let method = method.to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }

    /// Encodes every metric in the text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the runtime's call counters at scrape time.
struct PluginCalls(Arc<Runtime>);

impl std::fmt::Debug for PluginCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCalls").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for PluginCalls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let started = ConstCounter::new(stats.started.load(Ordering::Relaxed));
        let failed = ConstCounter::new(stats.failed.load(Ordering::Relaxed));
        let running = ConstGauge::new(stats.running.load(Ordering::Relaxed));
        let families: [(&str, &str, &dyn EncodeMetric); 3] = [
            ("plugin_calls", "Plugin calls started", &started),
            (
                "plugin_call_failures",
                "Plugin calls that failed or trapped",
                &failed,
            ),
            (
                "running_plugin_calls",
                "Plugin calls of every kind running now",
                &running,
            ),
        ];
        for (name, help, metric) in families {
            let metric_encoder =
                encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(metric_encoder)?;
        }
        Ok(())
    }
}

/// Middleware that counts requests and measures their latency by matched route.
pub async fn measure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    state
        .telemetry()
        .observe(&method, &route, response.status().as_u16(), seconds);
    response
}

/// `GET /metrics`: the Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", body = String,
            content_type = "text/plain"),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.telemetry().encode() {
        Ok(text) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(error) => super::error::ApiError::internal(error).into_response(),
    }
}
