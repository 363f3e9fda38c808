//! `sqlx::Db` against a real Postgres: statements of sampled work are CLIENT
//! spans with the database conventions, children of the span they run in;
//! statements of unsampled work, or of no trace, start no span at all.
//!
//! The tracer provider's sampler records the name of every span it is asked
//! about: the SDK asks for every span it starts, sampled or not, so a
//! statement that never reaches the sampler built nothing.

use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, Sampler, SamplingResult, SdkTracerProvider, ShouldSample, SpanData,
};
use opentelemetry_semantic_conventions::attribute as semconv;
use tracing::Instrument;
use tracing_common::sqlx::Db;
use tracing_common_testing::{assert_attribute_types, attr_i64, attr_str, is_child_of, only};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Names of the spans the sampler was asked about, in this process.
static ASKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Debug, Clone)]
struct RecordingSampler(Sampler);

impl ShouldSample for RecordingSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        ASKED.lock().unwrap().push(name.to_owned());
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

fn asked_about(name: &str) -> usize {
    ASKED.lock().unwrap().iter().filter(|n| *n == name).count()
}

struct Setup {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

impl Setup {
    fn trace(&self, trace_id: TraceId) -> Vec<SpanData> {
        let mut spans = self.exporter.get_finished_spans().unwrap();
        spans.retain(|s| s.span_context.trace_id() == trace_id);
        spans
    }
}

/// The services' stack: the parent-based sampler, the `tracing` bridge
/// behind its `BelowSampled` filter, and a global provider (`Db` builds its spans with it).
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(RecordingSampler(Sampler::ParentBased(Box::new(
                Sampler::AlwaysOn,
            ))))
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_subscriber::registry()
            .with(tracing_common::otel_layer(provider.tracer("test")))
            .try_init()
            .expect("no other subscriber in this test binary");
        Setup {
            exporter,
            _provider: provider,
        }
    })
}

async fn db() -> Db {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    Db::new(
        sqlx::PgPool::connect(&url)
            .await
            .expect("Postgres must be running"),
    )
}

/// `span` entering with a remote parent.
fn enter(span: tracing::Span, flags: TraceFlags, trace_id: &str) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let _ = span.set_parent(Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(trace_id).unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        flags,
        true,
        TraceState::default(),
    )));
    span
}

#[tokio::test]
async fn statements_of_sampled_work_are_client_spans_of_the_span_they_run_in() {
    let setup = setup();
    let db = db().await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let span = enter(
        tracing::info_span!("sampled-entry"),
        TraceFlags::SAMPLED,
        trace_id,
    );
    let secret = "user-secret-value";
    let (row, committed): ((String,), i32) = async {
        let row = sqlx::query_as("SELECT $1::text AS name")
            .bind(secret)
            .fetch_one(db.statement("SELECT", "sampled_users"))
            .await?;
        let mut tx = db.begin().await?;
        let (one,): (i32,) = sqlx::query_as("SELECT 1")
            .fetch_one(tx.statement("SELECT", "sampled_first"))
            .await?;
        let (two,): (i32,) = sqlx::query_as("SELECT $1::int")
            .bind(2)
            .fetch_one(tx.statement("SELECT", "sampled_second"))
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((row, one + two))
    }
    .instrument(span.clone())
    .await
    .unwrap();
    assert_eq!(row.0, secret);
    assert_eq!(committed, 3);
    drop(span);

    let spans = setup.trace(TraceId::from_hex(trace_id).unwrap());
    let entry = only(&spans, "sampled-entry");
    let db_span = only(&spans, "SELECT sampled_users");
    assert_eq!(db_span.span_kind, SpanKind::Client);
    assert!(is_child_of(db_span, entry));
    assert_eq!(
        attr_str(db_span, semconv::DB_SYSTEM_NAME).as_deref(),
        Some("postgresql")
    );
    assert_eq!(
        attr_str(db_span, semconv::DB_OPERATION_NAME).as_deref(),
        Some("SELECT")
    );
    assert_eq!(
        attr_str(db_span, semconv::DB_COLLECTION_NAME).as_deref(),
        Some("sampled_users")
    );
    assert_eq!(
        attr_str(db_span, semconv::DB_QUERY_TEXT).as_deref(),
        Some("SELECT $1::text AS name")
    );
    assert_eq!(
        attr_i64(db_span, semconv::DB_RESPONSE_RETURNED_ROWS),
        Some(1)
    );
    assert!(
        db_span
            .attributes
            .iter()
            .all(|kv| !kv.value.as_str().contains(secret))
    );
    for name in ["SELECT sampled_first", "SELECT sampled_second"] {
        let statement = only(&spans, name);
        assert_eq!(statement.span_kind, SpanKind::Client);
        assert!(is_child_of(statement, entry), "{name}");
    }
    assert_eq!(asked_about("SELECT sampled_users"), 1);
    assert_attribute_types(&spans);
}

#[tokio::test]
async fn statements_of_unsampled_work_or_of_no_trace_start_no_span() {
    let setup = setup();
    let db = db().await;
    let trace_id = "6bf92f3577b34da6a3ce929d0e0e4736";
    let span = enter(
        tracing::info_span!("unsampled-entry"),
        TraceFlags::default(),
        trace_id,
    );
    let child = span.in_scope(|| tracing::info_span!("reserve-stock"));
    let total: i32 = async {
        let (one,): (i32,) = sqlx::query_as("SELECT 1")
            .fetch_one(db.statement("SELECT", "unsampled_users"))
            .await?;
        let mut tx = db.begin().await?;
        let (two,): (i32,) = sqlx::query_as("SELECT $1::int")
            .bind(2)
            .fetch_one(tx.statement("SELECT", "unsampled_stock"))
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(one + two)
    }
    .instrument(child)
    .await
    .unwrap();
    assert_eq!(total, 3);
    // No span current at all: a poller's statement.
    let (three,): (i32,) = sqlx::query_as("SELECT 3")
        .fetch_one(db.statement("SELECT", "untraced_outbox"))
        .await
        .unwrap();
    assert_eq!(three, 3);
    drop(span);

    // The entry itself was decided (and dropped) where it entered.
    assert_eq!(asked_about("unsampled-entry"), 1);
    for name in [
        "reserve-stock",
        "SELECT unsampled_users",
        "SELECT unsampled_stock",
        "SELECT untraced_outbox",
    ] {
        assert_eq!(asked_about(name), 0, "{name} reached the sampler");
    }
    assert!(setup.trace(TraceId::from_hex(trace_id).unwrap()).is_empty());
}

#[tokio::test]
async fn a_failed_statement_says_why_and_rows_are_counted_for_every_kind_of_call() {
    let setup = setup();
    let db = db().await;
    let trace_id = "7bf92f3577b34da6a3ce929d0e0e4736";
    let span = enter(
        tracing::info_span!("counting-entry"),
        TraceFlags::SAMPLED,
        trace_id,
    );
    let failed = async {
        let rows: Vec<(i32,)> = sqlx::query_as("SELECT g FROM generate_series(1, 3) AS g")
            .fetch_all(db.statement("SELECT", "series_all"))
            .await?;
        assert_eq!(rows.len(), 3);
        let mut tx = db.begin().await?;
        sqlx::query("CREATE TEMPORARY TABLE counted (n int) ON COMMIT DROP")
            .execute(tx.statement("CREATE", "counted"))
            .await?;
        let inserted = sqlx::query("INSERT INTO counted SELECT g FROM generate_series(1, 4) AS g")
            .execute(tx.statement("INSERT", "counted"))
            .await?;
        assert_eq!(inserted.rows_affected(), 4);
        // A literal written into the SQL by hand never reaches the span.
        let (_,): (String,) = sqlx::query_as("SELECT 'literal-secret'::text")
            .fetch_one(tx.statement("SELECT", "literal"))
            .await?;
        tx.commit().await?;
        sqlx::query_as::<_, (i32,)>("SELECT 1 / (SELECT 0)")
            .fetch_one(db.statement("SELECT", "division"))
            .await
    }
    .instrument(span.clone())
    .await;
    let error = failed.expect_err("division by zero");
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("22012")
    );
    drop(span);

    let spans = setup.trace(TraceId::from_hex(trace_id).unwrap());
    assert_eq!(
        attr_i64(
            only(&spans, "SELECT series_all"),
            semconv::DB_RESPONSE_RETURNED_ROWS
        ),
        Some(3)
    );
    assert_eq!(
        attr_i64(only(&spans, "INSERT counted"), "db.response.affected_rows"),
        Some(4)
    );
    assert_eq!(
        attr_str(only(&spans, "SELECT literal"), semconv::DB_QUERY_TEXT).as_deref(),
        Some("SELECT ?::text")
    );
    let division = only(&spans, "SELECT division");
    assert_eq!(
        division.status,
        opentelemetry::trace::Status::error(error.to_string())
    );
    assert_eq!(
        attr_str(division, semconv::ERROR_TYPE).as_deref(),
        Some("22012")
    );
    assert_eq!(
        attr_str(division, semconv::DB_RESPONSE_STATUS_CODE).as_deref(),
        Some("22012")
    );
    let exception = division
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("an exception event");
    assert!(
        exception
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == semconv::EXCEPTION_MESSAGE
                && kv.value.as_str().contains("division by zero"))
    );
    assert_attribute_types(&spans);
}
