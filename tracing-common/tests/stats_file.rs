//! `TELEMETRY_STATS_FILE`: telemetry shutdown writes the process's span
//! export counts as JSON to the file it names, which is how the benchmark and
//! the fault tests read exported and lost spans of a service that has exited.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use tracing_common::config::STATS_FILE_VARIABLE;
use tracing_common::{ExportStats, TelemetryConfig};

fn stats_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "telemetry-stats-{name}-{}-{nanos}.json",
        std::process::id()
    ))
}

/// The configuration a service gets from these variables.
fn config(vars: &[(&str, String)]) -> TelemetryConfig {
    TelemetryConfig::from_lookup("stats-file-test", |name| {
        Ok(vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone()))
    })
    .unwrap()
}

/// Starts telemetry with `vars`, ends `spans` spans, shuts down; returns what
/// shutdown returned and what it wrote to the stats file.
fn run(name: &str, mut vars: Vec<(&str, String)>, spans: usize) -> (ExportStats, ExportStats) {
    let path = stats_path(name);
    vars.push((STATS_FILE_VARIABLE, path.display().to_string()));
    let config = config(&vars);
    assert_eq!(config.stats_file.as_deref(), Some(path.as_path()));
    let guard = tracing_common::init_local(&config, "test").unwrap();
    if let Some(provider) = guard.provider() {
        let tracer = provider.tracer("stats-file-test");
        for i in 0..spans {
            tracer.in_span(format!("span {i}"), |_| {});
        }
    }
    assert!(!path.exists(), "written before shutdown");
    let returned = guard.shutdown();
    let text = std::fs::read_to_string(&path).expect("shutdown writes the stats file");
    let _ = std::fs::remove_file(&path);
    let written = ExportStats::from_json(&text).unwrap_or_else(|| panic!("{text}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["lost"].as_u64(), Some(written.lost()), "{text}");
    (returned, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_exported_spans_to_the_stats_file() {
    let (returned, written) = run(
        "exported",
        vec![("OTEL_TRACES_EXPORTER", "console".into())],
        7,
    );
    assert_eq!(written, returned);
    assert_eq!((written.ended, written.exported, written.lost()), (7, 7, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_lost_spans_to_the_stats_file() {
    let closed = tracing_common_testing::closed_port();
    let started = std::time::Instant::now();
    let (returned, written) = run(
        "lost",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".into()),
        ],
        5,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(written, returned);
    assert_eq!((written.ended, written.exported, written.lost()), (5, 0, 5));
}

#[tokio::test]
async fn with_the_sdk_disabled_the_stats_file_holds_zeros() {
    let (_, written) = run("disabled", vec![("OTEL_SDK_DISABLED", "true".into())], 3);
    assert_eq!(written, ExportStats::default());
}

#[tokio::test]
async fn without_the_variable_no_file_is_written() {
    let config = config(&[("OTEL_TRACES_EXPORTER", "console".into())]);
    assert_eq!(config.stats_file, None);
    let guard = tracing_common::init_local(&config, "test").unwrap();
    let stats = guard.shutdown();
    assert_eq!(stats.ended, 0);
}

#[test]
fn a_file_that_is_not_stats_is_an_error_naming_it() {
    let path = stats_path("garbage");
    std::fs::write(&path, "telemetry shut down; all spans exported").unwrap();
    let error = ExportStats::read_file(&path).unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        error.to_string().contains("telemetry-stats-garbage"),
        "{error}"
    );
}
