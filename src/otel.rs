//! OpenTelemetry export of kokoro's spans (built with `--features otel`):
//! every command span, with the group-commit spans linked to it, goes to an
//! OTLP/HTTP collector (Jaeger, Tempo, the OpenTelemetry Collector) at
//! `--otlp-endpoint`. Spans are batched and sent from a background thread,
//! so a slow collector never slows a command.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::Layer;

/// The tracing layer that exports, and the provider to flush at exit.
pub fn layer<S>(
    endpoint: &str,
) -> anyhow::Result<(Box<dyn Layer<S> + Send + Sync>, SdkTracerProvider)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let endpoint = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("kokoro").build())
        .build();
    let tracer = provider.tracer("kokoro");
    // Spans at info and above (every command), whatever RUST_LOG says.
    let spans = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("sqlx", tracing::Level::WARN);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(spans)
        .boxed();
    Ok((layer, provider))
}
