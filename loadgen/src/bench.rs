//! What tracing costs: the same load against the same stack in several
//! telemetry modes, one after the other in one invocation, reported as
//! ratios against tracing off.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::request::{Request, percentile};

/// The benchmark's own process in the figures: load generator, OTLP
/// receiver and Kafka mock.
pub const LOADGEN: &str = "loadgen";

/// One telemetry configuration of the whole stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// Telemetry on, nothing sampled: what the instrumentation costs by itself.
    AlwaysOff,
    TenPercent,
    Full,
    EndpointDown,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Off,
        Mode::AlwaysOff,
        Mode::TenPercent,
        Mode::Full,
        Mode::EndpointDown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Off => "tracing off",
            Mode::AlwaysOff => "always_off",
            Mode::Full => "100% sampled",
            Mode::TenPercent => "10% parent-based",
            Mode::EndpointDown => "100%, endpoint down",
        }
    }

    /// The services' environment for this mode; `receiver` is the OTLP
    /// endpoint that answers, `closed` one where nothing listens.
    pub fn env(self, receiver: &str, closed: &str) -> Vec<(String, String)> {
        let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        match self {
            Mode::Off => vec![kv("OTEL_SDK_DISABLED", "true")],
            Mode::AlwaysOff => vec![
                kv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver),
                kv("OTEL_TRACES_SAMPLER", "always_off"),
            ],
            Mode::Full => vec![
                kv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver),
                kv("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ],
            Mode::TenPercent => vec![
                kv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver),
                kv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                kv("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ],
            Mode::EndpointDown => vec![
                kv("OTEL_EXPORTER_OTLP_ENDPOINT", closed),
                kv("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ],
        }
    }
}

/// Latencies of one route under one mode.
#[derive(Debug, Clone)]
pub struct RouteResult {
    pub route: &'static str,
    pub requests: usize,
    pub failures: usize,
    pub elapsed: Duration,
    /// Sorted ascending.
    pub latencies: Vec<Duration>,
    /// CPU time (ms) each process used while this route ran; the
    /// benchmark's own process (load, OTLP receiver, Kafka mock) is [`LOADGEN`].
    pub cpu: Vec<(&'static str, u64)>,
}

impl RouteResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The four services' CPU time per request (ms): the receiver, the load
    /// generator and the Kafka mock ([`LOADGEN`]) are counted apart.
    pub fn services_cpu_per_request(&self) -> f64 {
        let ms: u64 = self
            .cpu
            .iter()
            .filter(|c| c.0 != LOADGEN)
            .map(|c| c.1)
            .sum();
        ms as f64 / self.requests.max(1) as f64
    }

    /// The benchmark process's CPU time per request (ms).
    pub fn loadgen_cpu_per_request(&self) -> f64 {
        let ms: u64 = self
            .cpu
            .iter()
            .filter(|c| c.0 == LOADGEN)
            .map(|c| c.1)
            .sum();
        ms as f64 / self.requests.max(1) as f64
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p).unwrap_or_default()
    }
}

/// Places one order and waits until the Kafka consumers have settled it
/// (`confirmed` or `rejected`). Until a consumer group has its partitions the
/// order flow's asynchronous half (reservation, confirmation: 12 of an order's
/// 31 spans) does not run, and a measurement would leave it out. Returns how
/// long it took.
pub async fn wait_for_consumers(gateway: &str, timeout: Duration) -> anyhow::Result<Duration> {
    use tracectl::stack::{SEED_ORDER, place_order, settled_status};
    let started = Instant::now();
    let placed = place_order(gateway, SEED_ORDER).await?;
    let id = placed.body["orderId"]
        .as_str()
        .with_context(|| format!("the order that checks the consumers got {}", placed.status))?;
    // Polled a second at a time so the wait shows progress; "" is no answer.
    while matches!(
        settled_status(gateway, id, Duration::from_secs(1))
            .await
            .as_str(),
        "pending" | ""
    ) {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the Kafka consumers did not settle an order within {timeout:?}; is the broker reachable?"
        );
        println!(
            "    waiting for the Kafka consumers to get their partitions: {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(started.elapsed())
}

/// Sends `count` requests made by `make` at `concurrency`, calling
/// `progress(done)` about every second. Bounded by `count`; each request by
/// the client timeout.
pub async fn drive(
    gateway: &str,
    route: &'static str,
    count: usize,
    concurrency: usize,
    make: fn(usize) -> Request,
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> anyhow::Result<RouteResult> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                progress(done.load(Ordering::Relaxed));
            }
        })
    };
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, next, done, failures) =
            (client.clone(), next.clone(), done.clone(), failures.clone());
        let gateway = gateway.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let sent = Instant::now();
                let response = make(i).send(&client, &gateway).await;
                let ok = match response {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        status.is_success()
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for worker in workers {
        latencies.extend(worker.await.context("a load worker panicked")?);
    }
    let elapsed = started.elapsed();
    reporter.abort();
    latencies.sort_unstable();
    Ok(RouteResult {
        route,
        requests: latencies.len(),
        failures: failures.load(Ordering::Relaxed),
        elapsed,
        latencies,
        cpu: Vec::new(),
    })
}

/// Export figures of one service: what its telemetry counted when it shut
/// down, from the file `TELEMETRY_STATS_FILE` named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    pub exported: u64,
    pub lost: u64,
}

impl From<tracing_common::ExportStats> for Exported {
    fn from(stats: tracing_common::ExportStats) -> Self {
        Exported {
            exported: stats.exported,
            lost: stats.lost(),
        }
    }
}

/// Reads the stats file a service's telemetry wrote at shutdown.
pub fn exported_from_file(path: &std::path::Path) -> std::io::Result<Exported> {
    tracing_common::ExportStats::read_file(path).map(Exported::from)
}

/// Figures of one mode.
#[derive(Debug, Clone)]
pub struct ModeResult {
    pub mode: Mode,
    /// The mode's label; the repeat of tracing off is told apart.
    pub label: String,
    pub routes: Vec<RouteResult>,
    /// Per service: RSS after warm-up, RSS at the end, peak (kB).
    pub memory: Vec<(&'static str, u64, u64, u64)>,
    pub exported: Vec<(&'static str, Exported)>,
    /// CPU time (ms) each process used during the measured load; the
    /// benchmark's own process (load, OTLP receiver, Kafka mock) is `tracectl`.
    pub cpu: Vec<(&'static str, u64)>,
    /// CPU time (ms) the hypervisor gave to other guests during the measured load.
    pub stolen_ms: u64,
    /// Spans the receiver got during this mode.
    pub received: usize,
}

/// One result per mode (in [`Mode::ALL`] order) from the runs of every
/// round: requests, failures and time added up, latencies pooled, memory the
/// highest seen, spans added up.
pub fn merge(runs: &[ModeResult]) -> Vec<ModeResult> {
    Mode::ALL
        .iter()
        .filter_map(|mode| {
            let of_mode: Vec<&ModeResult> = runs.iter().filter(|r| r.mode == *mode).collect();
            let first = of_mode.first()?;
            Some(ModeResult {
                mode: *mode,
                label: mode.label().to_owned(),
                routes: merge_routes(first, &of_mode),
                memory: merge_memory(first, &of_mode),
                exported: merge_exported(first, &of_mode),
                cpu: merge_cpu(first, &of_mode),
                stolen_ms: of_mode.iter().map(|r| r.stolen_ms).sum(),
                received: of_mode.iter().map(|r| r.received).sum(),
            })
        })
        .collect()
}

/// Each route of `first`: requests, failures and time added up over `of_mode`,
/// latencies pooled.
fn merge_routes(first: &ModeResult, of_mode: &[&ModeResult]) -> Vec<RouteResult> {
    first
        .routes
        .iter()
        .map(|route| {
            let same: Vec<&RouteResult> = of_mode
                .iter()
                .flat_map(|r| r.routes.iter().filter(|x| x.route == route.route))
                .collect();
            let mut latencies: Vec<Duration> = same
                .iter()
                .flat_map(|x| x.latencies.iter().copied())
                .collect();
            latencies.sort_unstable();
            RouteResult {
                route: route.route,
                requests: same.iter().map(|x| x.requests).sum(),
                failures: same.iter().map(|x| x.failures).sum(),
                elapsed: same.iter().map(|x| x.elapsed).sum(),
                latencies,
                cpu: route
                    .cpu
                    .iter()
                    .map(|(process, _)| {
                        let ms = same
                            .iter()
                            .flat_map(|x| x.cpu.iter().filter(|c| c.0 == *process))
                            .map(|c| c.1)
                            .sum();
                        (*process, ms)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Each service's memory figures: the highest of `of_mode`.
fn merge_memory(first: &ModeResult, of_mode: &[&ModeResult]) -> Vec<(&'static str, u64, u64, u64)> {
    first
        .memory
        .iter()
        .map(|(service, ..)| {
            let rows = of_mode
                .iter()
                .flat_map(|r| r.memory.iter().filter(|m| m.0 == *service));
            let (mut start, mut end, mut peak) = (0, 0, 0);
            for (_, s, e, p) in rows {
                start = start.max(*s);
                end = end.max(*e);
                peak = peak.max(*p);
            }
            (*service, start, end, peak)
        })
        .collect()
}

/// Each service's exported and lost spans, added up over `of_mode`.
fn merge_exported(first: &ModeResult, of_mode: &[&ModeResult]) -> Vec<(&'static str, Exported)> {
    first
        .exported
        .iter()
        .map(|(service, _)| {
            let mut sum = Exported::default();
            for r in of_mode {
                for (_, e) in r.exported.iter().filter(|x| x.0 == *service) {
                    sum.exported += e.exported;
                    sum.lost += e.lost;
                }
            }
            (*service, sum)
        })
        .collect()
}

/// Each process's CPU time, added up over `of_mode`.
fn merge_cpu(first: &ModeResult, of_mode: &[&ModeResult]) -> Vec<(&'static str, u64)> {
    first
        .cpu
        .iter()
        .map(|(process, _)| {
            let sum = of_mode
                .iter()
                .flat_map(|r| r.cpu.iter().filter(|c| c.0 == *process))
                .map(|c| c.1)
                .sum();
            (*process, sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{report, round_ratios};

    #[test]
    fn percentiles_use_nearest_rank() {
        let r = RouteResult {
            route: "x",
            requests: 100,
            failures: 0,
            elapsed: Duration::from_secs(1),
            latencies: (1..=100).map(Duration::from_millis).collect(),
            cpu: vec![("svc", 250), (LOADGEN, 50)],
        };
        assert_eq!(r.services_cpu_per_request(), 2.5);
        assert_eq!(r.loadgen_cpu_per_request(), 0.5);
        assert_eq!(r.percentile(50.0), Duration::from_millis(50));
        assert_eq!(r.percentile(99.0), Duration::from_millis(99));
        assert_eq!(r.percentile(99.9), Duration::from_millis(100));
        assert_eq!(r.throughput(), 100.0);
    }

    fn run(mode: Mode, requests: usize, secs: u64) -> ModeResult {
        run_with_cpu(mode, requests, secs, requests as u64)
    }

    fn run_with_cpu(mode: Mode, requests: usize, secs: u64, cpu_ms: u64) -> ModeResult {
        ModeResult {
            mode,
            label: mode.label().into(),
            routes: vec![RouteResult {
                route: "r",
                requests,
                failures: 0,
                elapsed: Duration::from_secs(secs),
                latencies: vec![Duration::from_millis(secs); requests],
                cpu: vec![("svc", cpu_ms), (LOADGEN, 7)],
            }],
            memory: vec![("svc", 10, 12, 15)],
            exported: vec![(
                "svc",
                Exported {
                    exported: requests as u64,
                    lost: 0,
                },
            )],
            cpu: vec![("svc", requests as u64)],
            stolen_ms: 0,
            received: requests,
        }
    }

    #[test]
    fn rounds_are_pooled_per_mode_and_ratioed_per_round() {
        // Round 1: off 100 req/s, full 90; round 2: off 50, full 50. The
        // services' CPU per request of full: 1.3 and 1.2 times off's.
        let runs = vec![
            run(Mode::Off, 100, 1),
            run(Mode::AlwaysOff, 100, 1),
            run_with_cpu(Mode::Full, 90, 1, 117),
            run(Mode::TenPercent, 100, 1),
            run(Mode::EndpointDown, 100, 1),
            run_with_cpu(Mode::Full, 100, 2, 120),
            run(Mode::AlwaysOff, 100, 2),
            run(Mode::TenPercent, 100, 2),
            run(Mode::EndpointDown, 100, 2),
            run(Mode::Off, 100, 2),
        ];
        let merged = merge(&runs);
        assert_eq!(merged.len(), 5);
        let full = merged.iter().find(|r| r.mode == Mode::Full).unwrap();
        assert_eq!(full.routes[0].requests, 190);
        assert_eq!(full.routes[0].elapsed, Duration::from_secs(3));
        assert_eq!(full.routes[0].latencies.len(), 190);
        assert_eq!(full.received, 190);
        assert_eq!(full.exported[0].1.exported, 190);
        let ratios = round_ratios(&runs, Mode::Full, "r");
        assert_eq!(ratios.len(), 2);
        assert!((ratios[0] - 0.9).abs() < 1e-9 && (ratios[1] - 1.0).abs() < 1e-9);
        let text = report(&merged, &runs, "m", "c");
        assert!(text.contains("| 100% sampled | 190 | 0 | 63 |"), "{text}");
        assert!(text.contains("0.90 / 1.00"), "{text}");
        assert!(
            text.contains(
                "| 100% sampled | r | 1.250 [1.200, 1.300] | 0.950 [0.900, 1.000] | 0.074 |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| always_off | r | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |"),
            "{text}"
        );
    }

    #[test]
    fn exported_and_lost_come_from_the_stats_file_not_the_log() {
        let path = std::env::temp_dir().join(format!("loadgen-stats-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"ended":300,"exported":120,"failed":80,"lost":180}"#,
        )
        .unwrap();
        let e = exported_from_file(&path);
        std::fs::write(
            &path,
            r#"{"level":"WARN","message":"telemetry shut down; some spans were not exported","spans_ended":300,"spans_exported":0,"spans_lost":300}"#,
        )
        .unwrap();
        let log_line = exported_from_file(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            e.unwrap(),
            Exported {
                exported: 120,
                lost: 180
            }
        );
        assert!(log_line.is_err(), "a log line is not a stats file");
    }
}
