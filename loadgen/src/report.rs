//! The benchmark's Markdown report.

use std::fmt::Write as _;
use std::time::Duration;

use crate::bench::{LOADGEN, Mode, ModeResult, RouteResult};
use crate::stats::{Interval, median_interval};

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Throughput of `mode` against tracing off, round by round, in run order
/// (`runs` holds each round's modes consecutively).
pub(crate) fn round_ratios(runs: &[ModeResult], mode: Mode, route: &str) -> Vec<f64> {
    round_figure_ratios(runs, mode, route, RouteResult::throughput)
}

/// `figure` of `mode` over `figure` of tracing off in the same round, for
/// each round.
fn round_figure_ratios(
    runs: &[ModeResult],
    mode: Mode,
    route: &str,
    figure: fn(&RouteResult) -> f64,
) -> Vec<f64> {
    runs.chunks(Mode::ALL.len())
        .filter_map(|round| {
            let of = |m: Mode| {
                round
                    .iter()
                    .find(|r| r.mode == m)?
                    .routes
                    .iter()
                    .find(|x| x.route == route)
                    .map(figure)
            };
            Some(of(mode)? / of(Mode::Off)?)
        })
        .collect()
}

fn interval(i: Option<Interval>) -> String {
    i.map_or("–".into(), |i| {
        format!("{:.3} [{:.3}, {:.3}]", i.median, i.low, i.high)
    })
}

/// Per mode and route: the services' CPU per request and the throughput
/// against tracing off, as the median of the per-round ratios with its
/// interval; the benchmark process's CPU per request apart.
fn summary_table(
    out: &mut String,
    results: &[ModeResult],
    runs: &[ModeResult],
    routes: &[&'static str],
) {
    let rounds = runs.len() / Mode::ALL.len();
    let coverage = median_interval(&vec![1.0; rounds]).map_or(0.0, |i| i.coverage);
    let _ = writeln!(
        out,
        "## Summary: what tracing costs against tracing off\n\n\
         Each cell is the median over the {rounds} rounds of that round's ratio against tracing off in the same round, \
         with a distribution-free {:.1}% interval for the median (order statistics). \
         \"services' CPU\" is the four services' own CPU time per request (user + system); the OTLP receiver, \
         the load generator and the Kafka mock run in `{LOADGEN}` and are reported apart, as ms per request.\n",
        coverage * 100.0
    );
    let _ = writeln!(
        out,
        "| mode | route | services' CPU per request vs off | throughput vs off | {LOADGEN} CPU ms per request |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for result in results.iter().filter(|r| r.mode != Mode::Off) {
        for route in routes {
            let cpu = median_interval(&round_figure_ratios(
                runs,
                result.mode,
                route,
                RouteResult::services_cpu_per_request,
            ));
            let thr = median_interval(&round_ratios(runs, result.mode, route));
            let loadgen = result
                .routes
                .iter()
                .find(|r| r.route == *route)
                .map_or(0.0, RouteResult::loadgen_cpu_per_request);
            let _ = writeln!(
                out,
                "| {} | {route} | {} | {} | {loadgen:.3} |",
                result.label,
                interval(cpu),
                interval(thr)
            );
        }
    }
    let _ = writeln!(out);
}

/// The Markdown report: a table per route with ratios against tracing off
/// (pooled over the rounds, and round by round), then CPU, memory and spans.
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
    let routes: Vec<&'static str> = results
        .first()
        .map(|r| r.routes.iter().map(|x| x.route).collect())
        .unwrap_or_default();
    summary_table(&mut out, results, runs, &routes);
    for route in routes {
        route_table(&mut out, results, runs, route);
    }
    cpu_table(&mut out, results);
    memory_table(&mut out, results);
    spans_table(&mut out, results);
    out
}

/// One route's latencies and throughput per mode, with ratios against tracing off.
fn route_table(out: &mut String, results: &[ModeResult], runs: &[ModeResult], route: &str) {
    let _ = writeln!(out, "## {route}\n");
    let _ = writeln!(
        out,
        "| mode | requests | failed | req/s | p50 ms | p99 ms | p999 ms | throughput vs off | p99 vs off | throughput vs off, per round |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let base_route = results
        .iter()
        .find(|r| r.mode == Mode::Off)
        .and_then(|b| b.routes.iter().find(|x| x.route == route));
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

/// CPU time per request of each process, and the share stolen by the hypervisor.
fn cpu_table(out: &mut String, results: &[ModeResult]) {
    let _ = writeln!(
        out,
        "## CPU time per request (ms, both routes; user + system)\n\nWhere tracing's cost lands: each process's CPU time during the measured load divided by the requests sent. \
         `{LOADGEN}` is the benchmark itself: load generator, OTLP receiver and the Kafka mock. \
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
}

/// Each service's resident memory per mode.
fn memory_table(out: &mut String, results: &[ModeResult]) {
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
}

/// Spans received by the receiver against the services' own export counts.
fn spans_table(out: &mut String, results: &[ModeResult]) {
    let _ = writeln!(out, "\n## Spans (all rounds)\n");
    let _ = writeln!(
        out,
        "| mode | received by the OTLP receiver | exported (services' own count) | lost (services' own count) |"
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
}
