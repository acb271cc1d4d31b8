//! Logs and traces: a `tracing` subscriber (JSON or pretty), OpenTelemetry OTLP export when an
//! endpoint is configured, and W3C trace-context propagation across gRPC metadata and Kafka headers.
//!
//! The W3C propagator is installed globally whether or not traces are exported, so a service that
//! does not export still forwards `traceparent` and one trace stays linked across the cluster.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};
use crate::{Error, Result};

/// Flushes and shuts down trace export when dropped; keep it alive for the life of `main`.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter shutdown failed: {e}");
        }
    }
}

/// Installs the global subscriber and propagator for a service binary.
///
/// Fails if a global subscriber is already installed (call once, from `main`).
pub fn init(service_name: &str, config: &TelemetryConfig) -> Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| Error::Telemetry(format!("log filter: {e}")))?;
    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| Error::Telemetry(format!("OTLP exporter for {endpoint}: {e}")))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(format!("spoke-{service_name}"))
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer().with_tracer(p.tracer(format!("spoke-{service_name}")))
    });
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| Error::Telemetry(format!("subscriber already installed: {e}")))?;
    Ok(TelemetryGuard { provider })
}

/// Installs only the W3C propagator (tests and tools that have their own subscriber).
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// Writes the current span's trace context into a carrier (`traceparent`, `tracestate`).
pub fn inject_current(carrier: &mut dyn Injector) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, carrier));
}

/// Makes `span` a child of the trace context found in `carrier`, if any.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    // set_parent fails only when the span is disabled; nothing to link then.
    let _ = span.set_parent(cx);
}

/// Links `span` to the span a `traceparent` names (fan-in: one span doing the work of several
/// earlier ones, e.g. a writer chunk made of records from several Kafka batches).
pub fn add_link_from(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt;
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The current trace id as 32 hex digits, or `None` outside a sampled OpenTelemetry span.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The `traceparent` value of the current span, if there is one to propagate.
pub fn current_traceparent() -> Option<String> {
    let mut map = HashMap::new();
    inject_current(&mut map);
    map.remove("traceparent")
}

/// Adapter: tonic/HTTP headers as a propagation carrier.
pub struct HeaderCarrier<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(val)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, val);
        }
    }
}

/// Adapter: read-only HTTP headers as a propagation carrier.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Adapter: gRPC request metadata as an injection carrier (client side).
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// A tonic client interceptor that forwards the current trace context (and optionally a bearer token).
#[derive(Clone, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        inject_current(&mut MetadataInjector(req.metadata_mut()));
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn with_otel<F: FnOnce()>(f: F) {
        install_propagator();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    #[test]
    fn context_round_trips_through_http_headers() {
        with_otel(|| {
            let span = tracing::info_span!("producer");
            let _g = span.enter();
            let mut headers = http::HeaderMap::new();
            inject_current(&mut HeaderCarrier(&mut headers));
            let tp = headers
                .get("traceparent")
                .expect("traceparent injected")
                .to_str()
                .unwrap()
                .to_string();
            let trace_id = current_trace_id().expect("a trace id");
            assert!(tp.starts_with("00-"), "{tp}");
            assert!(tp.contains(&trace_id), "{tp} should carry {trace_id}");

            // A new root span adopting the carrier joins the same trace.
            let child = tracing::info_span!(parent: None, "consumer");
            set_parent_from(&child, &HeaderExtractor(&headers));
            let _c = child.enter();
            assert_eq!(current_trace_id().as_deref(), Some(trace_id.as_str()));
        });
    }

    #[test]
    fn no_context_means_no_traceparent() {
        with_otel(|| {
            assert!(current_traceparent().is_none());
        });
    }
}
