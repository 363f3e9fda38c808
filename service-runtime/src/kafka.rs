//! The services' Kafka runtime: an idempotent producer that replaces itself
//! after a fatal error, a consumer that rejoins its group after an outage,
//! the consume loop (one CONSUMER span per record, offsets stored after the
//! work committed), topic creation and the producer's flush at stop.
//!
//! The trace context itself (headers, PRODUCER and CONSUMER spans) is
//! `tracing_common::rdkafka`'s; this module only drives rdkafka.

use opentelemetry::Context;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::TraceContextExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing_common::rdkafka::consumer_context;

/// An idempotent producer: retries never duplicate or reorder a partition's
/// records. With a `send_timeout`, `message.timeout.ms` bounds how long a
/// send waits for a broker that is down; with `None` a record is retried
/// until it is acknowledged, through any failover, and never given up and
/// sent again (order-service's outbox relay, the only sender of its events).
pub fn producer(brokers: &str, send_timeout: Option<std::time::Duration>) -> KafkaResult<Producer> {
    let config = {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                send_timeout.map_or(0, |t| t.as_millis()).to_string(),
            )
            .set("socket.connection.setup.timeout.ms", "3000")
            .set("statistics.interval.ms", STATS_INTERVAL_MS);
        c
    };
    let watch = Watch::default();
    Ok(Producer {
        current: std::sync::Arc::new(std::sync::RwLock::new(
            config.create_with_context(watch.clone())?,
        )),
        config,
        send_timeout,
        watch,
    })
}

/// How often librdkafka reports its brokers' states to [`Watch`].
const STATS_INTERVAL_MS: &str = "1000";

/// The service's idempotent producer, replaced by a fresh one when it hits a
/// fatal error. An idempotent producer whose records timed out while the
/// broker was away may be fenced by the broker once it returns
/// (`ProducerFenced`); librdkafka then refuses every later send, so without a
/// replacement the outbox relay would retry forever and no event would leave.
#[derive(Clone)]
pub struct Producer {
    current: std::sync::Arc<std::sync::RwLock<FutureProducer<Watch>>>,
    config: ClientConfig,
    /// [`send_traced`] never waits longer than this (plus a second), even
    /// when librdkafka holds a record past `message.timeout.ms`.
    send_timeout: Option<std::time::Duration>,
    /// What the producer's callbacks say of the brokers (kept across replacements).
    watch: Watch,
}

impl Producer {
    /// The producer to send with now.
    pub fn get(&self) -> FutureProducer<Watch> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After a failed send: if `used` is in a fatal state, or the broker no
    /// longer accepts its producer id (fenced, unknown, or out of sequence),
    /// replace it (once, however many senders saw the failure). Returns
    /// whether it was replaced.
    pub fn replace_if_fatal(&self, used: &FutureProducer<Watch>, error: &KafkaError) -> bool {
        use rdkafka::producer::Producer as _;
        use rdkafka::types::RDKafkaErrorCode as Code;
        let (code, reason) = match (used.client().fatal_error(), error.rdkafka_error_code()) {
            (Some(fatal), _) => fatal,
            (
                None,
                Some(
                    code @ (Code::ProducerFenced
                    | Code::InvalidProducerEpoch
                    | Code::UnknownProducerId
                    | Code::OutOfOrderSequenceNumber),
                ),
            ) => (code, error.to_string()),
            _ => return false,
        };
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if !std::ptr::eq(current.client().native_ptr(), used.client().native_ptr()) {
            return false;
        }
        match self
            .config
            .create_with_context::<_, FutureProducer<Watch>>(self.watch.clone())
        {
            Ok(fresh) => {
                tracing::warn!(?code, %reason, "kafka producer hit a fatal error; replaced it with a new one");
                *current = fresh;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, ?code, %reason, "kafka producer hit a fatal error and cannot be replaced");
                false
            }
        }
    }

    /// What the producer knows of its brokers, for `/readyz` and spans.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }
}

/// A consumer in `group`, subscribed to `topic`, that commits only offsets
/// the application stored (after its database transaction committed):
/// at-least-once delivery. A subscription the client refuses is an error
/// here, at start-up, not a consumer that silently never runs.
pub fn consumer(brokers: &str, group: &str, topic: &str) -> KafkaResult<Consumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        // Also the rebalance timeout: how long a group waits for members to
        // rejoin. librdkafka's 5 minutes would stall a restarted consumer for
        // that long behind a member that was killed; handlers here take
        // seconds at most.
        .set("max.poll.interval.ms", "20000")
        .set("statistics.interval.ms", STATS_INTERVAL_MS);
    let watch = Watch::default();
    let current: StreamConsumer<Watch> = config.create_with_context(watch.clone())?;
    rdkafka::consumer::Consumer::subscribe(&current, &[topic])?;
    Ok(Consumer {
        current,
        watch,
        config,
        topic: topic.to_owned(),
        group: group.to_owned(),
    })
}

/// The librdkafka context of the services' clients: logs as rdkafka's
/// default does, keeps what the statistics callback last said of the brokers
/// (for `/readyz`, which must answer at once, and for slow sends' spans), and
/// notes when the group session timed out (librdkafka logs `SESSTMOUT`: the
/// coordinator did not answer heartbeats for the session timeout, so the
/// group has dropped this member). A frozen broker shows no receive error
/// until it is back, so this is the sign [`consume`] goes by.
#[derive(Clone, Default)]
pub struct Watch {
    inner: std::sync::Arc<WatchState>,
}

#[derive(Default)]
struct WatchState {
    session_lost: std::sync::atomic::AtomicBool,
    brokers: std::sync::Mutex<Brokers>,
}

/// The brokers as librdkafka last reported them.
#[derive(Clone, Debug, Default)]
pub struct Brokers {
    /// Brokers of the cluster (from its metadata) with a connection up.
    pub up: usize,
    /// Brokers of the cluster the client knows of.
    pub known: usize,
    /// When librdkafka last reported (every second while the client runs).
    pub reported_at: Option<std::time::Instant>,
    /// The last error librdkafka reported, if any since the brokers were last all up.
    pub last_error: Option<String>,
}

impl Watch {
    fn take_session_lost(&self) -> bool {
        self.inner
            .session_lost
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// The brokers as last reported.
    pub fn brokers(&self) -> Brokers {
        self.inner
            .brokers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether some broker is up, and in words: `reachable (3 of 3 brokers
    /// up)`, `unreachable (0 of 3 brokers up; last error: ...)`, or
    /// `unknown (...)` before the first report or when reports stopped.
    pub fn describe(&self) -> (bool, String) {
        let b = self.brokers();
        let stale = b
            .reported_at
            .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(5));
        let error = b
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        if stale {
            (
                false,
                format!("unknown (no report from librdkafka yet{error})"),
            )
        } else if b.up > 0 {
            (
                true,
                format!("reachable ({} of {} brokers up{error})", b.up, b.known),
            )
        } else {
            (
                false,
                format!("unreachable ({} of {} brokers up{error})", b.up, b.known),
            )
        }
    }
}

/// The part of librdkafka's statistics [`Watch`] reads.
#[derive(serde::Deserialize)]
struct Stats {
    brokers: std::collections::HashMap<String, StatsBroker>,
}

#[derive(serde::Deserialize)]
struct StatsBroker {
    nodeid: i32,
    source: String,
    state: String,
}

impl rdkafka::client::ClientContext for Watch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if fac == "SESSTMOUT" {
            self.inner
                .session_lost
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<Stats>(statistics) else {
            return;
        };
        // Learned brokers are the cluster's own (node id >= 0); before the
        // first metadata only the bootstrap addresses are known.
        let learned: Vec<&StatsBroker> = stats
            .brokers
            .values()
            .filter(|b| b.source == "learned" && b.nodeid >= 0)
            .collect();
        let counted: Vec<&StatsBroker> = if learned.is_empty() {
            stats
                .brokers
                .values()
                .filter(|b| b.source == "configured")
                .collect()
        } else {
            learned
        };
        let up = counted.iter().filter(|b| b.state == "UP").count();
        let mut brokers = self.inner.brokers.lock().unwrap_or_else(|e| e.into_inner());
        brokers.up = up;
        brokers.known = counted.len();
        brokers.reported_at = Some(std::time::Instant::now());
        if up == counted.len() && up > 0 {
            brokers.last_error = None;
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "librdkafka: {reason}");
        self.inner
            .brokers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(reason.to_owned());
    }
}

impl rdkafka::consumer::ConsumerContext for Watch {}

/// How long the group coordinator waits for a member's heartbeat before it
/// gives the member's partitions to others.
const SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A group consumer that [`consume`] can replace with a fresh one.
///
/// When the brokers were unreachable for longer than the session timeout,
/// the group has dropped this member, and librdkafka 2.12's consumer did not
/// always take up the partitions of the group it rejoined once the broker was
/// back: `system-tests/tests/faults/kafka.rs` saw a consumer sit without partitions
/// for 50 s and more after a broker restart, its new assignment queued but
/// never applied, and once more after a broker frozen for 25 s (its session
/// timed out during the freeze; no receive error came until it was back).
/// So once the brokers answer again after such an outage, or after
/// librdkafka reported the group session lost ([`Watch`]),
/// [`consume`] replaces the consumer with a fresh one, which joins like one
/// just started; offsets live in the group, so nothing is lost or skipped.
pub struct Consumer {
    current: StreamConsumer<Watch>,
    watch: Watch,
    config: ClientConfig,
    topic: String,
    group: String,
}

impl Consumer {
    fn brokers(&self) -> &str {
        self.config.get("bootstrap.servers").unwrap_or_default()
    }

    /// Replaces the client with a fresh one subscribed to the same topic.
    /// The old one is closed on a blocking thread: closing leaves the group,
    /// which waits on the brokers.
    fn rebuild(&mut self) -> KafkaResult<()> {
        use rdkafka::consumer::Consumer as _;
        let watch = Watch::default();
        let fresh: StreamConsumer<Watch> = self.config.create_with_context(watch.clone())?;
        fresh.subscribe(&[self.topic.as_str()])?;
        self.watch = watch;
        let old = std::mem::replace(&mut self.current, fresh);
        tokio::task::spawn_blocking(move || drop(old));
        Ok(())
    }
}

/// What [`consume`] knows of an outage of the brokers, from probes made when
/// receives fail (errors queued during an outage can also arrive after it).
#[derive(Default)]
struct Outage {
    /// When a probe first found the brokers unreachable.
    down_since: Option<std::time::Instant>,
    /// They stayed unreachable longer than the session timeout: replace the
    /// consumer once they answer again (see [`Consumer`]).
    replace_when_back: bool,
    last_probe: Option<std::time::Instant>,
    /// Set when the consumer was replaced: when, and how many times in a row.
    /// A fresh consumer that still has no partitions after
    /// [`ASSIGNMENT_GRACE`] is replaced again, at most [`MAX_REPLACEMENTS`]
    /// times (more members than partitions also leaves one without any).
    replaced: Option<(std::time::Instant, u32)>,
}

/// How long a replaced consumer may take to be given partitions.
const ASSIGNMENT_GRACE: std::time::Duration = std::time::Duration::from_secs(15);
/// Replacements in a row before [`consume`] accepts an empty assignment.
const MAX_REPLACEMENTS: u32 = 4;

impl Outage {
    fn watching(&self) -> bool {
        self.down_since.is_some() || self.replaced.is_some()
    }

    /// The group dropped this member (see [`Watch`]): replace the
    /// consumer once the brokers answer.
    fn session_lost(&mut self) {
        self.down_since.get_or_insert_with(std::time::Instant::now);
        self.replace_when_back = true;
    }

    /// Probes the brokers (at most every 2 s) and replaces the consumer when
    /// they are back after an outage longer than the session timeout.
    async fn check(&mut self, consumer: &mut Consumer) {
        let topic = consumer.topic.clone();
        let now = std::time::Instant::now();
        if self
            .last_probe
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(2))
        {
            return;
        }
        self.last_probe = Some(now);
        if broker_reachable(consumer.brokers()).await.is_err() {
            let since = *self.down_since.get_or_insert(now);
            self.replace_when_back |= since.elapsed() > SESSION_TIMEOUT;
            return;
        }
        if self.replace_when_back {
            let down_s = self.down_since.map_or(0, |t| t.elapsed().as_secs());
            match consumer.rebuild() {
                Ok(()) => {
                    tracing::warn!(%topic, down_s, "brokers were unreachable for longer than the session timeout (or the group dropped this member); replaced the consumer with a fresh one");
                    *self = Outage {
                        replaced: Some((now, 1)),
                        ..Outage::default()
                    };
                }
                Err(e) => {
                    tracing::error!(error = %e, %topic, "cannot replace the consumer");
                    *self = Outage::default();
                }
            }
            return;
        }
        let Some((at, count)) = self.replaced else {
            *self = Outage::default();
            return;
        };
        use rdkafka::consumer::Consumer as _;
        let assigned = consumer
            .current
            .assignment()
            .map(|a| a.count())
            .unwrap_or(0);
        if assigned > 0 || count >= MAX_REPLACEMENTS {
            *self = Outage::default();
        } else if at.elapsed() > ASSIGNMENT_GRACE {
            // Seen after a broker frozen for 25 s: the fresh consumer, made
            // while the group coordinator was still loading, never joined.
            match consumer.rebuild() {
                Ok(()) => {
                    tracing::warn!(%topic, attempt = count + 1, "the replaced consumer got no partitions within 15 s; replaced it again");
                    self.replaced = Some((now, count + 1));
                }
                Err(e) => {
                    tracing::error!(error = %e, %topic, "cannot replace the consumer");
                    *self = Outage::default();
                }
            }
        }
    }
}

/// How long [`consume`] waits in one receive before polling again.
/// librdkafka hands a new assignment (after a rebalance, such as the one a
/// broker restart causes) to the application's next poll, and the stream
/// consumer's wake-up can miss it: after a broker restart the consumer then
/// sat without partitions until some unrelated event woke it (52 s once,
/// over 60 s in another run, in `system-tests/tests/faults/kafka.rs`). A fresh receive
/// polls at once, so this bounds that wait; idle, it costs one wake-up a second.
const POLL_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Consumes `topic` until `shutdown` is cancelled: each record is handled
/// under its CONSUMER span ([`consumer_context`]), and its offset is stored only
/// once `handle` succeeded, that is after the handler's database transaction
/// committed (at-least-once). A failed record is recorded on its span, then
/// re-read after a pause, so an outage of the database is not a hot loop.
/// Handlers skip records they can never process (and say so on the span)
/// rather than fail them.
pub async fn consume<F, Fut, E>(
    consumer: Consumer,
    shutdown: crate::lifecycle::CancellationToken,
    handle: F,
) where
    F: Fn(rdkafka::message::OwnedMessage) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use rdkafka::consumer::Consumer as _;
    let mut consumer = consumer;
    let (topic, group) = (consumer.topic.clone(), consumer.group.clone());
    let (topic, group) = (topic.as_str(), group.as_str());
    let mut outage = Outage::default();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = tokio::time::timeout(POLL_AT_LEAST_EVERY, consumer.current.recv()) => match m {
                Ok(m) => m,
                Err(_) => {
                    // A quiet second: if an outage is being watched, see
                    // whether it is over.
                    if consumer.watch.take_session_lost() {
                        outage.session_lost();
                    }
                    if outage.watching() {
                        outage.check(&mut consumer).await;
                    }
                    continue;
                }
            },
        };
        let message = match message {
            Ok(m) => {
                if consumer.watch.take_session_lost() {
                    // Records still flow (librdkafka rejoined by itself).
                    tracing::info!(%topic, "the group session timed out and was rejoined");
                }
                outage = Outage::default();
                m
            }
            Err(e) => {
                tracing::warn!(error = %e, %topic, "kafka receive failed; retrying");
                if consumer.watch.take_session_lost() {
                    outage.session_lost();
                }
                outage.check(&mut consumer).await;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        let consumer = &consumer.current;
        let cx = consumer_context(&message, group);
        let outcome = handle(message.detach()).with_context(cx.clone()).await;
        match outcome {
            Ok(()) => {
                cx.span().end();
                if let Err(e) = consumer.store_offset_from_message(&message) {
                    tracing::warn!(error = %e, "cannot store offset");
                }
            }
            Err(e) => {
                {
                    let _current = cx.clone().attach();
                    tracing_common::spans::record_current_error("processing", &e.to_string());
                    tracing::error!(error = %e, %topic, "record not processed; it will be read again");
                }
                cx.span().end();
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if let Err(e) = consumer.seek(
                    message.topic(),
                    message.partition(),
                    rdkafka::Offset::Offset(message.offset()),
                    std::time::Duration::from_secs(5),
                ) {
                    tracing::warn!(error = %e, "cannot rewind to the failed record");
                }
            }
        }
    }
    tracing::info!(%topic, "consumer stopped");
}

/// [`ensure_topics`] again and again, with a delay doubling up to 10 s,
/// until it succeeds or `stopping` is cancelled: a service that starts before
/// its broker creates the topics once the broker answers.
pub async fn ensure_topics_until_done(
    brokers: String,
    topics: &'static [&'static str],
    partitions: i32,
    stopping: crate::lifecycle::CancellationToken,
) {
    for delay in crate::lifecycle::startup_backoff(std::time::Duration::from_secs(1)) {
        match ensure_topics(&brokers, topics, partitions).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                "cannot create Kafka topics yet; retrying"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// Creates those of `topics` that do not exist yet (brokers may not
/// auto-create them), with the cluster's default replication factor
/// (`default.replication.factor`: 3 on a three-broker cluster, 1 on a single
/// broker); topics that exist are left as they are, so a role without the
/// right to create topics works once they are provisioned.
/// Bounded: at most about 10 seconds against a broker that does not answer.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> KafkaResult<()> {
    let existing = {
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer as _;
            let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()?;
            let metadata = consumer.fetch_metadata(None, std::time::Duration::from_secs(5))?;
            Ok::<_, KafkaError>(
                metadata
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| t.name().to_owned())
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap_or_else(|_| Err(KafkaError::Canceled))?
    };
    let missing: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| !existing.iter().any(|e| e == *t))
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(BROKER_DEFAULT)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // -1: the broker's `default.replication.factor` (Kafka 2.4 and later).
    const BROKER_DEFAULT: i32 = -1;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let timeout = Some(std::time::Duration::from_secs(5));
    let options = AdminOptions::new()
        .operation_timeout(timeout)
        .request_timeout(timeout);
    for result in admin.create_topics(&missing, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(%topic, ?code, "cannot create topic"));
            }
        }
    }
    Ok(())
}

/// Sends one record through `tracing_common::rdkafka::send_traced` (a
/// PRODUCER span under `parent`, its context in the headers; a slow send
/// says on its span what the producer knows of the brokers) and replaces the
/// producer if the failure was fatal. Returns the partition and offset.
pub async fn send_traced(
    producer: &Producer,
    parent: &Context,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Result<(i32, i64), KafkaError> {
    let used = producer.get();
    let record = FutureRecord::to(topic).key(key).payload(payload);
    let why_slow = || producer.watch.describe().1;
    let result = tracing_common::rdkafka::send_traced(
        &used,
        parent,
        record,
        producer
            .send_timeout
            .map(|t| t + std::time::Duration::from_secs(1)),
        Some(&why_slow),
    )
    .await;
    if let Err(error) = &result {
        producer.replace_if_fatal(&used, error);
    }
    result
}

/// Whether the brokers answer a metadata request within 3 seconds (a
/// client of its own: for an outage's end, never for a probe).
async fn broker_reachable(brokers: &str) -> KafkaResult<()> {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer as _;
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        consumer
            .fetch_metadata(None, std::time::Duration::from_secs(3))
            .map(|_| ())
    })
    .await
    .unwrap_or_else(|_| Err(KafkaError::Canceled))
}

/// [`flush`] of `producer`, for [`crate::lifecycle::Started::flush`].
pub fn flush_at_stop(producer: &Producer) -> crate::lifecycle::Flush {
    let producer = producer.clone();
    Box::new(move || flush(&producer))
}

/// Waits (at most 5 seconds) for queued records to be acknowledged.
pub fn flush(producer: &Producer) {
    use rdkafka::producer::Producer as _;
    if let Err(e) = producer.get().flush(std::time::Duration::from_secs(5)) {
        tracing::warn!(error = %e, "kafka producer did not flush before shutdown");
    }
}
