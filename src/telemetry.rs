//! Telemetry wiring: the Prometheus recorder behind `/metrics` and the
//! tracing subscriber. The metric names themselves are catalogued in
//! `actors::telemetry`.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::settings::LogFormat;

/// Latency buckets from 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Queue waits and renders, 10 ms to an hour: a render takes seconds to
/// minutes, and a backlog minutes more, far past the latency buckets' 10 s
/// (with those, a two-minute wait objective could never be seen broken).
const QUEUE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
    3600.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

const DEPTH_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. A process
/// has one recorder, so several servers in one test process share it.
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(actors::telemetry::COMMIT_BATCH_SIZE.into()),
                    BATCH_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(actors::telemetry::MAILBOX_DEPTH.into()),
                    DEPTH_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(actors::telemetry::QUEUE_WAIT_SECONDS.into()),
                    QUEUE_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(actors::telemetry::QUEUE_RUN_SECONDS.into()),
                    QUEUE_BUCKETS,
                )
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then this handle renders empty.
        let _ = metrics::set_global_recorder(recorder);
        use actors::telemetry::Kind;
        for (name, kind, help) in actors::telemetry::CATALOGUE {
            match kind {
                Kind::Counter => metrics::describe_counter!(*name, *help),
                Kind::Gauge => metrics::describe_gauge!(*name, *help),
                Kind::Histogram => metrics::describe_histogram!(*name, *help),
            }
        }
        process_collector().describe();
        metrics::gauge!(actors::telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        handle
    })
}

/// Process memory, CPU and file descriptors, as `kokoro_process_*`.
pub fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| metrics_process::Collector::new(actors::telemetry::PROCESS_PREFIX))
}

/// Refreshes the gauges that are sampled rather than counted, then renders
/// the Prometheus text.
pub async fn render(runtime: &actors::Runtime) -> String {
    use actors::telemetry as m;
    metrics::gauge!(m::ACTORS_RESIDENT).set(runtime.resident() as f64);
    metrics::gauge!(m::PERSISTENCE_BACKLOG).set(runtime.backlog() as f64);
    metrics::gauge!(m::PERSISTENCE_STALLED).set(if runtime.stalled_ms().is_some() {
        1.0
    } else {
        0.0
    });
    let (in_use, idle) = runtime.store().connections();
    metrics::gauge!(m::DB_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!(m::DB_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(m::READY).set(if runtime.readiness().await.is_ready() {
        1.0
    } else {
        0.0
    });
    process_collector().collect();
    prometheus().render()
}

/// Keeps histograms bounded: the exporter needs periodic upkeep.
pub fn spawn_upkeep() {
    let handle = prometheus().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Where logs go besides stderr: JSON lines in `dir`, one file a day
/// (`kokoro.YYYY-MM-DD.log`), the oldest removed past `keep_days` files.
#[derive(Debug, Clone)]
pub struct LogFiles {
    pub dir: std::path::PathBuf,
    pub keep_days: usize,
}

/// Keeps the background log writer and the trace exporter flushing; drop it
/// only at exit, which flushes what is left.
#[derive(Default)]
pub struct LogGuard {
    _files: Option<tracing_appender::non_blocking::WorkerGuard>,
    #[cfg(feature = "otel")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.traces.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("kokoro: could not flush traces: {e}");
            }
        }
    }
}

/// Sets up logging: text or JSON on stderr, JSON files if `files`, and, in
/// a build with the `otel` feature, span export to `otlp_endpoint`.
pub fn init_logging(
    format: LogFormat,
    files: Option<&LogFiles>,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<LogGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter, Layer};

    // RUST_LOG chooses what is logged; it does not thin out exported traces,
    // so each log layer gets its own filter.
    let logged =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let stderr = if json {
        fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(logged())
            .boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(logged())
            .boxed()
    };
    let (file, guard) = match files {
        None => (None, None),
        Some(f) => {
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("kokoro")
                .filename_suffix("log")
                .max_log_files(f.keep_days.max(1))
                .build(&f.dir)
                .map_err(|e| anyhow::anyhow!("--log-dir {}: {e}", f.dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (
                Some(
                    fmt::layer()
                        .json()
                        .with_ansi(false)
                        .with_writer(writer)
                        .with_filter(logged()),
                ),
                Some(guard),
            )
        }
    };
    #[cfg(feature = "otel")]
    let (traces, provider) = match otlp_endpoint {
        Some(e) => {
            let (layer, provider) = crate::otel::layer(e)?;
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    #[cfg(not(feature = "otel"))]
    let traces: Option<Box<dyn Layer<_> + Send + Sync>> = match otlp_endpoint {
        Some(_) => anyhow::bail!(
            "--otlp-endpoint needs a build with the otel feature: cargo build --release --features otel"
        ),
        None => None,
    };
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(traces)
        .with(stderr)
        .with(file)
        .try_init();
    Ok(LogGuard {
        _files: guard,
        #[cfg(feature = "otel")]
        traces: provider,
    })
}
