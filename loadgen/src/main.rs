use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use loadgen::instructions::InstructionOptions;
use loadgen::load::{self, LoadOptions, Mix, Until};
use loadgen::runner::{self, BenchOptions};
use loadgen::step;

#[derive(Parser)]
#[command(about = "Send demo traffic to a running gateway; measure what tracing costs the stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure what tracing costs: the same load in each telemetry mode
    /// (off, 100%, 10%, 100% with the endpoint down), side by side.
    Bench(BenchOptions),
    /// Instructions per request of user- and order-service under callgrind,
    /// in each telemetry mode: a figure machine noise cannot blur.
    Instructions(InstructionOptions),
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(options) => runner::bench(&options).await,
        Command::Instructions(options) => loadgen::instructions::instructions(&options).await,
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
            send_load(&options).await
        }
    }
}

/// `loadgen load`: the mix at the rate, progress every second, a summary.
async fn send_load(options: &LoadOptions) -> anyhow::Result<()> {
    step(&format!(
        "sending {} requests/s to {} ({})",
        options.rate,
        options.gateway,
        match options.until {
            Until::Count(n) => format!("{n} requests"),
            Until::Elapsed(d) => format!("for {} s", d.as_secs()),
        }
    ));
    let report = load::run(options, |r, in_flight| {
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
