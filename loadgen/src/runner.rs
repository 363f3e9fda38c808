//! The benchmark's runs: each telemetry mode of each round on a freshly
//! started stack (tracectl's runner), the load driven through it, the
//! figures collected, and the report written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tracectl::receiver::Receiver;
use tracectl::stack::{self, LocalStack, Ports, StackOptions};
use tracing_common::config::STATS_FILE_VARIABLE;

use crate::bench::{self, Exported, LOADGEN, Mode, ModeResult, RouteResult};
use crate::procfs;
use crate::request::{self, Request};
use crate::step;

/// What `loadgen bench` was asked for (its command-line options).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Requests per route per mode and round.
    #[arg(long, default_value_t = 3000)]
    pub requests: usize,
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Times each mode runs; the modes take turns, so drift of the
    /// machine weighs on all of them alike.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Postgres server, without a database name.
    #[arg(
        long,
        env = "POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// Where the report goes (Markdown).
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Where each service's log and stats file go.
    #[arg(long, default_value = "target/bench-logs")]
    pub log_dir: PathBuf,
    /// Requests per service and mode for the instruction counts under
    /// callgrind (`loadgen instructions`) added to the report; 0 leaves them out.
    #[arg(long, default_value_t = 300)]
    pub instruction_requests: usize,
}

/// Runs every mode `options.rounds` times, writes the report to
/// `options.out` and prints it.
pub async fn bench(options: &BenchOptions) -> anyhow::Result<()> {
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
    let receiver = Receiver::start_counting("127.0.0.1:0").await?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    let rounds = options.rounds.max(1);
    let runs = run_rounds(options, rounds, &bin_dir, &receiver, &closed).await?;
    let results = bench::merge(&runs);
    let external = std::env::var("KAFKA_BROKERS").is_ok_and(|b| !b.trim().is_empty());
    let command = format!(
        "scripts/bench.sh{} --requests {} --concurrency {} --rounds {rounds} --instruction-requests {}",
        if external { " --apache-kafka" } else { "" },
        options.requests,
        options.concurrency,
        options.instruction_requests
    );
    let kafka = if external {
        "a broker outside the benchmark's process (KAFKA_BROKERS; `--apache-kafka` starts Apache Kafka)"
    } else {
        "librdkafka's mock cluster, inside the benchmark's process"
    };
    let machine = format!("{}\n\nKafka: {kafka}", machine_description());
    let mut text = crate::report::report(&results, &runs, &machine, &command);
    if options.instruction_requests > 0 {
        let counts = crate::instructions::count_all(&crate::instructions::InstructionOptions {
            requests: options.instruction_requests,
            postgres: options.postgres.clone(),
            out: PathBuf::new(),
            log_dir: options.log_dir.join("instructions"),
            service: None,
        })
        .await?;
        text.push_str("\n## Instructions per request\n\n");
        text.push_str(&crate::instructions::table(
            &counts,
            options.instruction_requests,
        ));
    }
    std::fs::write(&options.out, &text)
        .with_context(|| format!("writing {}", options.out.display()))?;
    println!("\n{text}");
    step(&format!("written to {}", options.out.display()));
    Ok(())
}

/// Rounds interleave the modes (rotating which goes first), so a machine
/// that slows down or speeds up during the invocation weighs on every mode
/// alike; each run starts on empty databases.
async fn run_rounds(
    options: &BenchOptions,
    rounds: usize,
    bin_dir: &Path,
    receiver: &Receiver,
    closed: &str,
) -> anyhow::Result<Vec<ModeResult>> {
    let external_brokers = std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty());
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
                    let cluster = tracectl::stack::mock_kafka()?;
                    let b = cluster.bootstrap_servers();
                    _mock = Some(cluster);
                    b
                }
            };
            let run = BenchRun {
                mode,
                round,
                requests: options.requests,
                concurrency: options.concurrency,
                bin_dir,
                postgres: &options.postgres,
                kafka_brokers: &kafka_brokers,
                receiver,
                closed,
                log_dir: &options.log_dir,
            };
            runs.push(run.execute().await?);
        }
    }
    Ok(runs)
}

/// One mode of one round: fresh databases, the stack started with the
/// mode's telemetry, warm-up, the measured load, stop, figures.
struct BenchRun<'a> {
    mode: Mode,
    round: usize,
    requests: usize,
    concurrency: usize,
    bin_dir: &'a Path,
    postgres: &'a str,
    kafka_brokers: &'a str,
    receiver: &'a Receiver,
    closed: &'a str,
    log_dir: &'a Path,
}

/// What the measured load cost: CPU per process, memory per service, time
/// stolen by the hypervisor.
struct Costs {
    cpu: Vec<(&'static str, u64)>,
    memory: Vec<(&'static str, u64, u64, u64)>,
    stolen_ms: u64,
}

const DATABASES: [&str; 3] = ["bench_users_run", "bench_orders_run", "bench_inventory_run"];

impl BenchRun<'_> {
    async fn execute(&self) -> anyhow::Result<ModeResult> {
        for db in DATABASES {
            stack::drop_database(self.postgres, db).await?;
        }
        // A previous invocation's figures must not pass for this run's.
        for service in stack::SERVICES {
            let _ = std::fs::remove_file(self.stats_file(service));
        }
        let mut services = LocalStack::start(&self.stack_options()).await?;
        if let Err(e) = services
            .wait_ready(Duration::from_secs(90), |_, _| {})
            .await
        {
            services.stop(Duration::from_secs(5)).await;
            return Err(e);
        }
        let received_before = self.receiver.store.len();
        let measured = self.measure(&services).await;
        services.stop(Duration::from_secs(15)).await;
        let (routes, costs) = measured?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exported = self.exported();
        for db in DATABASES {
            stack::drop_database(self.postgres, db).await?;
        }
        Ok(ModeResult {
            mode: self.mode,
            label: self.mode.label().to_owned(),
            routes,
            memory: costs.memory,
            exported,
            cpu: costs.cpu,
            stolen_ms: costs.stolen_ms,
            received: self.receiver.store.len() - received_before,
        })
    }

    /// Where this run's logs and stats files go.
    fn run_dir(&self) -> PathBuf {
        self.log_dir.join(format!(
            "{}-{}",
            self.round + 1,
            self.mode.label().replace([' ', '%', ',', '(', ')'], "_")
        ))
    }

    /// The file a service's telemetry writes its export counts to at shutdown.
    fn stats_file(&self, service: &str) -> PathBuf {
        self.run_dir().join(format!("{service}.stats.json"))
    }

    /// Each service's export figures, from the stats file its telemetry
    /// wrote at shutdown (zeros, with a note, for a service that wrote none).
    fn exported(&self) -> Vec<(&'static str, Exported)> {
        stack::SERVICES
            .iter()
            .map(|service| {
                let path = self.stats_file(service);
                let exported = bench::exported_from_file(&path).unwrap_or_else(|e| {
                    println!("    note: no span counts from {service} ({e})");
                    Exported::default()
                });
                (*service, exported)
            })
            .collect()
    }

    /// The stack of this run: ephemeral ports, the run's databases, logs of
    /// its own, the mode's telemetry, a stats file per service.
    fn stack_options(&self) -> StackOptions {
        let mut env = self.mode.env(&self.receiver.endpoint(), self.closed);
        env.push((
            "RUST_LOG".into(),
            // The services' own crates at info for the `listening`
            // line that names each one's port.
            "warn,tracing_common::setup=info,user_service=info,order_service=info,inventory_service=info,api_gateway=info".into(),
        ));
        // The SDK's default batch delay; the runner's 200 ms is for demos.
        env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "5000".into()));
        StackOptions {
            bin_dir: self.bin_dir.to_path_buf(),
            postgres: self.postgres.to_owned(),
            databases: DATABASES.map(str::to_owned),
            kafka_brokers: self.kafka_brokers.to_owned(),
            otlp_endpoint: self.receiver.endpoint(),
            otlp_protocol: "http/protobuf".into(),
            ports: Ports::EPHEMERAL,
            log_dir: self.run_dir(),
            service_env: stack::SERVICES
                .iter()
                .map(|service| {
                    let path = self.stats_file(service).display().to_string();
                    (*service, STATS_FILE_VARIABLE.to_owned(), path)
                })
                .collect(),
            extra_env: env,
        }
    }

    /// Waits for the Kafka consumers, warms up, then drives each route and
    /// measures what it cost.
    async fn measure(&self, services: &LocalStack) -> anyhow::Result<(Vec<RouteResult>, Costs)> {
        let gateway = services.gateway_url();
        let consumers = bench::wait_for_consumers(&gateway, Duration::from_secs(60)).await?;
        println!(
            "    Kafka consumers settled an order after {:.1} s",
            consumers.as_secs_f64()
        );
        // Warm-up: connections, pools, caches.
        for make in [
            request::order_request as fn(usize) -> Request,
            request::user_request,
        ] {
            bench::drive(&gateway, "warm-up", 200, self.concurrency, make, |_| {}).await?;
        }
        let pids = services.pids();
        let after_warmup: Vec<_> = pids
            .iter()
            .map(|(name, pid)| (*name, procfs::memory_kb(*pid).unwrap_or_default()))
            .collect();
        let cpu_before = cpu_now(&pids);
        let stolen_before = procfs::stolen_ms().unwrap_or_default();
        let routes = self.drive_routes(&gateway, &pids).await?;
        let stolen_ms = procfs::stolen_ms()
            .unwrap_or_default()
            .saturating_sub(stolen_before);
        let cpu = cpu_now(&pids)
            .into_iter()
            .zip(&cpu_before)
            .map(|((name, after), (_, before))| (name, after.saturating_sub(*before)))
            .collect();
        let memory = pids
            .iter()
            .zip(&after_warmup)
            .map(|((name, pid), (_, (start, _)))| {
                let (end, peak) = procfs::memory_kb(*pid).unwrap_or_default();
                (*name, *start, end, peak)
            })
            .collect();
        let costs = Costs {
            cpu,
            memory,
            stolen_ms,
        };
        Ok((routes, costs))
    }

    /// The measured load: each route in turn, with progress every second,
    /// and what each process's CPU time grew by while it ran.
    async fn drive_routes(
        &self,
        gateway: &str,
        pids: &[(&'static str, u32)],
    ) -> anyhow::Result<Vec<RouteResult>> {
        let mut routes = Vec::new();
        for (route, make) in [
            (
                "POST /api/orders",
                request::order_request as fn(usize) -> Request,
            ),
            ("GET /api/users/{id}", request::user_request),
        ] {
            let total = self.requests;
            let before = cpu_now(pids);
            let mut r = bench::drive(
                gateway,
                route,
                self.requests,
                self.concurrency,
                make,
                move |done| println!("    {route}: {done}/{total}"),
            )
            .await?;
            r.cpu = cpu_now(pids)
                .into_iter()
                .zip(&before)
                .map(|((name, after), (_, before))| (name, after.saturating_sub(*before)))
                .collect();
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
        Ok(routes)
    }
}

/// CPU time so far of each service and of this process.
fn cpu_now(pids: &[(&'static str, u32)]) -> Vec<(&'static str, u64)> {
    pids.iter()
        .map(|(name, pid)| (*name, procfs::cpu_ms(Some(*pid)).unwrap_or_default()))
        .chain([(LOADGEN, procfs::cpu_ms(None).unwrap_or_default())])
        .collect()
}

/// The CPU, cores and memory of this machine, for the report.
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
        "{cpu}, {cores} cores, {mem_gib} GiB; services, load generator, Kafka and Postgres on the same machine"
    )
}
