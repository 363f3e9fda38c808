//! tracing-common's example (`tracing-common/examples/traced_checkout.rs`),
//! the built binary, against the real things: an Apache Kafka broker of this
//! test's own (auto topic creation off, so the example's AdminClient must
//! create its topic) and the project's OTLP receiver (the example's default
//! OTLP gRPC). The spans it exports must be the trace its comment draws:
//! names, kinds, one trace id, parents, the consumer's link, attribute values
//! and their types. And pointed at a broker that is not there, it must fail
//! within its deadline, saying so.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use testkit::kafka::Kafka;
use testkit::receiver::TempDir;
use tracectl::model::{Kind, Span, Trace};
use tracectl::receiver::Receiver;

const TOPIC: &str = "checkout-events";

/// `target/debug/examples/traced_checkout`: `scripts/test.sh` builds it
/// (`cargo build -p tracing-common --example traced_checkout`), and so does
/// nextest's build of the workspace's tests.
fn example() -> PathBuf {
    let path = testkit::env::bin_dir().join("examples/traced_checkout");
    assert!(
        path.exists(),
        "{} is missing: cargo build -p tracing-common --example traced_checkout",
        path.display()
    );
    path
}

/// Runs the example with only these `OTEL_*`/`KAFKA_*` variables set.
async fn run_example(vars: &[(&str, String)]) -> Output {
    let mut command = tokio::process::Command::new(example());
    command.kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") || name.starts_with("KAFKA_") {
            command.env_remove(name);
        }
    }
    command.envs(vars.iter().map(|(k, v)| (k, v)));
    // The example's own deadline is 30 s; this bounds a hang in shutdown.
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the example exits within 60 s")
        .expect("the example runs");
    println!(
        "--- traced_checkout {vars:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn only<'a>(trace: &'a Trace, name: &str, kind: Kind) -> &'a Span {
    let found: Vec<&Span> = trace.spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "one {name:?} expected in\n{}",
        tracectl::waterfall::render(trace)
    );
    assert_eq!(found[0].kind, kind, "{name}");
    found[0]
}

#[track_caller]
fn assert_int(span: &Span, key: &str, value: i64) {
    assert_eq!(
        span.attr(key),
        Some(value.to_string().as_str()),
        "{}: {key}",
        span.name
    );
    assert!(
        span.integers.contains(key),
        "{}: {key} must be an integer",
        span.name
    );
}

#[track_caller]
fn assert_str(span: &Span, key: &str, value: &str) {
    assert_eq!(span.attr(key), Some(value), "{}: {key}", span.name);
    assert!(
        !span.integers.contains(key),
        "{}: {key} must be a string",
        span.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_exports_one_trace_across_http_and_a_real_kafka() {
    let dir = TempDir::new("traced-checkout");
    let kafka = Kafka::start(&dir.0, None)
        .await
        .expect("Apache Kafka starts");
    let receiver = Receiver::start("127.0.0.1:0").await.unwrap();

    let output = run_example(&[
        ("KAFKA_BROKERS", kafka.bootstrap()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
    ])
    .await;
    assert!(
        output.status.success(),
        "the example failed; the broker's log ends:\n{}",
        kafka
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let trace_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace ")?.split(':').next())
        .expect("the example prints `trace <id>: ...`")
        .to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert!(stdout.contains("spans exported: 5"), "{stdout}");

    // The example flushed before it exited: everything is here already.
    let trace = receiver.store.trace(&trace_id);
    let waterfall = tracectl::waterfall::render(&trace);
    println!("{waterfall}");
    assert_eq!(trace.spans.len(), 5, "{waterfall}");
    assert!(trace.warnings.is_empty(), "{:?}", trace.warnings);
    assert_eq!(
        receiver.store.trace_ids(),
        std::slice::from_ref(&trace_id),
        "every span exported is in the one trace"
    );
    assert_eq!(trace.services(), ["traced-checkout"]);
    assert!(trace.spans.iter().all(|s| s.error.is_none()), "{waterfall}");

    let checkout = only(&trace, "POST /checkout", Kind::Server);
    let client = only(&trace, "GET", Kind::Client);
    let price = only(&trace, "GET /price/{id}", Kind::Server);
    let send = only(&trace, &format!("send {TOPIC}"), Kind::Producer);
    let process = only(&trace, &format!("process {TOPIC}"), Kind::Consumer);

    // The tree: the checkout is the root; the HTTP hop under it, with the
    // callee's SERVER span under the CLIENT span (traceparent crossed);
    // the consumer under the producer (Kafka headers crossed), linked to it.
    assert_eq!(checkout.parent_id, None);
    assert_eq!(client.parent_id.as_ref(), Some(&checkout.span_id));
    assert_eq!(price.parent_id.as_ref(), Some(&client.span_id));
    assert_eq!(send.parent_id.as_ref(), Some(&checkout.span_id));
    assert_eq!(process.parent_id.as_ref(), Some(&send.span_id));
    assert_eq!(process.links, [(trace_id.clone(), send.span_id.clone())]);

    // HTTP attributes, typed as the semantic conventions say.
    assert_str(checkout, "http.request.method", "POST");
    assert_str(checkout, "http.route", "/checkout");
    assert_int(checkout, "http.response.status_code", 200);
    assert_str(client, "http.request.method", "GET");
    assert_str(client, "server.address", "127.0.0.1");
    let port: i64 = client.attr("server.port").unwrap().parse().unwrap();
    assert_int(client, "server.port", port);
    assert_str(
        client,
        "url.full",
        &format!("http://127.0.0.1:{port}/price/book-42"),
    );
    assert_int(client, "http.response.status_code", 200);
    assert_str(price, "http.route", "/price/{id}");
    assert_str(price, "url.path", "/price/book-42");
    assert_int(price, "http.response.status_code", 200);

    // Messaging attributes: both sides name the same record.
    for (span, operation) in [(send, "send"), (process, "process")] {
        assert_str(span, "messaging.system", "kafka");
        assert_str(span, "messaging.destination.name", TOPIC);
        assert_str(span, "messaging.operation.type", operation);
        assert_str(span, "messaging.destination.partition.id", "0");
    }
    let key = send.attr("messaging.kafka.message.key").unwrap();
    assert_eq!(key.len(), 36, "an order id (uuid): {key}");
    assert_str(process, "messaging.kafka.message.key", key);
    let offset: i64 = send
        .attr("messaging.kafka.offset")
        .unwrap()
        .parse()
        .unwrap();
    assert_int(send, "messaging.kafka.offset", offset);
    assert_int(process, "messaging.kafka.offset", offset);
    assert_eq!(offset, 0, "the first record of a topic the example created");
    assert_str(process, "messaging.consumer.group.name", "traced-checkout");
    assert!(process.integers.contains("messaging.message.body.size"));
    // The example's handler records, as an event of the CONSUMER span, the
    // producer span id `kafka::extract` read from the record's headers.
    assert!(
        process.event_attributes.contains(&(
            "checkout processed".to_owned(),
            "producer".to_owned(),
            send.span_id.clone()
        )),
        "{:?}",
        process.event_attributes
    );
    assert!(
        stdout.contains(&format!("partition 0 offset {offset}")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_example_fails_within_its_deadline_saying_why() {
    let closed = testkit::closed_port();
    let started = std::time::Instant::now();
    let output = run_example(&[
        ("KAFKA_BROKERS", closed.to_string()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(40));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "traced_checkout: the checkout failed: creating topic {TOPIC} on {closed}: "
        )),
        "{stderr}"
    );
}
