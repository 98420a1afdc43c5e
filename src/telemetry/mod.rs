//! OpenTelemetry traces: the exporter the `telemetry:` section and the `OTEL_*` variables
//! describe (see `config::telemetry`), a bounded queue whose drops are counted, and the
//! tracer the `tracing` layer turns the agent's spans into OpenTelemetry spans with.
//!
//! Exporting never holds up the agent's loop: a finished span is handed to the SDK's batch
//! processor, which exports from a thread of its own. When the queue is full (a slow or
//! dead collector), the span is dropped and counted (`pgwarden_telemetry_spans_dropped_total`
//! on `/metrics`), and a dead collector is one warning in the log, not a stall.

pub mod decisions;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::config::{ExportSettings, OtlpProtocol};

/// The export queue's counters, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Spans handed to the batch processor and not yet exported (or given up).
    pending: AtomicUsize,
    /// Spans dropped because the queue was full.
    dropped: AtomicU64,
    /// Spans the collector accepted.
    exported: AtomicU64,
    /// Exports that failed (the collector down, refusing or too slow).
    failed_exports: AtomicU64,
}

impl QueueStats {
    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Exports that failed.
    pub fn failed_exports(&self) -> u64 {
        self.failed_exports.load(Ordering::Relaxed)
    }
}

/// The counters of the running agent's export queue, when tracing is on.
static STATS: OnceLock<Arc<QueueStats>> = OnceLock::new();

/// The running agent's export counters (`None`: tracing is off).
pub fn stats() -> Option<&'static QueueStats> {
    STATS.get().map(Arc::as_ref)
}

/// Who the spans come from: the resource every span carries.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The member name (`service.instance.id`).
    pub member: String,
    /// The cluster (`scope`).
    pub scope: String,
    /// This machine's name.
    pub host: String,
}

/// Tracing while the agent runs; [`Telemetry::shutdown`] flushes it at the end.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Builds the exporter for `settings` and the tracer spans go through. Must run inside
    /// the tokio runtime (the gRPC channel lives on it).
    pub fn start(
        settings: &ExportSettings,
        origin: &Origin,
    ) -> anyhow::Result<(Telemetry, SdkTracer)> {
        let exporter = match settings.protocol {
            OtlpProtocol::Grpc => {
                let mut headers = hyper::HeaderMap::new();
                for (name, value) in &settings.headers {
                    let key = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        anyhow::anyhow!("telemetry.otlp.headers.{name}: not a valid header name")
                    })?;
                    let value = hyper::header::HeaderValue::from_str(&value.0).map_err(|_| {
                        anyhow::anyhow!("telemetry.otlp.headers.{name}: the value is not printable ASCII")
                    })?;
                    headers.insert(key, value);
                }
                let metadata =
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(settings.endpoint.clone())
                    .with_timeout(settings.timeout)
                    .with_metadata(metadata)
                    .build()
                    .map_err(|e| anyhow::anyhow!("telemetry.otlp: building the exporter: {e}"))?
            }
            OtlpProtocol::HttpProtobuf => anyhow::bail!(
                "telemetry.otlp.protocol: http/protobuf is not available yet in this build; use grpc"
            ),
        };
        let stats = Arc::new(QueueStats::default());
        let capacity = settings.queue_size;
        let batch = BatchSpanProcessor::builder(CountingExporter {
            inner: exporter,
            stats: stats.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                // The gate below drops first; the processor's own queue never fills.
                .with_max_queue_size(capacity + 1)
                .with_scheduled_delay(Duration::from_secs(1))
                .with_max_export_batch_size(capacity.min(512))
                .build(),
        )
        .build();
        let resource = Resource::builder()
            .with_service_name("pgwarden")
            .with_attributes([
                KeyValue::new("service.instance.id", origin.member.clone()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("host.name", origin.host.clone()),
                KeyValue::new("pgwarden.scope", origin.scope.clone()),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(QueueGate {
                inner: batch,
                capacity,
                stats: stats.clone(),
            })
            .with_resource(resource)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .build();
        let _ = STATS.set(stats);
        let tracer = provider.tracer("pgwarden");
        Ok((Telemetry { provider }, tracer))
    }

    /// Exports what is queued, within `budget`; a dead collector costs the budget, no more.
    pub async fn shutdown(self, budget: Duration) {
        let provider = self.provider;
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(budget));
        match tokio::time::timeout(budget + Duration::from_millis(500), flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "telemetry: the last spans were not all exported")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "telemetry: the export thread failed"),
            Err(_) => tracing::warn!(
                ?budget,
                "telemetry: exporting the last spans took too long; given up"
            ),
        }
    }
}

/// Counts what the collector accepted, and frees queue places as batches leave the queue.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    stats: Arc<QueueStats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.stats.pending.fetch_sub(n, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.stats.exported.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // One warning, not one per batch: a dead collector would fill the log.
                if self.stats.failed_exports.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %e, "telemetry: exporting spans failed (further failures are counted, not logged)");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// Drops a finished span when `capacity` spans already wait for export, and counts it.
#[derive(Debug)]
struct QueueGate<P> {
    inner: P,
    capacity: usize,
    stats: Arc<QueueStats>,
}

impl<P: SpanProcessor> SpanProcessor for QueueGate<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        if self.stats.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.stats.pending.fetch_sub(1, Ordering::AcqRel);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// While traces are exported: the input span's OpenTelemetry trace and span ids, as
/// attributes the decision log and every log line written under the span carry (a log line
/// leads to its trace). Taken here, outside the subscriber: its layers cannot ask the
/// exporter's layer themselves.
pub fn stamp_trace_ids(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    let otel = cx.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("pgwarden.trace_id", ids.trace_id().to_string());
        span.record("pgwarden.span_id", ids.span_id().to_string());
    }
}
