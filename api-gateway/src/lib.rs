//! api-gateway: the public entry point. Routes `/api/*` to the services,
//! passes their answers through, and is the trust boundary for trace
//! context (see [`config::Config::incoming_trace`]).

pub mod config;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use service_runtime::edge;
use service_runtime::lifecycle::{Background, Running};
use tracing_common::reqwest::TracedClient;
use tracing_common::{ServerTracingLayer, TrustPolicy};

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub http: TracedClient,
    pub user_service_url: String,
    pub order_service_url: String,
    pub inventory_service_url: String,
    pub policy: TrustPolicy,
    /// Request timeout and header budget (`service_runtime::edge`).
    pub limits: service_runtime::edge::EdgeLimits,
}

// Request bodies above this are refused with 413 before any service is
// called: the limit order-service holds them to.
use order_contract::error::MAX_BODY_BYTES;
use order_contract::http::paths::{self, with_id};

pub fn app(state: AppState) -> Router {
    let policy = state.policy;
    let mut router = Router::new().route(
        "/api/orders",
        post(create_order).layer(axum::middleware::from_fn(edge::require_json)),
    );
    for (public, service, path) in READS {
        router = router.route(
            public,
            get(move |State(s): State<AppState>, Path(id): Path<String>| {
                read(s, service, path, id)
            }),
        );
    }
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.limits.layer())
        .layer(ServerTracingLayer::new(policy))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves the gateway on `listener` with the settings of `config`.
pub async fn start(config: &Config, listener: tokio::net::TcpListener) -> anyhow::Result<Running> {
    let state = AppState {
        http: tracing_common::reqwest::http_client(config.http_timeout)?,
        user_service_url: config.user_service_url.clone(),
        order_service_url: config.order_service_url.clone(),
        inventory_service_url: config.inventory_service_url.clone(),
        policy: TrustPolicy::new(config.incoming_trace, config.incoming_baggage),
        limits: config.limits,
    };
    Ok(Running::serve(
        listener,
        app(state),
        Background::default(),
        None,
    )?)
}

/// Path segments are forwarded percent-encoded (all but letters, digits, `-`
/// and `_`) so an id cannot change the route.
fn segment(s: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    percent_encoding::utf8_percent_encode(s, KEPT).to_string()
}

/// A service behind the gateway.
#[derive(Debug, Clone, Copy)]
enum Upstream {
    User,
    Order,
    Inventory,
}

impl Upstream {
    fn name(self) -> &'static str {
        match self {
            Upstream::User => "user-service",
            Upstream::Order => "order-service",
            Upstream::Inventory => "inventory-service",
        }
    }

    fn base_url(self, s: &AppState) -> &str {
        match self {
            Upstream::User => &s.user_service_url,
            Upstream::Order => &s.order_service_url,
            Upstream::Inventory => &s.inventory_service_url,
        }
    }
}

/// The gateway's public reads: its route, the service behind it and that
/// service's route (`order_contract::http::paths`). A new read through the
/// gateway is one line here.
const READS: [(&str, Upstream, &str); 3] = [
    ("/api/users/{id}", Upstream::User, paths::USER),
    ("/api/orders/{id}", Upstream::Order, paths::ORDER),
    (
        "/api/inventory/{product_id}",
        Upstream::Inventory,
        paths::INVENTORY,
    ),
];

/// `GET` of one resource by id, passed to the service that owns it under a
/// CLIENT span `GET`.
async fn read(s: AppState, service: Upstream, path: &'static str, id: String) -> Response {
    let url = format!("{}{}", service.base_url(&s), with_id(path, &segment(&id)));
    forward(s.http.get(url), service.name()).await
}

/// `POST /api/orders` (SERVER span `POST /api/orders`,
/// `names::GATEWAY_CREATE_ORDER`): passed to order-service under a CLIENT
/// span `POST`.
async fn create_order(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A body over the limit (or one that could not be read) is answered here,
    // as JSON like every other refusal, without calling order-service.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return order_contract::error::refused_body(&rejection, "invalid_body"),
    };
    let mut request = s
        .http
        .post(format!("{}{}", Upstream::Order.base_url(&s), paths::ORDERS))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = headers.get("idempotency-key") {
        request = request.header("idempotency-key", key.clone());
    }
    forward(request, Upstream::Order.name()).await
}

/// Sends and passes the service's status and JSON body through; a service
/// that cannot be reached becomes 502 (or 504 on timeout) with a clear body,
/// and so does a service's own 408 (its request timeout): the caller's
/// request did not time out, the gateway's call did.
async fn forward(request: reqwest_middleware::RequestBuilder, service: &'static str) -> Response {
    match request.send().await {
        Ok(response) if response.status() == reqwest::StatusCode::REQUEST_TIMEOUT => unavailable(
            StatusCode::GATEWAY_TIMEOUT,
            service,
            "the service gave up on the request (its SERVER_REQUEST_TIMEOUT_MS)",
        ),
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match response.bytes().await {
                Ok(bytes) => {
                    let mut out = Response::new(Body::from(bytes));
                    *out.status_mut() = status;
                    out.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/json"));
                    out
                }
                Err(e) => unavailable(StatusCode::BAD_GATEWAY, service, &e.to_string()),
            }
        }
        Err(e) => {
            let status = if tracing_common::reqwest::error_kind(&e) == "timeout" {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            unavailable(status, service, &e.to_string())
        }
    }
}

fn unavailable(status: StatusCode, service: &'static str, detail: &str) -> Response {
    tracing::warn!(service, error = detail, "upstream call failed");
    order_contract::error::response(
        status,
        "upstream_unavailable",
        format!("{service} is unavailable"),
    )
}
