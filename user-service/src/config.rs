//! Settings from the environment, read once at start-up.

use service_runtime::edge::{EdgeLimits, SERVICE_REQUEST_TIMEOUT};
use service_runtime::faults::Faults;
use service_runtime::settings::{env_database_url, env_or};
use tracing_common::ConfigError;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub database_url: String,
    /// Demo fault injection (`FAULTS`); none unless set.
    pub faults: Faults,
    /// `SERVER_REQUEST_TIMEOUT_MS` (default 9 s, below the gateway's 10 s
    /// upstream budget) and `MAX_REQUEST_HEADER_BYTES` (default 16384).
    pub limits: EdgeLimits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", 3001)?,
            database_url: env_database_url(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/users",
            )?,
            faults: Faults::from_env(crate::FAULT_STEPS)?,
            limits: EdgeLimits::from_env(SERVICE_REQUEST_TIMEOUT)?,
        })
    }
}

impl Config {
    /// What a test starts the service with: a free port, `database_url`,
    /// no faults, the default limits.
    pub fn for_tests(database_url: String) -> Self {
        Self {
            port: 0,
            database_url,
            faults: Faults::default(),
            limits: EdgeLimits::default(),
        }
    }
}
