//! Settings from the environment, read once at start-up.

use tracing_common::ConfigError;
use tracing_common::faults::Faults;
use tracing_common::service::{env_database_url, env_or};

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub database_url: String,
    /// Demo fault injection (`FAULTS`); none unless set.
    pub faults: Faults,
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
        })
    }
}
