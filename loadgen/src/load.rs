//! A steady-rate load generator for demos: mixed routes through the gateway,
//! some of them invalid, so a tracing backend fills with realistic traces
//! (successes, refusals, lookups of orders placed moments ago).
//!
//! Open loop: request `i` is due at `start + i / rate` whether or not earlier
//! ones have answered, which is how real users arrive. In-flight requests are
//! bounded; a request due while the bound is reached is counted as skipped
//! rather than queued without limit.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::request::{Request, order_request, percentile};

/// What kind of request a slot of the mix sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A valid order (the seed's shape, varying users, products and quantities).
    Order,
    /// An order the services refuse: wrong total, unknown user, out-of-stock
    /// product, missing field, malformed JSON.
    InvalidOrder,
    /// `GET /api/users/{id}`, now and then for a user that does not exist.
    User,
    /// `GET /api/orders/{id}` of an order placed earlier in the run.
    OrderStatus,
    /// `GET /api/inventory/{productId}`.
    Inventory,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Order => "POST /api/orders (valid)",
            Kind::InvalidOrder => "POST /api/orders (invalid)",
            Kind::User => "GET /api/users/{id}",
            Kind::OrderStatus => "GET /api/orders/{id}",
            Kind::Inventory => "GET /api/inventory/{productId}",
        }
    }
}

/// How many requests of each kind, per `total()` requests.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub orders: u32,
    pub invalid_orders: u32,
    pub users: u32,
    pub order_status: u32,
    pub inventory: u32,
}

impl Default for Mix {
    /// Mostly orders and the lookups that follow them; one in ten invalid.
    fn default() -> Self {
        Mix {
            orders: 4,
            invalid_orders: 1,
            users: 2,
            order_status: 2,
            inventory: 1,
        }
    }
}

impl Mix {
    fn total(&self) -> u64 {
        u64::from(self.orders)
            + u64::from(self.invalid_orders)
            + u64::from(self.users)
            + u64::from(self.order_status)
            + u64::from(self.inventory)
    }

    /// The kind of request `i`: a fixed, well-spread pseudo-random draw, so
    /// two runs send the same sequence.
    pub fn kind(&self, i: u64) -> Kind {
        let total = self.total().max(1);
        use rand::{Rng as _, SeedableRng as _};
        let mut slot = rand::rngs::SmallRng::seed_from_u64(i).random_range(0..total);
        for (weight, kind) in [
            (self.orders, Kind::Order),
            (self.invalid_orders, Kind::InvalidOrder),
            (self.users, Kind::User),
            (self.order_status, Kind::OrderStatus),
            (self.inventory, Kind::Inventory),
        ] {
            if slot < u64::from(weight) {
                return kind;
            }
            slot -= u64::from(weight);
        }
        Kind::Order
    }

    /// Parses `orders=4,invalid=1,users=2,status=2,inventory=1`; kinds not
    /// named get weight 0.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            orders: 0,
            invalid_orders: 0,
            users: 0,
            order_status: 0,
            inventory: 0,
        };
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected name=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
            let slot = match name.trim() {
                "orders" => &mut mix.orders,
                "invalid" => &mut mix.invalid_orders,
                "users" => &mut mix.users,
                "status" => &mut mix.order_status,
                "inventory" => &mut mix.inventory,
                other => {
                    return Err(format!(
                        "unknown kind `{other}` (orders, invalid, users, status, inventory)"
                    ));
                }
            };
            *slot = weight;
        }
        if mix.total() == 0 {
            return Err("the mix sends nothing: give at least one weight above 0".into());
        }
        Ok(mix)
    }
}

/// The invalid orders the generator sends, in turn; each is refused with the
/// status given (and writes nothing).
pub const INVALID_ORDERS: [(&str, u16); 5] = [
    (
        r#"{"userId":"user123","items":[{"productId":"prod1","quantity":2,"price":25.99}],"totalAmount":99.99}"#,
        400,
    ),
    (
        r#"{"userId":"nobody","items":[{"productId":"prod1","quantity":1,"price":25.99}],"totalAmount":25.99}"#,
        422,
    ),
    (
        r#"{"userId":"user456","items":[{"productId":"prod3","quantity":1,"price":9.99}],"totalAmount":9.99}"#,
        409,
    ),
    (r#"{"userId":"user123","totalAmount":10.00}"#, 400),
    (r#"{"userId":"user123","items":[{"productId":"#, 400),
];

const USERS: [&str; 4] = ["user123", "user456", "user789", "no-such-user"];
const PRODUCTS: [&str; 3] = ["prod1", "prod2", "prod3"];

/// Order ids placed during the run, newest last, bounded.
#[derive(Debug, Default)]
struct Recent(Mutex<VecDeque<String>>);

impl Recent {
    const KEEP: usize = 100;

    fn push(&self, id: String) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == Self::KEEP {
            q.pop_front();
        }
        q.push_back(id);
    }

    fn pick(&self, i: u64) -> Option<String> {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (!q.is_empty()).then(|| q[(i % q.len() as u64) as usize].clone())
    }
}

/// What request `i` of kind `kind` sends.
fn request(kind: Kind, i: u64, recent: &Recent) -> Request {
    let n = i as usize;
    match kind {
        Kind::Order => order_request(n),
        Kind::InvalidOrder => Request::Post(
            "/api/orders".into(),
            INVALID_ORDERS[n % INVALID_ORDERS.len()].0.into(),
        ),
        Kind::User => Request::Get(format!("/api/users/{}", USERS[n % USERS.len()])),
        // Before any order has been placed, an unknown id (404).
        Kind::OrderStatus => Request::Get(format!(
            "/api/orders/{}",
            recent
                .pick(i)
                .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into())
        )),
        Kind::Inventory => Request::Get(format!("/api/inventory/{}", PRODUCTS[n % PRODUCTS.len()])),
    }
}

/// When to stop.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Count(u64),
    Elapsed(Duration),
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub gateway: String,
    /// Requests per second.
    pub rate: f64,
    pub until: Until,
    pub mix: Mix,
    /// At most this many requests awaiting an answer.
    pub max_in_flight: usize,
    pub timeout: Duration,
}

/// Answers of one kind.
#[derive(Debug, Default, Clone)]
pub struct KindStats {
    pub sent: u64,
    pub ok: u64,
    pub client_error: u64,
    pub server_error: u64,
    /// No answer: connection refused, reset, or the client timeout.
    pub transport_error: u64,
    pub latencies: Vec<Duration>,
}

/// The whole run.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub kinds: BTreeMap<Kind, KindStats>,
    /// Due while `max_in_flight` requests were already waiting.
    pub skipped: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn sent(&self) -> u64 {
        self.kinds.values().map(|k| k.sent).sum()
    }

    fn answered(&self) -> u64 {
        self.kinds
            .values()
            .map(|k| k.ok + k.client_error + k.server_error)
            .sum()
    }

    /// One progress line.
    pub fn progress(&self, in_flight: usize) -> String {
        let sum = |f: fn(&KindStats) -> u64| self.kinds.values().map(f).sum::<u64>();
        format!(
            "{:>5.0}s  sent {:>6}  2xx {:>6}  4xx {:>5}  5xx {:>4}  no answer {:>4}  skipped {:>4}  in flight {:>3}",
            self.elapsed.as_secs_f64(),
            self.sent(),
            sum(|k| k.ok),
            sum(|k| k.client_error),
            sum(|k| k.server_error),
            sum(|k| k.transport_error),
            self.skipped,
            in_flight,
        )
    }

    /// The summary table, one row per kind.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<32} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
            "request", "sent", "2xx", "4xx", "5xx", "no answer", "p50 ms", "p99 ms"
        );
        for (kind, s) in &self.kinds {
            let mut l = s.latencies.clone();
            l.sort_unstable();
            let pct = |p: f64| {
                percentile(&l, p)
                    .map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
            };
            let _ = writeln!(
                out,
                "{:<32} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
                kind.label(),
                s.sent,
                s.ok,
                s.client_error,
                s.server_error,
                s.transport_error,
                pct(50.0),
                pct(99.0)
            );
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "{} sent in {:.1} s ({:.1}/s), {} answered, {} skipped (in-flight bound reached)",
            self.sent(),
            secs,
            self.sent() as f64 / secs,
            self.answered(),
            self.skipped
        );
        out
    }
}

/// Sends the mix at `rate` until `until`, calling `progress` about every
/// second, and waits (within the client timeout) for the requests in flight.
pub async fn run(
    options: &LoadOptions,
    progress: impl Fn(&LoadReport, usize),
) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(
        options.rate > 0.0 && options.rate.is_finite(),
        "the rate must be a positive number of requests per second"
    );
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .pool_max_idle_per_host(options.max_in_flight.min(64))
        .build()?;
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let recent = Arc::new(Recent::default());
    let limit = Arc::new(tokio::sync::Semaphore::new(options.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let started = Instant::now();
    let mut next_progress = started + Duration::from_secs(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    loop {
        let due = started + interval.mul_f64(i as f64);
        let done = match options.until {
            Until::Count(n) => i >= n,
            Until::Elapsed(d) => due.duration_since(started) >= d,
        };
        if done {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        while tasks.try_join_next().is_some() {}
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            // Under the lock, not on a copy: the report holds every latency so far.
            let mut r = lock(&report);
            r.elapsed = started.elapsed();
            progress(&r, options.max_in_flight - limit.available_permits());
        }
        let kind = options.mix.kind(i);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            lock(&report).skipped += 1;
            i += 1;
            continue;
        };
        let req = request(kind, i, &recent);
        let (client, gateway, report, recent) = (
            client.clone(),
            options.gateway.clone(),
            report.clone(),
            recent.clone(),
        );
        lock(&report).kinds.entry(kind).or_default().sent += 1;
        tasks.spawn(async move {
            let _permit = permit;
            send_one(&client, &gateway, kind, req, &report, &recent).await;
        });
        i += 1;
    }
    while tasks.join_next().await.is_some() {}
    let mut r = std::mem::take(&mut *lock(&report));
    r.elapsed = started.elapsed();
    Ok(r)
}

/// Sends one request and counts its answer (or its absence) in `report`;
/// a placed order's id goes to `recent` for later status lookups.
async fn send_one(
    client: &reqwest::Client,
    gateway: &str,
    kind: Kind,
    req: Request,
    report: &Mutex<LoadReport>,
    recent: &Recent,
) {
    let sent = Instant::now();
    let response = req.send(client, gateway).await;
    let outcome = match response {
        Ok(r) => {
            let status = r.status();
            let body = r.bytes().await.unwrap_or_default();
            if kind == Kind::Order
                && status.as_u16() == 201
                && let Some(id) = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["orderId"].as_str().map(str::to_owned))
            {
                recent.push(id);
            }
            Some(status)
        }
        Err(_) => None,
    };
    let latency = sent.elapsed();
    let mut r = lock(report);
    let s = r.kinds.entry(kind).or_default();
    match outcome {
        Some(st) if st.is_success() => s.ok += 1,
        Some(st) if st.is_client_error() => s.client_error += 1,
        Some(_) => s.server_error += 1,
        None => s.transport_error += 1,
    }
    s.latencies.push(latency);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_sends_each_kind_about_as_often_as_its_weight() {
        let mix = Mix::default();
        let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
        for i in 0..10_000 {
            *counts.entry(mix.kind(i)).or_default() += 1;
        }
        let share = |k| counts[&k] as f64 / 10_000.0;
        assert!((share(Kind::Order) - 0.4).abs() < 0.03, "{counts:?}");
        assert!((share(Kind::InvalidOrder) - 0.1).abs() < 0.02, "{counts:?}");
        assert!((share(Kind::Inventory) - 0.1).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn a_mix_is_parsed_and_bad_ones_are_refused_with_the_reason() {
        let mix = Mix::parse("orders=1,invalid=1").unwrap();
        assert!((0..100).all(|i| matches!(mix.kind(i), Kind::Order | Kind::InvalidOrder)));
        assert!(
            Mix::parse("orders=0")
                .unwrap_err()
                .contains("sends nothing")
        );
        assert!(
            Mix::parse("payments=1")
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(Mix::parse("orders=x").unwrap_err().contains("whole number"));
        assert!(Mix::parse("orders").unwrap_err().contains("name=weight"));
    }

    #[test]
    fn invalid_orders_really_are_invalid() {
        for (body, status) in INVALID_ORDERS {
            let parsed = serde_json::from_str::<serde_json::Value>(body);
            match status {
                // Wrong total: the lines do not add up to totalAmount.
                400 if parsed.is_ok() && body.contains("99.99") => {
                    let v = parsed.unwrap();
                    assert_ne!(v["totalAmount"].as_f64(), Some(2.0 * 25.99));
                }
                400 => assert!(parsed.is_err() || !body.contains("items")),
                422 => assert!(body.contains("nobody")),
                409 => assert!(body.contains("prod3")),
                other => panic!("unexpected status {other}"),
            }
        }
    }

    #[test]
    fn recent_orders_are_bounded() {
        let recent = Recent::default();
        for i in 0..250 {
            recent.push(format!("o{i}"));
        }
        assert_eq!(lock(&recent.0).len(), Recent::KEEP);
        assert_eq!(recent.pick(0).as_deref(), Some("o150"));
    }
}
