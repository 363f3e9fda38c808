//! Settings from the environment, read once at start-up.

use std::time::Duration;

use service_runtime::edge::{EdgeLimits, SERVICE_REQUEST_TIMEOUT};
use service_runtime::faults::Faults;
use service_runtime::settings::{env_database_url, env_millis, env_or};
use tracing_common::ConfigError;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub database_url: String,
    pub kafka_brokers: String,
    /// Upper bound on waiting for the broker to acknowledge a reply: above a
    /// broker failover (a dead broker is fenced after Kafka's
    /// `broker.session.timeout.ms`, 9 s by default), so a failover delays
    /// replies instead of failing them.
    pub kafka_send_timeout: Duration,
    /// Demo fault injection (`FAULTS`); none unless set.
    pub faults: Faults,
    /// `SERVER_REQUEST_TIMEOUT_MS` (default 9 s, below the gateway's 10 s
    /// upstream budget) and `MAX_REQUEST_HEADER_BYTES` (default 16384).
    pub limits: EdgeLimits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", 3004)?,
            database_url: env_database_url(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/inventory",
            )?,
            kafka_brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092".to_owned())?,
            kafka_send_timeout: env_millis("KAFKA_SEND_TIMEOUT_MS", 30000)?,
            faults: Faults::from_env(crate::FAULT_STEPS)?,
            limits: EdgeLimits::from_env(SERVICE_REQUEST_TIMEOUT)?,
        })
    }
}

impl Config {
    /// What a test starts the service with: a free port, its database and
    /// brokers, sends bounded to 5 s, no faults, the default limits.
    pub fn for_tests(database_url: String, kafka_brokers: String) -> Self {
        Self {
            port: 0,
            database_url,
            kafka_brokers,
            kafka_send_timeout: Duration::from_secs(5),
            faults: Faults::default(),
            limits: EdgeLimits::default(),
        }
    }
}
