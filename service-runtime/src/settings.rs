//! Typed settings from the environment; a bad value is an error that names
//! the variable (and hides it when it may hold a secret).

use std::str::FromStr;

use tracing_common::ConfigError;

/// `name` parsed as `T`, or `default` when unset or empty. In debug builds
/// (the tests) a variable missing from the list of every variable the
/// services read ([`crate::variables`]) stops here, so the list, the
/// deployment check and the docs cannot fall behind the code.
pub fn env_or<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    debug_assert!(
        crate::variables::all().any(|v| v.name == name),
        "{name} is read but not listed in service-runtime/variables.tsv: add it there"
    );
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
            variable: name,
            value: v,
            reason: e.to_string(),
        }),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
            variable: name,
            value: "<not UTF-8>".into(),
            reason: "the value is not valid UTF-8".into(),
        }),
    }
}

/// A URL setting: absolute http(s), without a trailing slash.
pub fn env_url(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let value: String = env_or(name, default.to_owned())?;
    match value.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError {
            variable: name,
            value,
            reason: "expected an absolute http:// or https:// URL".into(),
        }),
    }
}

/// A Postgres URL setting, checked now: a malformed one is a configuration
/// error naming the variable, not a dependency to wait for at start-up.
#[cfg(feature = "postgres")]
pub fn env_database_url(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let value: String = env_or(name, default.to_owned())?;
    let scheme_ok = value.starts_with("postgres://") || value.starts_with("postgresql://");
    match value.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(_) if scheme_ok => Ok(value),
        Ok(_) => Err(ConfigError {
            variable: name,
            value: "<hidden>".into(),
            reason: "expected a postgres:// or postgresql:// URL".into(),
        }),
        Err(e) => Err(ConfigError {
            variable: name,
            // The URL may hold a password: say why, not what.
            value: "<hidden>".into(),
            reason: format!("not a Postgres URL: {e}"),
        }),
    }
}

/// Milliseconds setting as a `Duration`.
pub fn env_millis(name: &'static str, default_ms: u64) -> Result<std::time::Duration, ConfigError> {
    env_or(name, default_ms).map(std::time::Duration::from_millis)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not listed in service-runtime/variables.tsv")]
    fn a_variable_missing_from_the_list_is_refused_in_debug_builds() {
        let _ = super::env_or("NOT_A_LISTED_VARIABLE", 1_u16);
    }

    #[test]
    fn a_listed_variable_reads_its_default() {
        assert_eq!(
            super::env_or("OUTBOX_RELAY_MIN_AGE_MS", 7_u64).ok(),
            Some(7)
        );
    }
}
