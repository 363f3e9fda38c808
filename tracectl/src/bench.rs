//! What tracing costs: the same load against the same stack in several
//! telemetry modes, one after the other in one invocation, reported as
//! ratios against tracing off.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

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
        percentile(&self.latencies, p).unwrap_or_default()
    }
}

/// The nearest-rank `p`th percentile of `sorted` (ascending); None if empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// What one request sends.
#[derive(Debug, Clone)]
pub enum Request {
    Get(String),
    Post(String, String),
}

impl Request {
    /// Sends it to `gateway` (POST bodies as JSON).
    pub async fn send(
        self,
        client: &reqwest::Client,
        gateway: &str,
    ) -> reqwest::Result<reqwest::Response> {
        match self {
            Request::Get(path) => client.get(format!("{gateway}{path}")).send().await,
            Request::Post(path, body) => {
                client
                    .post(format!("{gateway}{path}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
            }
        }
    }
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

/// Places one order and waits until the Kafka consumers have settled it
/// (`confirmed` or `rejected`). Until a consumer group has its partitions the
/// order flow's asynchronous half (reservation, confirmation: 12 of an order's
/// 31 spans) does not run, and a measurement would leave it out. Returns how
/// long it took.
pub async fn wait_for_consumers(gateway: &str, timeout: Duration) -> anyhow::Result<Duration> {
    use crate::stack::{SEED_ORDER, place_order, settled_status};
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

/// CPU time (user + system, ms) a process has used so far, from
/// /proc/<pid>/stat; `None` for `pid` means this process.
pub fn cpu_ms(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks * 10)
}

/// CPU time (ms, all cores together) the hypervisor has given to other
/// guests so far: the `steal` column of /proc/stat, 0 on bare metal. Time
/// stolen during a mode slows it for reasons that have nothing to do with
/// tracing, so the report shows it next to the figures it distorts.
pub fn stolen_ms() -> Option<u64> {
    steal_ticks(&std::fs::read_to_string("/proc/stat").ok()?).map(|t| t * 10)
}

fn steal_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
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
    /// CPU time (ms) each process used during the measured load; the
    /// benchmark's own process (load, OTLP receiver, Kafka mock) is `tracectl`.
    pub cpu: Vec<(&'static str, u64)>,
    /// CPU time (ms) the hypervisor gave to other guests during the measured load.
    pub stolen_ms: u64,
    /// Spans the receiver got during this mode.
    pub received: usize,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
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
            let routes = first
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
                    }
                })
                .collect();
            let memory = first
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
                .collect();
            let exported = first
                .exported
                .iter()
                .map(|(service, _)| {
                    let mut sum = Exported::default();
                    for r in &of_mode {
                        for (_, e) in r.exported.iter().filter(|x| x.0 == *service) {
                            sum.exported += e.exported;
                            sum.lost += e.lost;
                        }
                    }
                    (*service, sum)
                })
                .collect();
            let cpu = first
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
                .collect();
            Some(ModeResult {
                mode: *mode,
                label: mode.label().to_owned(),
                routes,
                memory,
                exported,
                cpu,
                stolen_ms: of_mode.iter().map(|r| r.stolen_ms).sum(),
                received: of_mode.iter().map(|r| r.received).sum(),
            })
        })
        .collect()
}

/// Throughput of `mode` against tracing off, round by round, in run order
/// (`runs` holds each round's modes consecutively).
fn round_ratios(runs: &[ModeResult], mode: Mode, route: &str) -> Vec<f64> {
    let per_round = Mode::ALL.len();
    runs.chunks(per_round)
        .filter_map(|round| {
            let thr = |m: Mode| {
                round
                    .iter()
                    .find(|r| r.mode == m)?
                    .routes
                    .iter()
                    .find(|x| x.route == route)
                    .map(RouteResult::throughput)
            };
            Some(thr(mode)? / thr(Mode::Off)?)
        })
        .collect()
}

/// The Markdown report: a table per route with ratios against tracing off
/// (pooled over the rounds, and round by round), then memory and spans.
pub fn report(results: &[ModeResult], runs: &[ModeResult], machine: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks: what tracing costs this stack\n");
    let rounds = runs.len() / Mode::ALL.len().max(1);
    let _ = writeln!(
        out,
        "Machine: {machine}\n\nRerun: `{command}`\n\n{rounds} rounds; in each, every mode runs once on a freshly started stack with empty databases, \
         the modes taking turns to go first. Figures pool the rounds; the last column gives each round's own throughput ratio, \
         which shows how much of a difference is noise.\n"
    );
    let base = results.iter().find(|r| r.mode == Mode::Off);
    let routes: Vec<&'static str> = results
        .first()
        .map(|r| r.routes.iter().map(|x| x.route).collect())
        .unwrap_or_default();
    for route in routes {
        let _ = writeln!(out, "## {route}\n");
        let _ = writeln!(
            out,
            "| mode | requests | failed | req/s | p50 ms | p99 ms | p999 ms | throughput vs off | p99 vs off | throughput vs off, per round |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
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
            let per_round = round_ratios(runs, result.mode, route)
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" / ");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {thr} | {p99} | {per_round} |",
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
        "## CPU time per request (ms, both routes; user + system)\n\nWhere tracing's cost lands: each process's CPU time during the measured load divided by the requests sent. \
         `tracectl` is the benchmark itself: load generator, OTLP receiver and the Kafka mock. \
         The last column is the share of the machine's CPU the hypervisor gave to other guests while the mode ran \
         (the `steal` of /proc/stat): a mode that lost more of it ran slower for reasons that are not tracing.\n"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let processes: Vec<&'static str> = results
        .first()
        .map(|r| r.cpu.iter().map(|c| c.0).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "| mode | {} | total | CPU stolen |",
        processes.join(" | ")
    );
    let _ = writeln!(out, "|---|{}---:|---:|", "---:|".repeat(processes.len()));
    for result in results {
        let requests: usize = result.routes.iter().map(|r| r.requests).sum();
        let per = |ms: u64| ms as f64 / requests.max(1) as f64;
        let cells: Vec<String> = result
            .cpu
            .iter()
            .map(|c| format!("{:.3}", per(c.1)))
            .collect();
        let total: u64 = result.cpu.iter().map(|c| c.1).sum();
        let wall_ms: f64 = result
            .routes
            .iter()
            .map(|r| r.elapsed.as_secs_f64() * 1e3)
            .sum();
        let stolen = 100.0 * result.stolen_ms as f64 / (wall_ms * cores as f64).max(1.0);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {stolen:.1}% |",
            result.label,
            cells.join(" | "),
            per(total)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "## Memory (RSS kB after warm-up -> end of run, peak; highest of the rounds)\n"
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
    let _ = writeln!(out, "\n## Spans (all rounds)\n");
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

#[cfg(test)]
mod tests {

    #[test]
    fn steal_is_the_eighth_figure_of_the_all_cpus_line() {
        let stat = "cpu  218889 0 31019 144831 2067 0 8759 7088 0 0\ncpu0 1 2 3 4 5 6 7 99 0 0\n";
        assert_eq!(steal_ticks(stat), Some(7088));
        assert_eq!(steal_ticks("cpu0 1 2 3\n"), None);
    }

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

    fn run(mode: Mode, requests: usize, secs: u64) -> ModeResult {
        ModeResult {
            mode,
            label: mode.label().into(),
            routes: vec![RouteResult {
                route: "r",
                requests,
                failures: 0,
                elapsed: Duration::from_secs(secs),
                latencies: vec![Duration::from_millis(secs); requests],
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
        // Round 1: off 100 req/s, full 90; round 2: off 50, full 50.
        let runs = vec![
            run(Mode::Off, 100, 1),
            run(Mode::Full, 90, 1),
            run(Mode::TenPercent, 100, 1),
            run(Mode::EndpointDown, 100, 1),
            run(Mode::Full, 100, 2),
            run(Mode::TenPercent, 100, 2),
            run(Mode::EndpointDown, 100, 2),
            run(Mode::Off, 100, 2),
        ];
        let merged = merge(&runs);
        assert_eq!(merged.len(), 4);
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
    }

    #[test]
    fn the_shutdown_line_gives_exported_and_lost() {
        let log = r#"{"message":"x"}
{"level":"WARN","message":"telemetry shut down; some spans were not exported","spans_ended":300,"spans_exported":0,"spans_lost":300}"#;
        let e = exported_from_log(log).unwrap();
        assert_eq!((e.exported, e.lost), (0, 300));
    }
}
