//! Tail sampling and the Monitor tab, against the real backends: Jaeger v2
//! (2.12.0) running the repository's `deploy/jaeger/config.yaml` with tail
//! sampling switched on the way the README says (`JAEGER_TRACES_PROCESSORS`),
//! and Prometheus (3.16.0) running `deploy/prometheus/prometheus.yml`, with the
//! four services exporting every trace and `FAULTS` making some orders slow
//! and some stock checks fail. What the services sent is known from the tee
//! in front of Jaeger; what Jaeger kept and what its metrics API answers is
//! read back as a user's tools would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use testkit::env::{Answer, Env, Setup, accepted, orders};
use testkit::jaeger::JaegerOptions;
use testkit::prometheus::Prometheus;
use tracectl::model::{Kind, Trace};

/// The tail-sampling settings under test (the config file's variables).
const THRESHOLD_MS: u64 = 1000;
const SHARE_PERCENT: f64 = 50.0;
const DECISION_WAIT: &str = "5s";
/// Faults: three in ten user lookups this much slower (enough that the 95th
/// percentile is always a delayed one), a fifth of stock checks failing.
/// (Below order-service's 2 s client timeout, so a slow order still succeeds.)
const DELAY_MS: u64 = 1200;
const SLOW_SHARE: f64 = 0.3;
const ERROR_SHARE: f64 = 0.2;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until no span has reached the tee for `quiet` (bounded).
async fn tee_quiet(env: &Env, quiet: Duration) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (env.receiver.store.spans().len(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let n = env.receiver.store.spans().len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() >= quiet || Instant::now() > deadline {
            return n;
        }
    }
}

/// Spans the services sent, per service, as the tee saw them.
fn sent_per_service(env: &Env) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for span in env.receiver.store.spans() {
        *counts.entry(span.service.clone()).or_default() += 1;
    }
    counts
}

/// Waits (bounded) until Prometheus's span-metrics counters add up, per
/// service, to every span the services sent: the connector sees spans before
/// tail sampling, so the dropped traces are counted too.
async fn metrics_count_every_span(env: &Env, prometheus: &Prometheus) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Read again each time: a span that reaches the tee late is counted
        // by the connector too.
        let sent = sent_per_service(env);
        let result = prometheus
            .query("sum by (service_name) (traces_span_metrics_calls_total)")
            .await
            .unwrap();
        let counted: BTreeMap<String, u64> = result
            .iter()
            .filter_map(|r| {
                let service = r["metric"]["service_name"].as_str()?.to_owned();
                let value = r["value"][1].as_str()?.parse::<f64>().ok()?;
                Some((service, value as u64))
            })
            .collect();
        if counted == sent {
            return counted;
        }
        assert!(
            Instant::now() < deadline,
            "span metrics never added up to what was sent:\n  sent    {sent:?}\n  counted {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (bounded) until Prometheus has scraped Jaeger again after `since_ms`.
async fn scraped_after(prometheus: &Prometheus, since_ms: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = prometheus
            .query("timestamp(up{job=\"jaeger-spanmetrics\"})")
            .await
            .unwrap();
        let at = result
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if at * 1000.0 > since_ms as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus stopped scraping Jaeger"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One of Jaeger's metrics API answers (`/api/metrics/{what}`): each series'
/// labels and its value at `end_ms`, over the window `window_ms` before it.
async fn jaeger_metrics(
    http: &reqwest::Client,
    jaeger: &str,
    what: &str,
    service: &str,
    extra: &str,
    end_ms: u64,
    window_ms: u64,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = format!(
        "{jaeger}/api/metrics/{what}?service={service}&endTs={end_ms}&lookback={window_ms}&step={window_ms}&ratePer={window_ms}{extra}"
    );
    let body: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let series = body["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {url}: {body}"));
    series
        .iter()
        .filter_map(|s| {
            let labels = s["labels"]
                .as_array()?
                .iter()
                .map(|l| {
                    (
                        l["name"].as_str().unwrap_or_default().to_owned(),
                        l["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let value =
                s["metricPoints"].as_array()?.last()?["gaugeValue"]["doubleValue"].as_f64()?;
            Some((labels, value))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Error,
    Slow,
    Normal,
}

fn class(trace: &Trace) -> Class {
    if trace.spans.iter().any(|s| s.error.is_some()) {
        Class::Error
    } else if trace.duration_ns() >= THRESHOLD_MS * 1_000_000 {
        Class::Slow
    } else {
        Class::Normal
    }
}

fn trace_ids(answers: &[Option<Answer>]) -> Vec<String> {
    answers
        .iter()
        .flatten()
        .filter(|a| a.status == 201)
        .filter_map(|a| a.trace_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sampling_keeps_every_error_and_slow_trace_whole_and_the_monitor_tab_shows_the_rates()
{
    tail_sampling_and_the_monitor_tab(false).await;
}

/// The same with Jaeger's traces in Cassandra (`deploy/jaeger/cassandra.yaml`):
/// tail sampling and span metrics work as they do with the memory store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_in_cassandra_tail_sampling_and_the_monitor_tab_work_as_with_memory() {
    tail_sampling_and_the_monitor_tab(true).await;
}

async fn tail_sampling_and_the_monitor_tab(in_cassandra: bool) {
    let dir = testkit::env::Scratch::new("tail-sampling");
    let prometheus = Prometheus::start(&dir).await.expect("Prometheus starts");
    let cassandra = if in_cassandra {
        Some(
            testkit::cassandra::Cassandra::start(&dir)
                .await
                .expect("Cassandra starts"),
        )
    } else {
        None
    };
    let jaeger_options = JaegerOptions {
        extra_configs: cassandra
            .iter()
            .map(|_| testkit::jaeger::deploy_dir().join("jaeger/cassandra.yaml"))
            .collect(),
        env: [
            (
                "JAEGER_TRACES_PROCESSORS",
                "[tail_sampling, batch]".to_owned(),
            ),
            ("JAEGER_TAIL_DECISION_WAIT", DECISION_WAIT.to_owned()),
            ("JAEGER_TAIL_LATENCY_THRESHOLD_MS", THRESHOLD_MS.to_string()),
            ("JAEGER_TAIL_SAMPLING_PERCENTAGE", SHARE_PERCENT.to_string()),
            ("JAEGER_PROMETHEUS_URL", prometheus.url()),
        ]
        .into_iter()
        .chain(
            cassandra
                .iter()
                .map(|c| ("JAEGER_CASSANDRA_SERVERS", c.servers())),
        )
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..JaegerOptions::default()
    };
    // The services keep their default sampler (every trace): tail sampling
    // can only choose among the traces it receives.
    let mut env = Setup {
        jaeger: Some(jaeger_options),
        ..Setup::new()
    }
    .env(
        "user-service",
        "FAULTS",
        format!("lookup-user:delay={DELAY_MS}ms,slow={SLOW_SHARE}"),
    )
    .env(
        "inventory-service",
        "FAULTS",
        format!("check-stock:error={ERROR_SHARE}"),
    )
    .start("tail-sampling")
    .await;
    let jaeger = env.jaeger.take().unwrap();
    prometheus
        .scrape(&jaeger.spanmetrics_target())
        .await
        .expect("Prometheus scrapes Jaeger's span metrics");
    let query = jaeger.query_url();

    // 1. A first batch makes every series exist (a histogram's first flush is
    //    not a rate), and its spans are all counted before the measured batch.
    let warmup = orders(&env, 20, 5).await;
    let settled = env
        .settle(&accepted(&warmup), Duration::from_secs(60))
        .await;
    assert!(!settled.contains_key("pending"), "{settled:?}");
    tee_quiet(&env, Duration::from_secs(2)).await;
    metrics_count_every_span(&env, &prometheus).await;
    let window_start = now_ms();
    scraped_after(&prometheus, window_start).await;

    // 2. The measured batch.
    let answers = orders(&env, 80, 8).await;
    let settled = env
        .settle(&accepted(&answers), Duration::from_secs(60))
        .await;
    assert!(!settled.contains_key("pending"), "{settled:?}");
    tee_quiet(&env, Duration::from_secs(2)).await;
    let counted = metrics_count_every_span(&env, &prometheus).await;
    println!("span metrics count every span sent: {counted:?}");
    let window_end = now_ms();
    // Whole seconds: Jaeger passes the window to PromQL as `<n>s`. Reaching
    // up to a second further back adds no increase: the warm-up was all
    // counted before `window_start`.
    let window = (window_end - window_start).div_ceil(1000) * 1000;

    // What the services sent in the measured batch, per trace.
    let measured = trace_ids(&answers);
    assert!(measured.len() >= 75, "{} orders accepted", measured.len());
    let sent: BTreeMap<String, Trace> = measured
        .iter()
        .map(|id| (id.clone(), env.receiver.store.trace(id)))
        .collect();
    let store = env.receiver.store.clone();
    env.finish().await;

    // 3. Jaeger's metrics API, over the measured batch: every service and
    //    each of its SERVER operations; the stock checks' error rate; the
    //    user lookups' latency.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let measured_spans: Vec<_> = sent.values().flat_map(|t| t.spans.clone()).collect();
    for service in tracectl::stack::SERVICES {
        let operations: BTreeSet<String> = measured_spans
            .iter()
            .filter(|s| s.service == service && s.kind == Kind::Server)
            .map(|s| s.name.clone())
            .collect();
        let calls = jaeger_metrics(
            &http,
            &query,
            "calls",
            service,
            "&groupByOperation=true",
            window_end,
            window,
        )
        .await;
        let reported: BTreeSet<String> = calls
            .iter()
            .filter(|(_, rate)| *rate > 0.0)
            .filter_map(|(l, _)| l.get("operation").cloned())
            .collect();
        println!("{service}: calls/s by operation {calls:?}");
        assert!(
            operations.is_subset(&reported),
            "{service}: the metrics API reports {reported:?}, the services served {operations:?}"
        );
    }
    let checks: Vec<_> = measured_spans
        .iter()
        .filter(|s| {
            s.service == "inventory-service" && s.kind == Kind::Server && s.name == "POST /check"
        })
        .collect();
    let failed = checks.iter().filter(|s| s.error.is_some()).count();
    let actual_share = failed as f64 / checks.len() as f64;
    let errors = jaeger_metrics(
        &http,
        &query,
        "errors",
        "inventory-service",
        "&groupByOperation=true",
        window_end,
        window,
    )
    .await;
    let reported_share = errors
        .iter()
        .find(|(l, _)| l.get("operation").map(String::as_str) == Some("POST /check"))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no error rate for POST /check: {errors:?}"));
    println!(
        "inventory-service POST /check: error rate {reported_share:.3} from the metrics API; {failed} of {} checks failed ({actual_share:.3}); injected {ERROR_SHARE}",
        checks.len()
    );
    assert!(
        (reported_share - actual_share).abs() <= 0.05,
        "error rate {reported_share} against {actual_share} sent"
    );
    let p95 = jaeger_metrics(
        &http,
        &query,
        "latencies",
        "user-service",
        "&quantile=0.95",
        window_end,
        window,
    )
    .await;
    let p50 = jaeger_metrics(
        &http,
        &query,
        "latencies",
        "user-service",
        "&quantile=0.5",
        window_end,
        window,
    )
    .await;
    let (p95, p50) = (p95[0].1, p50[0].1);
    let lookups: Vec<_> = measured_spans
        .iter()
        .filter(|s| s.service == "user-service" && s.kind == Kind::Server)
        .collect();
    let delayed = lookups
        .iter()
        .filter(|s| s.duration_ns >= DELAY_MS * 1_000_000)
        .count();
    println!(
        "user-service latency p95 {p95:.0} ms, p50 {p50:.0} ms; {delayed} of {} lookups delayed by {DELAY_MS} ms (injected share {SLOW_SHARE})",
        lookups.len()
    );
    // Buckets of the connector: ..., 800, 1000, 1400 ms. The delay lands in
    // (1000, 1400]; the undelayed lookups far below 1000.
    assert!(
        p95 > 1000.0,
        "p95 {p95} ms does not show the {DELAY_MS} ms delay"
    );
    assert!(p50 < 1000.0, "p50 {p50} ms: most lookups were not delayed");

    // 4. What Jaeger stored: every error and slow trace whole, the normal ones
    //    at the configured share, nothing partial. Decisions come
    //    decision_wait (+1 s) after a trace's first span.
    let client = tracectl::jaeger::Jaeger::new(&query).unwrap();
    let by_class: BTreeMap<Class, Vec<&String>> =
        sent.iter().fold(BTreeMap::new(), |mut m, (id, t)| {
            m.entry(class(t)).or_default().push(id);
            m
        });
    let stored = |id: &str| {
        let client = &client;
        let id = id.to_owned();
        async move {
            client
                .trace(&id)
                .await
                .unwrap()
                .map_or(0, |t| t.spans.len())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for class in [Class::Error, Class::Slow] {
            for id in by_class.get(&class).into_iter().flatten() {
                if stored(id).await != sent[*id].spans.len() {
                    missing.push((class, (*id).clone()));
                }
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "error and slow traces not stored whole: {missing:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut report = BTreeMap::new();
    for (class, ids) in &by_class {
        let (mut whole, mut partial) = (0, Vec::new());
        for id in ids {
            let (have, want) = (stored(id).await, sent[*id].spans.len());
            if have == want {
                whole += 1;
            } else if have > 0 {
                partial.push(format!("{id}: {have} of {want} spans"));
            }
        }
        assert!(
            partial.is_empty(),
            "{class:?} traces stored in part: {partial:?}"
        );
        report.insert(*class, (whole, ids.len()));
    }
    println!(
        "stored whole, of those sent (threshold {THRESHOLD_MS} ms, share {SHARE_PERCENT}%): {report:?}"
    );
    let errors_sent = report.get(&Class::Error).map_or(0, |r| r.1);
    let slow_sent = report.get(&Class::Slow).map_or(0, |r| r.1);
    assert!(
        errors_sent > 0 && slow_sent > 0,
        "the faults made no error or no slow trace: {report:?}"
    );
    let (kept, normal) = report.get(&Class::Normal).copied().unwrap_or((0, 0));
    assert!(
        normal >= 20,
        "too few normal orders to measure a share: {report:?}"
    );
    // The probabilistic policy hashes trace ids: a binomial draw. Four
    // standard deviations either side of the expected count.
    let p = SHARE_PERCENT / 100.0;
    let expected = normal as f64 * p;
    let tolerance = 4.0 * (normal as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (kept as f64 - expected).abs() <= tolerance,
        "{kept} of {normal} normal traces kept, expected {expected:.1} ± {tolerance:.1}"
    );

    // 5. `tracectl errors` lists every trace in which inventory-service failed
    //    (the warm-up's included: Jaeger keeps all error traces).
    let failed_traces: BTreeSet<String> = store
        .spans()
        .iter()
        .filter(|s| s.service == "inventory-service" && s.error.is_some())
        .map(|s| s.trace_id.clone())
        .collect();
    let stdout = testkit::env::tracectl(&[
        "errors",
        "--service",
        "inventory-service",
        "--minutes",
        "30",
        "--limit",
        "1000",
        "--jaeger",
        &query,
    ])
    .await;
    let listed: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    println!("tracectl errors --service inventory-service:\n{stdout}");
    assert_eq!(
        listed, failed_traces,
        "tracectl errors against the traces inventory-service failed in"
    );
    assert!(stdout.contains("POST /check: 500"), "{stdout}");

    // 6. Exemplars, from the slow buckets of user-service's lookups to their
    //    traces: each is a lookup the services really sent with that
    //    duration, its trace is slow, and Jaeger has it (tail sampling keeps
    //    every slow trace).
    let lookup = "GET /users/{id}";
    let exemplars = tracectl::exemplars::Prometheus::new(&prometheus.url())
        .unwrap()
        .exemplars(
            "user-service",
            Some(lookup),
            THRESHOLD_MS as f64,
            Duration::from_secs(30 * 60),
        )
        .await
        .unwrap();
    assert!(
        !exemplars.is_empty(),
        "no exemplar above {THRESHOLD_MS} ms although {delayed} lookups were delayed"
    );
    for exemplar in &exemplars {
        let trace = store.trace(&exemplar.trace_id);
        let span = trace
            .spans
            .iter()
            .find(|s| s.span_id == exemplar.span_id)
            .unwrap_or_else(|| panic!("{exemplar:?} names a span the services never sent"));
        assert_eq!(
            (span.service.as_str(), span.name.as_str()),
            ("user-service", lookup)
        );
        assert!(
            (span.duration_ns as f64 / 1e6 - exemplar.duration_ms).abs() < 0.01,
            "{exemplar:?} against the span's {} ns",
            span.duration_ns
        );
        // Slow (perhaps failed too: a fifth of stock checks fail).
        assert!(
            trace.duration_ns() >= THRESHOLD_MS * 1_000_000,
            "{exemplar:?}: its trace took {} ns",
            trace.duration_ns()
        );
        assert_eq!(
            stored(&exemplar.trace_id).await,
            trace.spans.len(),
            "{exemplar:?}: Jaeger does not have the whole trace"
        );
    }
    let above = format!("{THRESHOLD_MS}ms");
    let stdout = testkit::env::tracectl(&[
        "exemplars",
        "--service",
        "user-service",
        "--operation",
        lookup,
        "--above",
        &above,
        "--minutes",
        "30",
        "--prometheus",
        &prometheus.url(),
        "--jaeger",
        &query,
    ])
    .await;
    println!("tracectl exemplars:\n{stdout}");
    let listed: Vec<&str> = stdout.lines().filter(|l| l.contains(" ms  ")).collect();
    assert_eq!(listed.len(), exemplars.len().min(20), "{stdout}");
    assert!(listed.iter().all(|l| l.contains("  yes, ")), "{stdout}");

    // 7. The critical path of the slowest gateway requests: the injected
    //    delay is first, with the share of the time the requests spent in it.
    let slowest = client
        .slowest_requests("api-gateway", Duration::from_secs(30 * 60), 1000, 10)
        .await
        .unwrap();
    assert_eq!(slowest.len(), 10);
    let summary = tracectl::critical::summarize(&slowest);
    let delay_name = "injected-delay lookup-user";
    let in_delay: u64 = slowest
        .iter()
        .flat_map(|(t, _)| &t.spans)
        .filter(|s| s.name == delay_name)
        .map(|s| s.duration_ns)
        .sum();
    let requests: u64 = slowest.iter().map(|(t, i)| t.spans[*i].duration_ns).sum();
    let first = &summary.operations[0];
    println!(
        "critical path: {} {} {:.1}% of {:.0} ms; the delay spans are {:.1}%",
        first.service,
        first.name,
        first.share(&summary) * 100.0,
        summary.total_ns as f64 / 1e6,
        in_delay as f64 / requests as f64 * 100.0
    );
    assert_eq!(
        (first.service.as_str(), first.name.as_str()),
        ("user-service", delay_name)
    );
    assert_eq!(first.requests, 10, "{summary:?}");
    assert_eq!(summary.total_ns, requests, "the path covers each request");
    assert!(
        (first.share(&summary) - in_delay as f64 / requests as f64).abs() < 0.001,
        "{summary:?}"
    );
    assert!(first.share(&summary) > 0.8, "{summary:?}");
    let stdout = testkit::env::tracectl(&[
        "critical-path",
        "--service",
        "api-gateway",
        "--minutes",
        "30",
        "--slowest",
        "10",
        "--jaeger",
        &query,
    ])
    .await;
    println!("tracectl critical-path:\n{stdout}");
    let table: Vec<&str> = stdout.lines().collect();
    assert!(
        table[3].starts_with("user-service  injected-delay lookup-user"),
        "{stdout}"
    );
    drop(jaeger);
    drop(prometheus);
}
