use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracectl::check::{ORDER_TRACE, problems};
use tracectl::jaeger::Jaeger;
use tracectl::load::{self, LoadOptions, Mix, Until};
use tracectl::receiver::Receiver;
use tracectl::stack::{self, LocalStack, Ports, StackOptions};
use tracectl::waterfall;

#[derive(Parser)]
#[command(
    about = "Run the order flow locally and show its traces; read and verify traces in Jaeger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Kafka (embedded unless KAFKA_BROKERS is set), an OTLP receiver
    /// (unless OTEL_EXPORTER_OTLP_ENDPOINT is set) and the four services on
    /// the local Postgres, send the seed's order and print its trace.
    Run {
        /// Stay up for curl until Ctrl-C, printing each new trace.
        #[arg(long)]
        keep: bool,
        /// Postgres server, without a database name.
        #[arg(
            long,
            env = "POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres: String,
        /// Where the services' logs go.
        #[arg(long, default_value = "target/stack-logs")]
        log_dir: PathBuf,
    },
    /// Fetch one trace from Jaeger and print it as a waterfall.
    Show {
        trace_id: String,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// List a service's slowest recent traces above a duration.
    Slowest {
        #[arg(long)]
        service: String,
        /// Only traces at least this long, in milliseconds.
        #[arg(long, default_value_t = 100)]
        min_ms: u64,
        /// How far back to look, in minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// Measure what tracing costs: the same load in each telemetry mode
    /// (off, 100%, 10%, 100% with the endpoint down), side by side.
    Bench {
        /// Requests per route per mode.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Times each mode runs; the modes take turns, so drift of the
        /// machine weighs on all of them alike.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(
            long,
            env = "POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres: String,
        /// Where the report goes (Markdown).
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        #[arg(long, default_value = "target/bench-logs")]
        log_dir: PathBuf,
    },
    /// Send steady, mixed traffic to a running gateway (valid and invalid
    /// orders, order, user and stock lookups) so a tracing backend fills with
    /// realistic traces. Prints progress every second and a summary.
    Load {
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        gateway: String,
        /// Requests per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Stop after this many seconds...
        #[arg(long, default_value_t = 60, conflicts_with = "count")]
        duration: u64,
        /// ...or after this many requests.
        #[arg(long)]
        count: Option<u64>,
        /// Weights of each kind of request.
        #[arg(
            long,
            default_value = "orders=4,invalid=1,users=2,status=2,inventory=1"
        )]
        mix: String,
        /// At most this many requests waiting for an answer; requests due
        /// beyond it are counted as skipped.
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        /// Client timeout per request, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Check the telemetry path a service with this environment would use
    /// (the same OTEL_* variables): configuration, sampler, endpoint
    /// reachability, TLS, credentials and protocol, then send one test span
    /// named "doctor" and print its trace id. Exits 1 when something is wrong.
    Doctor,
    /// Post the seed's order to a running gateway, wait for its trace in
    /// Jaeger and check every service edge of the order flow.
    Verify {
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        gateway: String,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
        /// How long to wait for the whole trace, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            keep,
            postgres,
            log_dir,
        } => run(keep, postgres, log_dir).await,
        Command::Show { trace_id, jaeger } => {
            let trace = Jaeger::new(&jaeger)?
                .trace(&trace_id)
                .await?
                .with_context(|| format!("trace {trace_id} is not in Jaeger at {jaeger}"))?;
            print!("{}", waterfall::render(&trace));
            Ok(())
        }
        Command::Slowest {
            service,
            min_ms,
            minutes,
            limit,
            jaeger,
        } => {
            let traces = Jaeger::new(&jaeger)?
                .slowest(
                    &service,
                    Duration::from_millis(min_ms),
                    Duration::from_secs(minutes * 60),
                    limit,
                )
                .await?;
            if traces.is_empty() {
                println!("no trace of {service} over {min_ms} ms in the last {minutes} min");
            }
            for trace in traces {
                let root = trace.tree().first().map(|(_, s)| s.name.clone());
                println!(
                    "{}  {:>9.1} ms  {:>3} spans  {}",
                    trace.trace_id,
                    trace.duration_ns() as f64 / 1e6,
                    trace.spans.len(),
                    root.unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Doctor => {
            let config = tracing_common::TelemetryConfig::from_env("tracectl-doctor");
            println!(
                "tracectl doctor: checking the telemetry path of this environment's OTEL_* settings"
            );
            let report = tracectl::doctor::diagnose(config).await;
            print!("{}", report.render());
            if report.problems() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Verify {
            gateway,
            jaeger,
            timeout,
        } => verify(&gateway, &jaeger, Duration::from_secs(timeout)).await,
        Command::Bench {
            requests,
            concurrency,
            postgres,
            out,
            log_dir,
            rounds,
        } => bench(requests, concurrency, rounds, postgres, out, log_dir).await,
        Command::Load {
            gateway,
            rate,
            duration,
            count,
            mix,
            max_in_flight,
            timeout_ms,
        } => {
            let options = LoadOptions {
                gateway: gateway.trim_end_matches('/').to_owned(),
                rate,
                until: count.map_or(Until::Elapsed(Duration::from_secs(duration)), Until::Count),
                mix: Mix::parse(&mix).map_err(|e| anyhow::anyhow!("--mix: {e}"))?,
                max_in_flight,
                timeout: Duration::from_millis(timeout_ms),
            };
            step(&format!(
                "sending {rate} requests/s to {} ({})",
                options.gateway,
                match options.until {
                    Until::Count(n) => format!("{n} requests"),
                    Until::Elapsed(d) => format!("for {} s", d.as_secs()),
                }
            ));
            let report = load::run(&options, |r, in_flight| {
                println!("{}", r.progress(in_flight));
            })
            .await?;
            print!("{}", report.summary());
            if report.sent() > 0 && report.kinds.values().all(|k| k.sent == k.transport_error) {
                bail!(
                    "no request was answered: is the gateway at {} up?",
                    options.gateway
                );
            }
            Ok(())
        }
    }
}

fn step(message: &str) {
    println!("==> {message}");
}

async fn run(keep: bool, postgres: String, log_dir: PathBuf) -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the binary's directory")?
        .to_path_buf();

    // Kafka: a real broker if given, else librdkafka's mock cluster in this process.
    let mut _mock = None;
    let kafka_brokers = match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => {
            step(&format!("using the Kafka broker at {brokers}"));
            brokers
        }
        _ => {
            let cluster = rdkafka::mocking::MockCluster::new(1)
                .context("starting the embedded Kafka cluster")?;
            for topic in ["order-events", "inventory-events"] {
                cluster.create_topic(topic, 3, 1)?;
            }
            let brokers = cluster.bootstrap_servers();
            step(&format!("embedded Kafka-protocol cluster on {brokers}"));
            _mock = Some(cluster);
            brokers
        }
    };

    // Spans: to the given collector, or to a receiver here that prints them.
    let (receiver, otlp_endpoint, otlp_protocol) =
        match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Ok(endpoint) if !endpoint.trim().is_empty() => {
                let protocol =
                    std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|_| "grpc".into());
                step(&format!("spans go to {endpoint} ({protocol})"));
                (None, endpoint, protocol)
            }
            _ => {
                let receiver = Receiver::start("127.0.0.1:4318")
                    .await
                    .or(Receiver::start("127.0.0.1:0").await)
                    .context("starting the OTLP receiver")?;
                step(&format!("OTLP receiver on {}", receiver.endpoint()));
                let endpoint = receiver.endpoint();
                (Some(receiver), endpoint, "http/protobuf".to_owned())
            }
        };

    let options = StackOptions {
        bin_dir,
        postgres,
        databases: ["users".into(), "orders".into(), "inventory".into()],
        kafka_brokers,
        otlp_endpoint,
        otlp_protocol,
        ports: Ports::DEFAULT,
        log_dir: log_dir.clone(),
        extra_env: Vec::new(),
        service_env: Vec::new(),
    };
    step(&format!(
        "starting the four services (logs in {})",
        log_dir.display()
    ));
    let mut services = LocalStack::start(&options).await?;
    let ready = services
        .wait_ready(Duration::from_secs(90), |name, after| {
            println!("    {name} ready after {:.1} s", after.as_secs_f64());
        })
        .await;
    if let Err(e) = ready {
        services.stop(Duration::from_secs(5)).await;
        return Err(e);
    }
    let outcome = demo(&services, receiver.as_ref(), keep).await;
    step("stopping the services");
    let killed = services.stop(Duration::from_secs(10)).await;
    if !killed.is_empty() {
        println!("    had to kill: {}", killed.join(", "));
    }
    outcome
}

async fn demo(
    services: &LocalStack,
    receiver: Option<&Receiver>,
    keep: bool,
) -> anyhow::Result<()> {
    let gateway = services.gateway_url();
    step(&format!("POST {gateway}/api/orders (the seed's order)"));
    let placed = stack::place_order(&gateway, stack::SEED_ORDER).await?;
    println!("    {} {}", placed.status, placed.body);
    let trace_id = placed
        .trace_id
        .clone()
        .context("the gateway answered without a traceparent header")?;
    if let Some(order_id) = placed.body["orderId"].as_str() {
        let status = stack::settled_status(&gateway, order_id, Duration::from_secs(30)).await;
        println!("    GET /api/orders/{order_id} -> {status}");
    }
    match receiver {
        Some(receiver) => {
            let trace = receiver
                .store
                .wait_quiet(
                    &trace_id,
                    Duration::from_millis(1500),
                    Duration::from_secs(20),
                )
                .await;
            println!();
            print!("{}", waterfall::render(&trace));
            let missing = problems(&trace, ORDER_TRACE);
            if !missing.is_empty() && placed.status == 201 {
                println!("\n    not yet as expected:");
                for p in &missing {
                    println!("    - {p}");
                }
            }
        }
        None => println!("    trace id {trace_id}: look it up in your tracing backend"),
    }
    if !keep {
        return Ok(());
    }
    println!(
        "\nThe stack stays up: try\n  curl -i -X POST {gateway}/api/orders -H 'Content-Type: application/json' -d '{}'\nCtrl-C stops everything.",
        stack::SEED_ORDER
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let Some(receiver) = receiver else {
        service_runtime::lifecycle::shutdown_signal().await;
        return Ok(());
    };
    let mut shown: Vec<String> = receiver.store.trace_ids();
    let stop = service_runtime::lifecycle::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for id in receiver.store.trace_ids() {
            if shown.contains(&id) {
                continue;
            }
            shown.push(id.clone());
            let trace = receiver
                .store
                .wait_quiet(&id, Duration::from_secs(2), Duration::from_secs(20))
                .await;
            println!();
            print!("{}", waterfall::render(&trace));
        }
    }
}

async fn verify(gateway: &str, jaeger: &str, timeout: Duration) -> anyhow::Result<()> {
    let jaeger_client = Jaeger::new(jaeger)?;
    step(&format!("POST {gateway}/api/orders (the seed's order)"));
    let placed = stack::place_order(gateway, stack::SEED_ORDER).await?;
    println!("    {} {}", placed.status, placed.body);
    if placed.status != 201 {
        bail!(
            "the gateway refused the seed's order with {}",
            placed.status
        );
    }
    let trace_id = placed
        .trace_id
        .context("the gateway answered without a traceparent header")?;
    step(&format!(
        "waiting for trace {trace_id} in Jaeger ({jaeger}/trace/{trace_id})"
    ));
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    loop {
        if let Some(trace) = jaeger_client.trace(&trace_id).await? {
            last = problems(&trace, ORDER_TRACE);
            if last.is_empty() {
                print!("{}", waterfall::render(&trace));
                step(&format!(
                    "verified: {} spans, every edge of the order flow present",
                    trace.spans.len()
                ));
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if last.is_empty() {
        bail!("trace {trace_id} did not reach Jaeger within {timeout:?}");
    }
    bail!(
        "trace {trace_id} is incomplete after {timeout:?}:\n  - {}",
        last.join("\n  - ")
    )
}

async fn bench(
    requests: usize,
    concurrency: usize,
    rounds: usize,
    postgres: String,
    out: PathBuf,
    log_dir: PathBuf,
) -> anyhow::Result<()> {
    use tracectl::bench::{Mode, ModeResult, merge};
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the binary's directory")?
        .to_path_buf();
    if !bin_dir.ends_with("release") {
        println!(
            "    note: {} is not a release build; figures will not mean much",
            bin_dir.display()
        );
    }
    let external_brokers = std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let receiver = Receiver::start_counting("127.0.0.1:0").await?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    // Rounds interleave the modes (rotating which goes first), so a machine
    // that slows down or speeds up during the invocation weighs on every mode
    // alike; each run starts on empty databases.
    let rounds = rounds.max(1);
    let mut runs: Vec<ModeResult> = Vec::new();
    for round in 0..rounds {
        for k in 0..Mode::ALL.len() {
            let mode = Mode::ALL[(k + round) % Mode::ALL.len()];
            step(&format!(
                "round {}/{rounds}, mode: {}",
                round + 1,
                mode.label()
            ));
            // A fresh mock cluster per run, like the databases: consumer
            // groups left behind by the previous run's services would hold
            // up the next run's group for tens of seconds.
            let mut _mock = None;
            let kafka_brokers = match &external_brokers {
                Some(b) => b.clone(),
                None => {
                    let cluster = rdkafka::mocking::MockCluster::new(1)?;
                    for topic in ["order-events", "inventory-events"] {
                        cluster.create_topic(topic, 3, 1)?;
                    }
                    let b = cluster.bootstrap_servers();
                    _mock = Some(cluster);
                    b
                }
            };
            let run = BenchRun {
                mode,
                round,
                requests,
                concurrency,
                bin_dir: &bin_dir,
                postgres: &postgres,
                kafka_brokers: &kafka_brokers,
                receiver: &receiver,
                closed: &closed,
                log_dir: &log_dir,
            };
            runs.push(run.execute().await?);
        }
    }
    let results = merge(&runs);
    let machine = machine_description();
    let command = format!(
        "scripts/bench.sh --requests {requests} --concurrency {concurrency} --rounds {rounds}"
    );
    let text = tracectl::bench::report(&results, &runs, &machine, &command);
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    println!("\n{text}");
    step(&format!("written to {}", out.display()));
    Ok(())
}

/// One mode of one round: fresh databases, the stack started with the
/// mode's telemetry, warm-up, the measured load, stop, figures.
struct BenchRun<'a> {
    mode: tracectl::bench::Mode,
    round: usize,
    requests: usize,
    concurrency: usize,
    bin_dir: &'a std::path::Path,
    postgres: &'a str,
    kafka_brokers: &'a str,
    receiver: &'a Receiver,
    closed: &'a str,
    log_dir: &'a std::path::Path,
}

impl BenchRun<'_> {
    async fn execute(&self) -> anyhow::Result<tracectl::bench::ModeResult> {
        use tracectl::bench::{self, ModeResult};
        let label = self.mode.label();
        let mode_logs = self.log_dir.join(format!(
            "{}-{}",
            self.round + 1,
            label.replace([' ', '%', ',', '(', ')'], "_")
        ));
        let databases = ["users", "orders", "inventory"].map(|db| format!("bench_{db}_run"));
        for db in &databases {
            stack::drop_database(self.postgres, db).await?;
        }
        let options = StackOptions {
            bin_dir: self.bin_dir.to_path_buf(),
            postgres: self.postgres.to_owned(),
            databases: databases.clone(),
            kafka_brokers: self.kafka_brokers.to_owned(),
            otlp_endpoint: self.receiver.endpoint(),
            otlp_protocol: "http/protobuf".into(),
            ports: Ports::EPHEMERAL,
            log_dir: mode_logs,
            service_env: Vec::new(),
            extra_env: {
                let mut env = self.mode.env(&self.receiver.endpoint(), self.closed);
                env.push((
                    "RUST_LOG".into(),
                    // The services' own crates at info for the `listening`
                    // line that names each one's port.
                    "warn,tracing_common::telemetry=info,user_service=info,order_service=info,inventory_service=info,api_gateway=info".into(),
                ));
                // The SDK's default batch delay; the runner's 200 ms is for demos.
                env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "5000".into()));
                env
            },
        };
        let mut services = LocalStack::start(&options).await?;
        if let Err(e) = services
            .wait_ready(Duration::from_secs(90), |_, _| {})
            .await
        {
            services.stop(Duration::from_secs(5)).await;
            return Err(e);
        }
        let gateway = services.gateway_url();
        let received_before = self.receiver.store.len();
        let consumers = match bench::wait_for_consumers(&gateway, Duration::from_secs(60)).await {
            Ok(took) => took,
            Err(e) => {
                services.stop(Duration::from_secs(5)).await;
                return Err(e);
            }
        };
        println!(
            "    Kafka consumers settled an order after {:.1} s",
            consumers.as_secs_f64()
        );
        // Warm-up: connections, pools, caches.
        for make in [
            bench::order_request as fn(usize) -> bench::Request,
            bench::user_request,
        ] {
            bench::drive(&gateway, "warm-up", 200, self.concurrency, make, |_| {}).await?;
        }
        let pids = services.pids();
        let after_warmup: Vec<_> = pids
            .iter()
            .map(|(name, pid)| (*name, bench::memory_kb(*pid).unwrap_or_default()))
            .collect();
        let cpu_now = || -> Vec<(&'static str, u64)> {
            pids.iter()
                .map(|(name, pid)| (*name, bench::cpu_ms(Some(*pid)).unwrap_or_default()))
                .chain([("tracectl", bench::cpu_ms(None).unwrap_or_default())])
                .collect()
        };
        let cpu_before = cpu_now();
        let stolen_before = bench::stolen_ms().unwrap_or_default();
        let mut routes = Vec::new();
        for (route, make) in [
            (
                "POST /api/orders",
                bench::order_request as fn(usize) -> bench::Request,
            ),
            ("GET /api/users/{id}", bench::user_request),
        ] {
            let total = self.requests;
            let r = bench::drive(
                &gateway,
                route,
                self.requests,
                self.concurrency,
                make,
                move |done| println!("    {route}: {done}/{total}"),
            )
            .await?;
            println!(
                "    {route}: {} requests, {} failed, {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
                r.requests,
                r.failures,
                r.throughput(),
                r.percentile(50.0).as_secs_f64() * 1e3,
                r.percentile(99.0).as_secs_f64() * 1e3
            );
            routes.push(r);
        }
        let stolen_ms = bench::stolen_ms()
            .unwrap_or_default()
            .saturating_sub(stolen_before);
        let cpu = cpu_now()
            .into_iter()
            .zip(&cpu_before)
            .map(|((name, after), (_, before))| (name, after.saturating_sub(*before)))
            .collect();
        let memory = pids
            .iter()
            .zip(&after_warmup)
            .map(|((name, pid), (_, (start, _)))| {
                let (end, peak) = bench::memory_kb(*pid).unwrap_or_default();
                (*name, *start, end, peak)
            })
            .collect();
        let logs: Vec<(&'static str, PathBuf)> = services
            .logs()
            .into_iter()
            .map(|(n, p)| (n, p.to_path_buf()))
            .collect();
        services.stop(Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exported = logs
            .iter()
            .map(|(name, path)| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                (*name, bench::exported_from_log(&text).unwrap_or_default())
            })
            .collect();
        for db in &databases {
            stack::drop_database(self.postgres, db).await?;
        }
        Ok(ModeResult {
            mode: self.mode,
            label: label.to_owned(),
            routes,
            memory,
            exported,
            cpu,
            stolen_ms,
            received: self.receiver.store.len() - received_before,
        })
    }
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    format!(
        "{cpu}, {cores} cores, {mem_gib} GiB; services, load generator, Kafka mock and Postgres on the same machine"
    )
}
