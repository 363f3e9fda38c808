//! Settings from the environment, read once at start-up.

use std::time::Duration;

use service_runtime::edge::EdgeLimits;
use service_runtime::settings::{env_millis, env_or, env_url};
use tracing_common::ConfigError;
use tracing_common::axum::{IncomingBaggage, IncomingTrace};

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub user_service_url: String,
    pub order_service_url: String,
    pub inventory_service_url: String,
    /// Budget of each call to a service (order creation calls two more inside).
    pub http_timeout: Duration,
    /// `GATEWAY_INCOMING_TRACE`: `continue` (default) or `new-root`.
    pub incoming_trace: IncomingTrace,
    /// `GATEWAY_INCOMING_BAGGAGE`: `drop` (default) or `keep`.
    pub incoming_baggage: IncomingBaggage,
    /// `SERVER_REQUEST_TIMEOUT_MS` (default: the upstream budget plus 2 s, so
    /// the gateway's own 504 comes first) and `MAX_REQUEST_HEADER_BYTES`.
    pub limits: EdgeLimits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let http_timeout = env_millis("HTTP_CLIENT_TIMEOUT_MS", 10_000)?;
        Ok(Self {
            port: env_or("PORT", 3000)?,
            user_service_url: env_url("USER_SERVICE_URL", "http://127.0.0.1:3001")?,
            order_service_url: env_url("ORDER_SERVICE_URL", "http://127.0.0.1:3003")?,
            inventory_service_url: env_url("INVENTORY_SERVICE_URL", "http://127.0.0.1:3004")?,
            http_timeout,
            incoming_trace: env_or("GATEWAY_INCOMING_TRACE", IncomingTrace::Continue)?,
            incoming_baggage: env_or("GATEWAY_INCOMING_BAGGAGE", IncomingBaggage::Drop)?,
            limits: EdgeLimits::from_env(http_timeout + Duration::from_secs(2))?,
        })
    }
}

impl Config {
    /// What a test starts the gateway with: a free port, the three services,
    /// 2 s calls, incoming traces continued and baggage dropped, the default
    /// limits.
    pub fn for_tests(
        user_service_url: String,
        order_service_url: String,
        inventory_service_url: String,
    ) -> Self {
        Self {
            port: 0,
            user_service_url,
            order_service_url,
            inventory_service_url,
            http_timeout: Duration::from_secs(2),
            incoming_trace: IncomingTrace::Continue,
            incoming_baggage: IncomingBaggage::Drop,
            limits: EdgeLimits::default(),
        }
    }
}
