//! Settings from the environment, read once at start-up.

use std::time::Duration;

use service_runtime::edge::{EdgeLimits, SERVICE_REQUEST_TIMEOUT};
use service_runtime::settings::{env_database_url, env_millis, env_or, env_url};
use tracing_common::ConfigError;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub database_url: String,
    pub kafka_brokers: String,
    pub user_service_url: String,
    pub inventory_service_url: String,
    /// Budget of each call to user- and inventory-service.
    pub http_timeout: Duration,
    /// How long a request waits for its event's acknowledgement before it
    /// answers and leaves the event to the outbox relay (which keeps sending
    /// it: an event is never given up and sent again).
    pub publish_wait: Duration,
    /// How often the outbox relay looks for events left unpublished.
    pub outbox_interval: Duration,
    /// Events younger than this are left to the relay of the replica that
    /// wrote them (its request wakes it); older ones any replica's relay takes.
    pub outbox_min_age: Duration,
    /// `SERVER_REQUEST_TIMEOUT_MS` (default 9 s, below the gateway's 10 s
    /// upstream budget) and `MAX_REQUEST_HEADER_BYTES` (default 16384).
    pub limits: EdgeLimits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", 3003)?,
            database_url: env_database_url(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/orders",
            )?,
            kafka_brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092".to_owned())?,
            user_service_url: env_url("USER_SERVICE_URL", "http://127.0.0.1:3001")?,
            inventory_service_url: env_url("INVENTORY_SERVICE_URL", "http://127.0.0.1:3004")?,
            http_timeout: env_millis("HTTP_CLIENT_TIMEOUT_MS", 2000)?,
            publish_wait: env_millis("KAFKA_PUBLISH_WAIT_MS", 1000)?,
            outbox_interval: env_millis("OUTBOX_RELAY_INTERVAL_MS", 2000)?,
            outbox_min_age: env_millis("OUTBOX_RELAY_MIN_AGE_MS", 5000)?,
            limits: EdgeLimits::from_env(SERVICE_REQUEST_TIMEOUT)?,
        })
    }
}

impl Config {
    /// What a test starts the service with: a free port, its database,
    /// brokers and peers; 2 s calls, a 1 s publish wait, the outbox relay
    /// every 200 ms for rows older than 5 s, the default limits.
    pub fn for_tests(
        database_url: String,
        kafka_brokers: String,
        user_service_url: String,
        inventory_service_url: String,
    ) -> Self {
        Self {
            port: 0,
            database_url,
            kafka_brokers,
            user_service_url,
            inventory_service_url,
            http_timeout: Duration::from_secs(2),
            publish_wait: Duration::from_secs(1),
            outbox_interval: Duration::from_millis(200),
            outbox_min_age: Duration::from_secs(5),
            limits: EdgeLimits::default(),
        }
    }
}
