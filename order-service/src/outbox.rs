//! The outbox relay: the only sender of `order-events`.
//!
//! A request writes its order and event in one transaction, then asks the
//! relay of its own replica to publish the event ([`Outbox::publish`]) and
//! waits a bounded time for the broker's acknowledgement. The relay locks
//! unpublished rows (`FOR UPDATE SKIP LOCKED`), sends them with an
//! idempotent producer that never gives a record up, marks them published
//! and commits. So:
//! - two relays (two replicas) never send the same row: the lock is held
//!   while the row is sent, and dies with the sender's connection;
//! - a send is never timed out and made again: through a broker failover the
//!   producer retries the same record (idempotent, so never stored twice)
//!   and the request answers once its wait is over, leaving the rest to the
//!   relay;
//! - only a replica that dies after the broker acknowledged a record and
//!   before its commit leaves a row that another relay sends again (the
//!   consumer skips it by event id).
//!
//! Several passes run at once (each its own transaction), so a batch waiting
//! on a partition whose leader is moving does not hold up newer events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use opentelemetry::Context;
use order_contract::EventId;
use service_runtime::kafka::Producer;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, oneshot};
use uuid::Uuid;

use crate::db;

/// Rows one pass locks and sends.
const BATCH: i64 = 100;
/// Passes in flight at once (each holds one database connection).
const MAX_PASSES: usize = 4;
/// At stop, how long passes in flight may take to finish (their records
/// acknowledged, their rows marked); after that their rows stay unpublished
/// and are sent again by a relay that runs later.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What [`Outbox::publish`] saw within its wait.
#[derive(Debug)]
pub enum Published {
    /// Acknowledged by the brokers at this partition and offset, and marked.
    Sent { partition: i32, offset: i64 },
    /// The send failed; the row stays unpublished and is sent again.
    Failed(String),
    /// Not acknowledged within the wait; the relay keeps sending it.
    Waiting,
}

/// The handle requests use to hand events to this replica's relay.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    wake: Notify,
    /// Events a request is waiting for: the context their PRODUCER span
    /// should have (the request's `publish-order-event` span) and whom to tell.
    waiting: Mutex<HashMap<Uuid, Waiter>>,
}

struct Waiter {
    cx: Context,
    done: oneshot::Sender<Result<(i32, i64), String>>,
}

impl Inner {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Waiter>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Outbox {
    /// Asks the relay to publish the committed event `id` now, with `cx` as
    /// its PRODUCER span's parent, and waits up to `wait` for the outcome.
    pub async fn publish(&self, id: EventId, cx: Context, wait: Duration) -> Published {
        let (done, outcome) = oneshot::channel();
        self.inner.waiting().insert(id.0, Waiter { cx, done });
        self.inner.wake.notify_one();
        let result = tokio::time::timeout(wait, outcome).await;
        self.inner.waiting().remove(&id.0);
        match result {
            Ok(Ok(Ok((partition, offset)))) => Published::Sent { partition, offset },
            Ok(Ok(Err(e))) => Published::Failed(e),
            // Taken by another replica's relay, or not acknowledged yet.
            Ok(Err(_)) | Err(_) => Published::Waiting,
        }
    }

    /// The relay: a pass whenever a request asks, and every `interval` for
    /// rows older than `min_age` (left by a replica that stopped, or failed),
    /// until `shutdown` is cancelled.
    pub async fn run(
        self,
        pool: PgPool,
        producer: Producer,
        interval: Duration,
        min_age: Duration,
        shutdown: service_runtime::lifecycle::CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_PASSES));
        let mut passes = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
                Some(_) = passes.join_next() => continue,
            }
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let hinted: Vec<Uuid> = self.inner.waiting().keys().copied().collect();
            let (inner, pool, producer) = (self.inner.clone(), pool.clone(), producer.clone());
            passes.spawn(async move {
                match pass(&inner, &pool, &producer, &hinted, min_age).await {
                    // A full batch: more may wait (a backlog after an outage).
                    Ok(published) if published as i64 == BATCH => inner.wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay pass failed; its rows will be sent again");
                    }
                }
                drop(permit);
            });
        }
        let finished = tokio::time::timeout(STOP_GRACE, async {
            while passes.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                in_flight = passes.len(),
                "outbox relay passes did not finish in time; their rows stay unpublished and will be sent again"
            );
            passes.abort_all();
        }
    }
}

/// One pass: locks up to [`BATCH`] unpublished rows (the `hinted` ones
/// whatever their age, others older than `min_age`), sends them all, marks
/// each as its acknowledgement arrives, commits, then tells the requests
/// waiting for them. Returns how many were published.
async fn pass(
    inner: &Inner,
    pool: &PgPool,
    producer: &Producer,
    hinted: &[Uuid],
    min_age: Duration,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let min_age_ms = i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
    let rows = db::lock_unpublished(&mut tx, hinted, min_age_ms, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sends: futures::stream::FuturesUnordered<_> = rows
        .iter()
        .map(|row| async move {
            // The waiting request's span, else the context stored with the
            // event: either way the send joins the order's trace.
            let parent = inner
                .waiting()
                .get(&row.id)
                .map(|w| w.cx.clone())
                .unwrap_or_else(|| {
                    tracing_common::propagation::extract_from_map(&row.trace_context.0)
                });
            let payload = serde_json::to_vec(&row.payload).expect("a JSON value serialises");
            let sent = service_runtime::kafka::send_traced(
                producer,
                &parent,
                &row.topic,
                &row.message_key,
                &payload,
            )
            .await;
            (row.id, sent)
        })
        .collect();
    let mut outcomes = Vec::with_capacity(rows.len());
    while let Some((id, sent)) = sends.next().await {
        match &sent {
            Ok(_) => db::mark_published_locked(&mut tx, id).await?,
            Err(e) => {
                tracing::warn!(error = %e, event_id = %id, "outbox relay cannot publish; will retry");
            }
        }
        outcomes.push((id, sent.map_err(|e| e.to_string())));
    }
    drop(sends);
    tx.commit().await?;
    let published = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let mut waiting = inner.waiting();
    for (id, outcome) in outcomes {
        if let Some(waiter) = waiting.remove(&id) {
            let _ = waiter.done.send(outcome);
        }
    }
    Ok(published)
}
