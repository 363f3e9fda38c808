//! OTLP export over TLS, for gRPC and OTLP/HTTP, to a receiver whose
//! certificate comes from a CA of the test's own and which requires
//! `authorization: Bearer <token>`. The exporter is configured only through
//! the `OTEL_*` variables a service would get (read with `from_lookup`):
//!
//! - the right CA file and token: the span arrives, with the header, gzipped;
//! - a CA file of another CA: the export fails, is counted and logged;
//! - a wrong token: the same.
//!
//! In each case the code that makes the span returns normally.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use tracing_common::{ExportStats, TelemetryConfig};
use tracing_common_testing::otlp_receiver::{Options, TempDir, TestCa, TestReceiver};

const TOKEN: &str = "s3cr3t-token";
const SPAN: &str = "tls-export-probe";

/// Log lines of the whole test process (the exporter logs from the batch
/// processor's thread, so the capture must be the global subscriber).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (bounded) for a captured log line holding every one of `words`.
async fn log_line_with(words: &[&str]) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&logs().lock().expect("lock")).into_owned();
        if let Some(line) = text.lines().find(|l| words.iter().all(|w| l.contains(w))) {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The service's configuration from these variables, as `from_env` reads them.
fn config(vars: Vec<(&'static str, String)>) -> TelemetryConfig {
    TelemetryConfig::from_lookup("tls-export-test", move |name| {
        Ok(vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone()))
    })
    .expect("valid configuration")
}

struct Setup {
    receiver: TestReceiver,
    config: TelemetryConfig,
    _dir: TempDir,
}

/// A TLS receiver of `server_ca` requiring [`TOKEN`], and a service
/// configuration trusting `trusted_ca` and sending `token`, gzipped.
async fn setup(protocol: &str, trusted_ca: &TestCa, server_ca: &TestCa, token: &str) -> Setup {
    let receiver = TestReceiver::start(Options {
        tls: Some(server_ca),
        bearer: Some(TOKEN),
        ..Options::default()
    })
    .await
    .expect("receiver starts");
    let dir = TempDir::new("tls-export");
    let ca_file = trusted_ca.write_pem(&dir.0, "ca.pem");
    let config = config(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ca_file.display().to_string(),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{token}"),
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    assert!(
        !format!("{config:?}").contains(token),
        "the token must not show in Debug output"
    );
    Setup {
        receiver,
        config,
        _dir: dir,
    }
}

/// Makes one span as application code would, then shuts the pipeline down
/// (which flushes it) and returns the export counters.
async fn make_one_span(config: &TelemetryConfig) -> ExportStats {
    let guard = tracing_common::init_local(config, "test").expect("telemetry starts");
    let tracer = guard.provider().expect("SDK enabled").tracer("tls-export");
    let answer = tracer.in_span(SPAN, |_| 6 * 7);
    assert_eq!(answer, 42, "the work inside the span completes");
    // Shutdown blocks while the export runs on this runtime's other worker.
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .expect("shutdown returns")
}

async fn spans_arrive_with_the_token_and_gzip(protocol: &str) {
    logs();
    let ca = TestCa::new("tls-export test CA");
    let s = setup(protocol, &ca, &ca, TOKEN).await;
    let stats = make_one_span(&s.config).await;

    let export = s
        .receiver
        .wait_for_span(SPAN, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no span arrived; {stats:?}"));
    let expected_protocol = if protocol == "grpc" { "grpc" } else { "http" };
    assert_eq!(export.protocol, expected_protocol);
    assert_eq!(
        export.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(export.encoding.as_deref(), Some("gzip"));
    assert_eq!(
        (stats.ended, stats.exported, stats.failed),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(s.receiver.rejected(), 0);
}

async fn export_to_a_server_of_another_ca_fails_and_is_counted(protocol: &str) {
    logs();
    let trusted = TestCa::new("the CA the service trusts");
    let other = TestCa::new("another CA");
    let s = setup(protocol, &trusted, &other, TOKEN).await;
    let stats = make_one_span(&s.config).await;

    assert_eq!(stats.ended, 1, "{stats:?}");
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.lost(), 1, "{stats:?}");
    let endpoint = s.receiver.endpoint();
    let line = log_line_with(&["span export failing", &endpoint]).await;
    let line = line.unwrap_or_else(|| panic!("no failure log line for {endpoint}"));
    eprintln!("logged: {line}");
    assert!(line.contains("certificate"), "{line}");
    assert!(s.receiver.exports().is_empty());
}

async fn export_with_a_wrong_token_is_rejected_and_counted(protocol: &str) {
    logs();
    let ca = TestCa::new("tls-export test CA");
    let s = setup(protocol, &ca, &ca, "not-the-token").await;
    let stats = make_one_span(&s.config).await;

    assert_eq!(stats.exported, 0, "{stats:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.lost(), 1, "{stats:?}");
    assert!(s.receiver.rejected() >= 1);
    assert!(s.receiver.exports().is_empty());
    let endpoint = s.receiver.endpoint();
    let line = log_line_with(&["span export failing", &endpoint]).await;
    let line = line.unwrap_or_else(|| panic!("no failure log line for {endpoint}"));
    eprintln!("logged: {line}");
    let why = if protocol == "grpc" {
        "Unauthenticated"
    } else {
        "401"
    };
    assert!(line.contains(why), "{line}");
    assert!(!line.contains("not-the-token"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_spans_arrive_over_tls_with_the_token_and_gzip() {
    spans_arrive_with_the_token_and_gzip("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_spans_arrive_over_tls_with_the_token_and_gzip() {
    spans_arrive_with_the_token_and_gzip("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_to_a_server_of_another_ca_fails_and_is_counted() {
    export_to_a_server_of_another_ca_fails_and_is_counted("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_to_a_server_of_another_ca_fails_and_is_counted() {
    export_to_a_server_of_another_ca_fails_and_is_counted("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_with_a_wrong_token_is_rejected_and_counted() {
    export_with_a_wrong_token_is_rejected_and_counted("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_with_a_wrong_token_is_rejected_and_counted() {
    export_with_a_wrong_token_is_rejected_and_counted("http/protobuf").await;
}
