//! A service's life: bind at once, wait for its database with backoff while
//! `/healthz` answers and `/readyz` says why it is not ready, then serve;
//! on SIGTERM or Ctrl-C stop HTTP, the background work and the producer in
//! that order.

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Work to do last when a service stops, on a blocking thread: flushing a
/// Kafka producer (`kafka::flush_at_stop`).
pub type Flush = Box<dyn FnOnce() + Send + 'static>;

/// What a service runs once its dependencies answer.
pub struct Started {
    pub router: axum::Router,
    pub background: Background,
    /// Runs after the background work stopped (a producer's flush).
    pub flush: Option<Flush>,
}

/// Longest wait between two attempts to reach a dependency at start-up.
pub const MAX_STARTUP_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits between attempts to reach a dependency at start-up: `first`, then
/// doubling up to [`MAX_STARTUP_BACKOFF`].
pub fn startup_backoff(first: std::time::Duration) -> impl Iterator<Item = std::time::Duration> {
    std::iter::successors(Some(first), |d| Some((*d * 2).min(MAX_STARTUP_BACKOFF)))
}

pub use tokio_util::sync::CancellationToken;

/// Background work of a service (consumers, relays) that stops together.
#[derive(Default)]
pub struct Background {
    stop: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Background {
    /// Cancelled when the service stops; loops wait on its `cancelled()` in
    /// `select!` next to their work.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }
}

/// A started service: where it listens, and how to stop it in order.
pub struct Running {
    pub addr: std::net::SocketAddr,
    http_stop: tokio::sync::oneshot::Sender<()>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Connects and builds the app; done at once for services without
    /// dependencies, retried with backoff for the others.
    startup: tokio::task::JoinHandle<()>,
    started: tokio::sync::watch::Receiver<bool>,
    /// What start-up waits for, as `/readyz` says it.
    waiting: std::sync::Arc<std::sync::Mutex<String>>,
    /// Filled by `startup`: what [`Running::stop`] stops after HTTP.
    parts: PartsSlot,
}

type PartsSlot = std::sync::Arc<std::sync::Mutex<Option<(Background, Option<Flush>)>>>;

/// Serves `/healthz` (alive) and `/readyz` (503, saying what start-up waits
/// for) until the app is built, then hands every request to the app.
#[derive(Clone, Default)]
struct Gate {
    app: std::sync::Arc<std::sync::OnceLock<axum::Router>>,
    waiting: std::sync::Arc<std::sync::Mutex<String>>,
}

async fn gate(
    axum::extract::State(gate): axum::extract::State<Gate>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    if let Some(app) = gate.app.get() {
        return match app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let waiting = gate.waiting.lock().map(|w| w.clone()).unwrap_or_default();
    let unavailable = http::StatusCode::SERVICE_UNAVAILABLE;
    match request.uri().path() {
        "/healthz" => "ok".into_response(),
        "/readyz" => (
            unavailable,
            axum::Json(serde_json::json!({ "ready": false, "reason": waiting })),
        )
            .into_response(),
        _ => (
            unavailable,
            [(http::header::RETRY_AFTER, "1")],
            axum::Json(order_contract::error::ErrorBody::new(
                "starting",
                format!("the service is starting: {waiting}"),
            )),
        )
            .into_response(),
    }
}

impl Running {
    /// Serves `router` on `listener` at once, until [`Running::stop`].
    pub fn serve(
        listener: tokio::net::TcpListener,
        router: axum::Router,
        background: Background,
        flush: Option<Flush>,
    ) -> std::io::Result<Self> {
        let started = Started {
            router,
            background,
            flush,
        };
        Self::serve_when_connected(
            listener,
            "nothing",
            || async { Ok::<_, std::convert::Infallible>(()) },
            move |()| async move { started },
        )
    }

    /// Serves on `listener` at once and starts the app once `connect`
    /// succeeds. Until then `/healthz` answers 200, `/readyz` 503 naming
    /// `dependency` and the last error, and every other route 503 with
    /// `Retry-After`. Each failed attempt is logged and retried after a delay
    /// that doubles from 0.5 s up to [`MAX_STARTUP_BACKOFF`]: a dependency
    /// that starts late (Postgres in compose, a database pod on Kubernetes)
    /// costs a wait, never a crash loop. `build` then makes the app from what
    /// `connect` returned.
    pub fn serve_when_connected<T, E, C, CF, B, BF>(
        listener: tokio::net::TcpListener,
        dependency: &'static str,
        connect: C,
        build: B,
    ) -> std::io::Result<Self>
    where
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
        C: Fn() -> CF + Send + 'static,
        CF: std::future::Future<Output = Result<T, E>> + Send,
        B: FnOnce(T) -> BF + Send + 'static,
        BF: std::future::Future<Output = Started> + Send,
    {
        let addr = listener.local_addr()?;
        let gate_state = Gate::default();
        if let Ok(mut w) = gate_state.waiting.lock() {
            *w = format!("connecting to {dependency}");
        }
        let router = axum::Router::new()
            .fallback(gate)
            .with_state(gate_state.clone());
        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let parts: PartsSlot = Default::default();
        let (started_tx, started) = tokio::sync::watch::channel(false);
        let slot = parts.clone();
        let waiting = gate_state.waiting.clone();
        let startup = tokio::spawn(async move {
            let mut delays = startup_backoff(std::time::Duration::from_millis(500));
            let mut attempt = 1u32;
            let value = loop {
                let delay = delays.next().unwrap_or(MAX_STARTUP_BACKOFF);
                match connect().await {
                    Ok(value) => break value,
                    Err(e) => {
                        tracing::warn!(
                            dependency,
                            attempt,
                            retry_in_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                            error = %e,
                            "cannot reach a dependency at start-up; retrying"
                        );
                        if let Ok(mut w) = gate_state.waiting.lock() {
                            *w = format!("waiting for {dependency} (attempt {attempt}: {e})");
                        }
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                }
            };
            if attempt > 1 {
                tracing::info!(
                    dependency,
                    attempts = attempt,
                    "dependency reachable; starting"
                );
            }
            let started = build(value).await;
            if let Ok(mut slot) = slot.lock() {
                *slot = Some((started.background, started.flush));
            }
            let _ = gate_state.app.set(started.router);
            let _ = started_tx.send(true);
        });
        Ok(Self {
            addr,
            http_stop,
            http,
            startup,
            started,
            waiting,
            parts,
        })
    }

    /// Resolves once the app serves (its dependencies answered).
    pub async fn started(&self) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|s| *s).await;
    }

    /// `self` once the app serves, or what start-up still waits for after
    /// `timeout` (tests: a missing Postgres fails fast and says so).
    pub async fn started_within(self, timeout: std::time::Duration) -> Result<Self, String> {
        match tokio::time::timeout(timeout, self.started()).await {
            Ok(()) => Ok(self),
            Err(_) => Err(self.waiting.lock().map(|w| w.clone()).unwrap_or_default()),
        }
    }

    /// `http://addr`, for tests and local wiring.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops in the order that loses nothing: HTTP drains its in-flight
    /// requests, then consumers and relays finish their current record, then
    /// the producer flushes what they sent. Spans are the caller's to flush
    /// (the telemetry guard) after this returns.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.http_stop.send(());
        let served = match self.http.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        };
        // Still waiting for a dependency: nothing else runs yet.
        self.startup.abort();
        let _ = self.startup.await;
        let parts = self.parts.lock().ok().and_then(|mut p| p.take());
        let Some((background, flush)) = parts else {
            return served;
        };
        background.stop.cancel();
        background.tasks.close();
        background.tasks.wait().await;
        if let Some(flush) = flush {
            let _ = tokio::task::spawn_blocking(flush).await;
        }
        served
    }

    /// Runs until SIGTERM or Ctrl-C, then [`Running::stop`]s.
    pub async fn until_signal(self) -> std::io::Result<()> {
        shutdown_signal().await;
        self.stop().await
    }
}
