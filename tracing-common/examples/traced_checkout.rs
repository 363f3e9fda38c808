//! tracing-common end to end in one small program: one request's trace across
//! an HTTP hop and a Kafka hop.
//!
//! ```text
//! POST /checkout                       SERVER    (ServerTracingLayer)
//! ├── GET                              CLIENT    (http_client)
//! │   └── GET /price/{id}              SERVER    (same process, over HTTP)
//! └── send checkout-events             PRODUCER  (send_traced: context in headers)
//!     └── process checkout-events      CONSUMER  (consumer_context: parent and
//!                                                 link from the record's headers)
//! ```
//!
//! It serves the two routes on a free port, sends itself one checkout, waits
//! (at most 30 s) until its consumer has processed the Kafka message, prints
//! the trace id and exits 0; any failure or timeout exits 1 saying what failed.
//!
//! ```sh
//! cargo run -p tracing-common --example traced_checkout
//! ```
//!
//! Nothing needs to be installed: without `KAFKA_BROKERS` it starts librdkafka's
//! mock cluster in the process, and without `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_TRACES_EXPORTER`) it prints the spans to stdout. Point both at real
//! ones (e.g. `KAFKA_BROKERS=localhost:9092
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317`) to see the trace in
//! Jaeger. Kafka is used through rdkafka directly: the adapter needs nothing
//! else from this crate than its `kafka` feature.

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::TraceContextExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, mocking::MockCluster};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing_common::reqwest::{TracedClient, http_client};
use tracing_common::{ServerTracingLayer, TelemetryConfig, TelemetryGuard, TrustPolicy};

type Error = Box<dyn std::error::Error + Send + Sync>;

const TOPIC: &str = "checkout-events";
const GROUP: &str = "traced-checkout";
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct App {
    base_url: String,
    http: TracedClient,
    producer: FutureProducer,
}

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry = match init_telemetry() {
        Ok(guard) => guard,
        Err(e) => return fail("telemetry did not start", &e),
    };
    let outcome = tokio::time::timeout(DEADLINE, run()).await;
    // Flush before judging the run: a trace that never left is a failure too.
    let stats = telemetry.shutdown();
    match outcome {
        Err(_) => fail(
            "timed out",
            &format!("not done within {DEADLINE:?}, still {}", step("")).into(),
        ),
        Ok(Err(e)) => fail("the checkout failed", &e),
        Ok(Ok(_)) if stats.lost() > 0 => fail(
            "spans were not exported",
            &format!("{} of {} lost ({stats:?})", stats.lost(), stats.ended).into(),
        ),
        Ok(Ok(summary)) => {
            println!("{summary}\nspans exported: {}", stats.exported);
            ExitCode::SUCCESS
        }
    }
}

/// The standard `OTEL_*` variables, except that with no exporter or endpoint
/// set the spans go to stdout rather than to an OTLP endpoint that is
/// probably not there.
fn init_telemetry() -> Result<TelemetryGuard, Error> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
    let configured = [
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .into_iter()
    .any(set);
    let config = TelemetryConfig::from_lookup("traced-checkout", |name| match name {
        "OTEL_TRACES_EXPORTER" if !configured => Ok(Some("console".into())),
        _ => Ok(std::env::var(name).ok()),
    })?;
    let guard = tracing_common::init_with(&config, env!("CARGO_PKG_VERSION"))?;
    Ok(guard)
}

/// Notes what `run` is doing (for the timeout message); returns the last note.
fn step(doing: &'static str) -> &'static str {
    static DOING: std::sync::Mutex<&str> = std::sync::Mutex::new("starting");
    let mut last = DOING.lock().unwrap_or_else(|e| e.into_inner());
    if !doing.is_empty() {
        *last = doing;
    }
    *last
}

fn fail(what: &str, error: &Error) -> ExitCode {
    eprintln!("traced_checkout: {what}: {error}");
    ExitCode::FAILURE
}

/// Starts everything, sends one checkout, waits for its message to be
/// consumed, stops everything; returns the lines to print.
async fn run() -> Result<String, Error> {
    // A real broker if given; else librdkafka's mock cluster, which lives as
    // long as this value.
    let (brokers, mock) = match std::env::var("KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => (b, None),
        _ => {
            let mock = MockCluster::new(1)?;
            // The mock broker does not implement CreateTopics.
            mock.create_topic(TOPIC, 1, 1)?;
            (mock.bootstrap_servers(), Some(mock))
        }
    };
    if mock.is_none() {
        step("creating the topic");
        create_topic(&brokers).await?;
    }

    let (stop, stopped) = watch::channel(false);
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let consumer = tokio::spawn(consume(brokers.clone(), handled_tx, stopped.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "10000")
        .create()?;
    let app = App {
        base_url: base_url.clone(),
        http: http_client(Duration::from_secs(5))?,
        producer,
    };
    let router = Router::new()
        .route("/checkout", post(checkout))
        .route("/price/{id}", get(price))
        .with_state(app)
        // After the routes, so spans are named by route (`GET /price/{id}`).
        .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL));
    let mut server_stopped = stopped.clone();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = server_stopped.wait_for(|s| *s).await;
            })
            .into_future(),
    );

    // Untraced caller: the checkout's SERVER span is the trace's root.
    step("sending POST /checkout");
    let response = reqwest::Client::new()
        .post(format!("{base_url}/checkout"))
        .json(&json!({"item": "book-42"}))
        .send()
        .await?;
    let status = response.status();
    // The server layer answers with the server span's `traceparent`.
    let trace_id = response
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok()?.split('-').nth(1).map(str::to_owned))
        .unwrap_or_default();
    let body: Value = response.json().await?;
    if !status.is_success() {
        return Err(format!("POST /checkout answered {status}: {body}").into());
    }
    let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();

    // The consumer reports each message it processed: wait for ours.
    step("waiting for the consumer to process the message");
    let consumed_in = loop {
        let Some((key, trace)) = handled.recv().await else {
            consumer.await??;
            return Err("the consumer stopped".into());
        };
        if key == order_id {
            break trace;
        }
    };
    if consumed_in != trace_id {
        return Err(format!("consumed in trace {consumed_in}, sent in {trace_id}").into());
    }

    step("stopping the server and the consumer");
    stop.send(true)?;
    server.await??;
    consumer.await??;
    Ok(format!(
        "trace {trace_id}: POST /checkout -> GET /price/{{id}} ({} cents) -> {TOPIC} \
         partition {} offset {} -> processed by group {GROUP}",
        body["price_cents"], body["partition"], body["offset"]
    ))
}

/// `POST /checkout`: prices the item over HTTP, then announces the order on Kafka.
async fn checkout(
    State(app): State<App>,
    Json(request): Json<Value>,
) -> Result<Json<Value>, String> {
    let item = request["item"].as_str().unwrap_or("unknown");
    // CLIENT span and `traceparent` come from the client's middleware.
    let price: Value = app
        .http
        .get(format!("{}/price/{item}", app.base_url))
        .send()
        .await
        .and_then(|r| Ok(r.error_for_status()?))
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;

    let order_id = uuid::Uuid::new_v4().to_string();
    // A PRODUCER span, child of the current (SERVER) span; its context
    // travels in the record's headers.
    let payload = json!({"order_id": order_id, "item": item, "price": price}).to_string();
    let record = FutureRecord::to(TOPIC)
        .key(order_id.as_str())
        .payload(payload.as_bytes());
    let (partition, offset) = tracing_common::send_traced(
        &app.producer,
        &opentelemetry::Context::current(),
        record,
        Some(Duration::from_secs(5)),
        None,
    )
    .await
    .map_err(|e| format!("sending to {TOPIC}: {e}"))?;
    Ok(Json(json!({
        "order_id": order_id,
        "price_cents": price["cents"],
        "partition": partition,
        "offset": offset,
    })))
}

/// `GET /price/{id}`: the downstream the checkout calls.
async fn price(Path(id): Path<String>) -> Json<Value> {
    Json(json!({"id": id, "cents": 1250}))
}

/// Processes each message of the topic under a CONSUMER span (child of the
/// producer's span, with a link to it) and reports (key, trace id).
async fn consume(
    brokers: String,
    handled: mpsc::UnboundedSender<(String, String)>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", GROUP)
        // A first run reads the topic from its start, so the message sent
        // while the group is still joining is not skipped.
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            message = consumer.recv() => message,
        };
        // Receive errors are usually transient (a broker restarting);
        // librdkafka retries, so say so and go on.
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                continue;
            }
        };
        let cx = tracing_common::consumer_context(&message, GROUP);
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        // What the headers carried: the producer's span (the parent and link above).
        let producer = tracing_common::rdkafka::extract(message.headers())
            .span()
            .span_context()
            .span_id();
        // The handler's work, with the CONSUMER span current: its event
        // says what was processed, and the log line carries the trace ids.
        async {
            opentelemetry::trace::get_active_span(|span| {
                span.add_event(
                    "checkout processed",
                    vec![
                        opentelemetry::KeyValue::new("order.id", key.clone()),
                        opentelemetry::KeyValue::new("producer", producer.to_string()),
                    ],
                );
            });
            tracing::info!(order.id = %key, %producer, "checkout processed");
        }
        .with_context(cx.clone())
        .await;
        let trace_id = cx.span().span_context().trace_id().to_string();
        // The span ends here, before main is told (and flushes).
        cx.span().end();
        let _ = handled.send((key, trace_id));
    }
}

/// Creates the topic on a real broker (which may not auto-create topics).
async fn create_topic(brokers: &str) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let timeout = Some(Duration::from_secs(10));
    let options = AdminOptions::new()
        .operation_timeout(timeout)
        .request_timeout(timeout);
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1));
    let failed = |e: &dyn std::fmt::Display| format!("creating topic {TOPIC} on {brokers}: {e}");
    for result in admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| failed(&e))?
    {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(&code).into()),
        }
    }
    Ok(())
}
