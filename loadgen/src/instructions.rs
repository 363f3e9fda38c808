//! Instructions per request, a figure this machine's noise cannot blur: one
//! service runs under `valgrind --tool=callgrind` inside the whole stack,
//! its counters are zeroed after warm-up, a fixed number of requests goes
//! through the gateway one at a time, the work they set off settles, and the
//! instructions it executed are read back (`callgrind_control`). Done per
//! telemetry mode, so a change to the hot path shows as a change in this
//! count even where CPU time cannot tell 1% apart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracectl::receiver::Receiver;
use tracectl::stack::{self, LocalStack, Ports, StackOptions};

use crate::bench::{self, Mode};
use crate::request::{self, Request};
use crate::step;

/// What `loadgen instructions` was asked for (its command-line options).
#[derive(Debug, Clone, clap::Args)]
pub struct InstructionOptions {
    /// Requests per service and mode, after a warm-up of 50.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Postgres server, without a database name.
    #[arg(
        long,
        env = "POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// Where the Markdown table goes.
    #[arg(long, default_value = "target/instructions.md")]
    pub out: PathBuf,
    #[arg(long, default_value = "target/instructions-logs")]
    pub log_dir: PathBuf,
    /// Count only this service (user-service or order-service).
    #[arg(long)]
    pub service: Option<String>,
}

/// A service counted, the route that exercises it, and its requests.
type Target = (&'static str, &'static str, fn(usize) -> Request);

const TARGETS: [Target; 2] = [
    ("user-service", "GET /api/users/{id}", request::user_request),
    ("order-service", "POST /api/orders", request::order_request),
];

const MODES: [Mode; 4] = [Mode::Off, Mode::AlwaysOff, Mode::TenPercent, Mode::Full];

const DATABASES: [&str; 3] = ["instr_users_run", "instr_orders_run", "instr_inventory_run"];

/// One count: instructions executed by `service` for `requests` requests.
#[derive(Debug, Clone)]
pub struct Count {
    pub service: &'static str,
    pub route: &'static str,
    pub mode: Mode,
    pub requests: usize,
    /// Every thread of the process.
    pub instructions: u64,
    /// Inside the HTTP connection tasks only (axum's `handle_connection`):
    /// the request path, without the batch exporter, the Kafka consumer or
    /// the runtime's idle work, and so with less noise.
    pub request_path: Option<u64>,
}

impl Count {
    pub fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }

    pub fn request_path_per_request(&self) -> Option<f64> {
        self.request_path
            .map(|n| n as f64 / self.requests.max(1) as f64)
    }
}

/// The function whose inclusive count is the request path.
const REQUEST_PATH: &str = "axum::serve::handle_connection::{{closure}}::{{closure}} ";

/// Counts each target service in each mode, writes the table to
/// `options.out` and prints it.
pub async fn instructions(options: &InstructionOptions) -> anyhow::Result<()> {
    let counts = count_all(options).await?;
    let text = table(&counts, options.requests);
    std::fs::write(&options.out, &text)
        .with_context(|| format!("writing {}", options.out.display()))?;
    println!("\n{text}");
    step(&format!("written to {}", options.out.display()));
    Ok(())
}

/// Each target service (or only `options.service`) in each mode.
pub async fn count_all(options: &InstructionOptions) -> anyhow::Result<Vec<Count>> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the binary's directory")?
        .to_path_buf();
    for tool in ["valgrind", "callgrind_control"] {
        if std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_err()
        {
            bail!("{tool} is not installed (apt-get install valgrind)");
        }
    }
    let receiver = Receiver::start_counting("127.0.0.1:0").await?;
    let mut counts = Vec::new();
    for (service, route, make) in TARGETS {
        if options.service.as_deref().is_some_and(|s| s != service) {
            continue;
        }
        for mode in MODES {
            step(&format!(
                "{service} under callgrind, mode: {}",
                mode.label()
            ));
            let count = count_one(options, &bin_dir, &receiver, service, route, make, mode).await?;
            println!(
                "    {:.0} instructions per request ({} requests)",
                count.per_request(),
                count.requests
            );
            counts.push(count);
        }
    }
    Ok(counts)
}

async fn count_one(
    options: &InstructionOptions,
    bin_dir: &Path,
    receiver: &Receiver,
    service: &'static str,
    route: &'static str,
    make: fn(usize) -> Request,
    mode: Mode,
) -> anyhow::Result<Count> {
    let run_dir = options.log_dir.join(format!(
        "{service}-{}",
        mode.label().replace([' ', '%', ',', '(', ')'], "_")
    ));
    std::fs::create_dir_all(&run_dir)?;
    let wrapped = wrapper_bin_dir(bin_dir, &run_dir, service)?;
    for db in DATABASES {
        stack::drop_database(&options.postgres, db).await?;
    }
    let cluster = tracectl::stack::mock_kafka()?;
    let closed = "http://127.0.0.1:9".to_owned();
    let mut env = mode.env(&receiver.endpoint(), &closed);
    env.push((
        "RUST_LOG".into(),
        "warn,user_service=info,order_service=info,inventory_service=info,api_gateway=info".into(),
    ));
    let stack_options = StackOptions {
        bin_dir: wrapped,
        postgres: options.postgres.clone(),
        databases: DATABASES.map(str::to_owned),
        kafka_brokers: cluster.bootstrap_servers(),
        otlp_endpoint: receiver.endpoint(),
        otlp_protocol: "http/protobuf".into(),
        ports: Ports::EPHEMERAL,
        log_dir: run_dir.clone(),
        service_env: Vec::new(),
        extra_env: env,
    };
    let mut services = LocalStack::start(&stack_options).await?;
    let counted = measure(options, &mut services, service, route, make, mode, &run_dir).await;
    services.stop(Duration::from_secs(60)).await;
    for db in DATABASES {
        stack::drop_database(&options.postgres, db).await?;
    }
    counted
}

async fn measure(
    options: &InstructionOptions,
    services: &mut LocalStack,
    service: &'static str,
    route: &'static str,
    make: fn(usize) -> Request,
    mode: Mode,
    run_dir: &Path,
) -> anyhow::Result<Count> {
    services
        .wait_ready(Duration::from_secs(300), |_, _| {})
        .await?;
    let gateway = services.gateway_url();
    bench::wait_for_consumers(&gateway, Duration::from_secs(120)).await?;
    bench::drive(&gateway, "warm-up", 50, 1, make, |_| {}).await?;
    let pid = services
        .pids()
        .into_iter()
        .find(|(name, _)| *name == service)
        .map(|(_, pid)| pid)
        .context("the counted service's pid")?;
    callgrind_control(&["--zero", &pid.to_string()])?;
    let driven = bench::drive(&gateway, route, options.requests, 1, make, |_| {}).await?;
    if driven.failures > 0 {
        bail!("{} of {} requests failed", driven.failures, driven.requests);
    }
    // An order's work goes on after its answer (Kafka, the settlement).
    wait_until_settled(&options.postgres, Duration::from_secs(300)).await?;
    callgrind_control(&["--dump", &pid.to_string()])?;
    let dump = newest_dump(run_dir, pid)?;
    let text = std::fs::read_to_string(&dump)?;
    let instructions = parse_total(&text)
        .with_context(|| format!("no instruction total in {}", dump.display()))?;
    Ok(Count {
        service,
        route,
        mode,
        requests: driven.requests,
        instructions,
        request_path: inclusive_of(&dump, REQUEST_PATH),
    })
}

/// A directory with the four binaries, `service` wrapped in callgrind.
fn wrapper_bin_dir(bin_dir: &Path, run_dir: &Path, service: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = run_dir.join("bin");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for name in stack::SERVICES {
        let real = std::fs::canonicalize(bin_dir.join(name))
            .with_context(|| format!("{name} in {}", bin_dir.display()))?;
        let path = dir.join(name);
        if name == service {
            let out = std::fs::canonicalize(run_dir)?.join("callgrind.%p");
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={} -q {} \"$@\"\n",
                    out.display(),
                    real.display()
                ),
            )?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        } else {
            std::os::unix::fs::symlink(real, &path)?;
        }
    }
    Ok(dir)
}

fn callgrind_control(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("callgrind_control")
        .args(args)
        .output()
        .context("running callgrind_control")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The inclusive instruction count of the function named `name` in `dump`,
/// from `callgrind_annotate --inclusive=yes`.
fn inclusive_of(dump: &Path, name: &str) -> Option<u64> {
    let out = std::process::Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(dump)
        .output()
        .ok()?;
    parse_inclusive(&String::from_utf8_lossy(&out.stdout), name)
}

/// `12,345,678 (34.5%)  ???:name [binary]` → 12345678, for the first line naming `name`.
pub fn parse_inclusive(annotated: &str, name: &str) -> Option<u64> {
    annotated
        .lines()
        .find(|l| l.contains(name))?
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// The newest dump of `pid` (`callgrind.<pid>.N`).
fn newest_dump(run_dir: &Path, pid: u32) -> anyhow::Result<PathBuf> {
    let prefix = format!("callgrind.{pid}.");
    let newest = std::fs::read_dir(run_dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .with_context(|| format!("no callgrind dump {prefix}* in {}", run_dir.display()))?
        .1;
    Ok(newest)
}

/// `summary:` (or `totals:`) of a callgrind dump: its first number is Ir.
pub fn parse_total(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

async fn wait_until_settled(postgres: &str, timeout: Duration) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(&format!("{postgres}/{}", DATABASES[1])).await?;
    let started = Instant::now();
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'pending'")
                .fetch_one(&pool)
                .await?;
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{pending} orders still pending after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Markdown table: instructions per request per service and mode, and
/// each against tracing off.
pub fn table(counts: &[Count], requests: usize) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "Instructions per request (callgrind; {requests} requests one at a time after a warm-up of 50): \
         all of the process's threads, the work the requests set off included; and the request path alone \
         (inside the HTTP connection tasks), which leaves out the batch exporter, the Kafka consumer and \
         the runtime's idle work and so varies less between runs (about ±1,000 instructions).\n\n\
         | service | route | mode | all threads | vs tracing off | request path | vs tracing off |\n|---|---|---|---:|---:|---:|---:|\n"
    );
    for count in counts {
        let off = counts
            .iter()
            .find(|c| c.service == count.service && c.mode == Mode::Off);
        let all_off = off.map_or(f64::NAN, Count::per_request);
        let path_off = off
            .and_then(Count::request_path_per_request)
            .unwrap_or(f64::NAN);
        let path = count.request_path_per_request().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.3} | {path:.0} | {:.3} |",
            count.service,
            count.route,
            count.mode.label(),
            count.per_request(),
            count.per_request() / all_off,
            path / path_off
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_a_callgrind_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\npid: 42\ncmd: x\npart: 1\n\nevents: Ir\nsummary: 123456789\n\nfl=(1) a.rs\n";
        assert_eq!(parse_total(dump), Some(123_456_789));
        assert_eq!(parse_total("totals: 77 3\n"), Some(77));
        assert_eq!(parse_total("events: Ir\n"), None);
    }

    #[test]
    fn the_table_gives_each_mode_against_tracing_off() {
        let count = |mode, instructions| Count {
            service: "user-service",
            route: "GET /api/users/{id}",
            mode,
            requests: 100,
            instructions,
            request_path: Some(instructions / 2),
        };
        let text = table(
            &[count(Mode::Off, 10_000_000), count(Mode::Full, 13_000_000)],
            100,
        );
        assert!(
            text.contains(
                "| user-service | GET /api/users/{id} | 100% sampled | 130000 | 1.300 | 65000 | 1.300 |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| tracing off | 100000 | 1.000 | 50000 | 1.000 |"),
            "{text}"
        );
    }

    #[test]
    fn an_inclusive_count_is_read_from_callgrind_annotate() {
        let annotated = "--------\n\
            86,523,199 (244.6%)  ???:<tower::util::oneshot::Oneshot<S,Req>>::poll'2 [x]\n\
            31,643,828 (89.45%)  ???:axum::serve::handle_connection::{{closure}}::{{closure}} [/x/user-service]\n";
        assert_eq!(parse_inclusive(annotated, REQUEST_PATH), Some(31_643_828));
        assert_eq!(parse_inclusive(annotated, "nothing"), None);
    }
}
