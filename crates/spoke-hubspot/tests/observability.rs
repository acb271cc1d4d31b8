//! Spans, W3C trace propagation and metrics of HubSpot calls.

mod support;

use std::sync::Arc;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use spoke_hubspot::StaticToken;
use support::{RecordingBudget, Reply, Scripted, client, fast_retry};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const ACCOUNT: &str = r#"{"portalId":42,"accountType":"STANDARD"}"#;

#[tokio::test(flavor = "current_thread")]
async fn calls_are_spans_with_trace_context_and_metrics() {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Scripted::start(vec![Reply::json(503, "{}"), Reply::json(200, ACCOUNT)]).await;
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, Arc::new(StaticToken::new("secret-token-value")));

    let root = tracing::info_span!("export.write_batch");
    let trace_id = root.context().span().span_context().trace_id();
    portal
        .account_details()
        .instrument(root.clone())
        .await
        .unwrap();
    drop(root);

    // Every attempt carries a W3C traceparent of the caller's trace.
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let tp = s.header("traceparent").expect("traceparent header");
        assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
    }

    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let call = spans
        .iter()
        .find(|s| s.name == "hubspot.account_details")
        .unwrap_or_else(|| {
            panic!(
                "no hubspot span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(call.span_context.trace_id(), trace_id);
    let attr = |k: &str| {
        call.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attr("http.route").as_deref(),
        Some("/account-info/v3/details")
    );
    assert_eq!(attr("http.method").as_deref(), Some("GET"));
    assert_eq!(attr("portal").as_deref(), Some("42"));
    assert_eq!(attr("http.status_code").as_deref(), Some("200"));
    assert_eq!(attr("attempt").as_deref(), Some("2"));
    for s in &spans {
        for kv in &s.attributes {
            assert!(
                !kv.value.to_string().contains("secret-token-value"),
                "token leaked in {s:?}"
            );
        }
        for ev in s.events.iter() {
            for kv in &ev.attributes {
                assert!(!kv.value.to_string().contains("secret-token-value"));
            }
        }
    }

    let rendered = metrics.render();
    assert!(
        rendered
            .contains(r#"spoke_hubspot_requests_total{endpoint="account_details",status="503"} 1"#),
        "{rendered}"
    );
    assert!(
        rendered
            .contains(r#"spoke_hubspot_requests_total{endpoint="account_details",status="200"} 1"#),
        "{rendered}"
    );
    assert!(
        rendered.contains("spoke_hubspot_request_duration_seconds"),
        "{rendered}"
    );
}
