//! What tracing costs: the same load against the same stack in several
//! telemetry modes, one after the other in one invocation, reported as
//! ratios against tracing off.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::receiver::Store;

/// One telemetry configuration of the whole stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Full,
    TenPercent,
    EndpointDown,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Off, Mode::Full, Mode::TenPercent, Mode::EndpointDown];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Off => "tracing off",
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
}

impl RouteResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// What one request sends.
#[derive(Debug, Clone)]
pub enum Request {
    Get(String),
    Post(String, String),
}

/// The route mix of the benchmark: valid orders of varying users and
/// products (the seed's shape), and user lookups.
pub fn order_request(i: usize) -> Request {
    let users = ["user123", "user456", "user789"];
    let (a, b) = if i.is_multiple_of(2) {
        ("prod1", "prod2")
    } else {
        ("prod2", "prod1")
    };
    let qty = 1 + i % 3;
    // 25.99 * qty + 15.50, in cents, printed exactly.
    let total = 2599 * qty as u64 + 1550;
    let body = format!(
        r#"{{"userId":"{}","items":[{{"productId":"{a}","quantity":{qty},"price":25.99}},{{"productId":"{b}","quantity":1,"price":15.50}}],"totalAmount":{}.{:02}}}"#,
        users[i % users.len()],
        total / 100,
        total % 100
    );
    Request::Post("/api/orders".into(), body)
}

pub fn user_request(i: usize) -> Request {
    let users = ["user123", "user456", "user789"];
    Request::Get(format!("/api/users/{}", users[i % users.len()]))
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
                let response = match make(i) {
                    Request::Get(path) => client.get(format!("{gateway}{path}")).send().await,
                    Request::Post(path, body) => {
                        client
                            .post(format!("{gateway}{path}"))
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                    }
                };
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
    })
}

/// Resident memory now and at its peak (kB), from /proc.
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Export figures a service logged when its telemetry shut down.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exported {
    pub exported: u64,
    pub lost: u64,
}

/// Reads the last telemetry shutdown line of a service's JSON log.
pub fn exported_from_log(log: &str) -> Option<Exported> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("telemetry shut down") || l.contains("telemetry shutdown"))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Exported {
        exported: v["spans_exported"].as_u64().unwrap_or(0),
        lost: v["spans_lost"].as_u64().unwrap_or(0),
    })
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
    /// Spans the receiver got during this mode.
    pub received: usize,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// The Markdown report: a table per route with ratios against tracing off,
/// then memory and spans.
pub fn report(results: &[ModeResult], machine: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks: what tracing costs this stack\n");
    let _ = writeln!(out, "Machine: {machine}\n\nRerun: `{command}`\n");
    // The first tracing-off run is the baseline; a repeat at the end shows
    // how much the machine drifted over the invocation.
    let base = results.iter().find(|r| r.mode == Mode::Off);
    let routes: Vec<&'static str> = results
        .first()
        .map(|r| r.routes.iter().map(|x| x.route).collect())
        .unwrap_or_default();
    for route in routes {
        let _ = writeln!(out, "## {route}\n");
        let _ = writeln!(
            out,
            "| mode | requests | failed | req/s | p50 ms | p99 ms | p999 ms | throughput vs off | p99 vs off |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let base_route = base.and_then(|b| b.routes.iter().find(|x| x.route == route));
        for result in results {
            let Some(r) = result.routes.iter().find(|x| x.route == route) else {
                continue;
            };
            let (thr, p99) = base_route.map_or((String::new(), String::new()), |b| {
                (
                    format!("{:.3}", r.throughput() / b.throughput()),
                    format!(
                        "{:.3}",
                        r.percentile(99.0).as_secs_f64() / b.percentile(99.0).as_secs_f64()
                    ),
                )
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {thr} | {p99} |",
                result.label,
                r.requests,
                r.failures,
                r.throughput(),
                ms(r.percentile(50.0)),
                ms(r.percentile(99.0)),
                ms(r.percentile(99.9)),
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "## Memory (RSS kB after warm-up -> end of run, peak)\n"
    );
    let _ = writeln!(out, "| mode | service | after warm-up | end | peak |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for result in results {
        for (service, start, end, peak) in &result.memory {
            let _ = writeln!(
                out,
                "| {} | {service} | {start} | {end} | {peak} |",
                result.label
            );
        }
    }
    let _ = writeln!(out, "\n## Spans\n");
    let _ = writeln!(
        out,
        "| mode | received by the OTLP receiver | exported (services' own count) | lost (counted, logged) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for result in results {
        let exported: u64 = result.exported.iter().map(|(_, e)| e.exported).sum();
        let lost: u64 = result.exported.iter().map(|(_, e)| e.lost).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {exported} | {lost} |",
            result.label, result.received
        );
    }
    out
}

/// Spans the store holds now (to difference per mode).
pub fn received(store: &Store) -> usize {
    store.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_orders_are_exact_and_vary() {
        for i in 0..6 {
            let Request::Post(_, body) = order_request(i) else {
                panic!("an order is a POST");
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let cents = |x: &serde_json::Value| (x.as_f64().unwrap() * 100.0).round() as i64;
            let sum: i64 = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| cents(&l["price"]) * l["quantity"].as_i64().unwrap())
                .sum();
            assert_eq!(sum, cents(&v["totalAmount"]), "{body}");
        }
        assert_ne!(
            format!("{:?}", order_request(0)),
            format!("{:?}", order_request(1))
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let r = RouteResult {
            route: "x",
            requests: 100,
            failures: 0,
            elapsed: Duration::from_secs(1),
            latencies: (1..=100).map(Duration::from_millis).collect(),
        };
        assert_eq!(r.percentile(50.0), Duration::from_millis(50));
        assert_eq!(r.percentile(99.0), Duration::from_millis(99));
        assert_eq!(r.percentile(99.9), Duration::from_millis(100));
        assert_eq!(r.throughput(), 100.0);
    }

    #[test]
    fn the_shutdown_line_gives_exported_and_lost() {
        let log = r#"{"message":"x"}
{"level":"WARN","message":"telemetry shut down; some spans were not exported","spans_ended":300,"spans_exported":0,"spans_lost":300}"#;
        let e = exported_from_log(log).unwrap();
        assert_eq!((e.exported, e.lost), (0, 300));
    }
}
