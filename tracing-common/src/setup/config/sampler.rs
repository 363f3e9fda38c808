//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

use std::time::Duration;

use super::{
    ConfigError, DEFAULT_JAEGER_SAMPLING_ENDPOINT, check_url, list, parse_ratio, parse_u64,
};

/// Which sampler the SDK uses (`OTEL_TRACES_SAMPLER` + `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
    /// Strategies polled from a Jaeger remote-sampling endpoint
    /// (`jaeger_remote` / `parentbased_jaeger_remote`).
    JaegerRemote(JaegerRemoteConfig),
}

/// Settings of the Jaeger remote sampler, from `OTEL_TRACES_SAMPLER_ARG`
/// (`endpoint=…,pollingIntervalMs=…,initialSamplingRate=…`, as the
/// OpenTelemetry SDK environment specification defines it).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JaegerRemoteConfig {
    pub endpoint: String,
    pub polling_interval: Duration,
    /// Ratio used until the first strategy arrives, and whenever the endpoint
    /// cannot be reached.
    pub initial_sampling_rate: f64,
    /// Whether sampled/unsampled parents decide for their children.
    pub parent_based: bool,
}

pub(super) fn parse_sampler(
    name: Option<&str>,
    arg: Option<&str>,
) -> Result<SamplerConfig, ConfigError> {
    const VAR: &str = "OTEL_TRACES_SAMPLER";
    const ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    // The specification's default ratio when the argument is missing.
    let ratio = || arg.map_or(Ok(1.0), |a| parse_ratio(ARG, a));
    Ok(match name.unwrap_or("parentbased_always_on") {
        "always_on" => SamplerConfig::AlwaysOn,
        "always_off" => SamplerConfig::AlwaysOff,
        "traceidratio" => SamplerConfig::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
        "jaeger_remote" => SamplerConfig::JaegerRemote(parse_jaeger_remote(arg, false)?),
        "parentbased_jaeger_remote" => SamplerConfig::JaegerRemote(parse_jaeger_remote(arg, true)?),
        other => {
            return Err(ConfigError::new(
                VAR,
                other,
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off, parentbased_traceidratio, jaeger_remote or \
                 parentbased_jaeger_remote",
            ));
        }
    })
}

fn parse_jaeger_remote(
    arg: Option<&str>,
    parent_based: bool,
) -> Result<JaegerRemoteConfig, ConfigError> {
    const ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    let mut config = JaegerRemoteConfig {
        endpoint: DEFAULT_JAEGER_SAMPLING_ENDPOINT.into(),
        polling_interval: Duration::from_secs(60),
        initial_sampling_rate: 0.001,
        parent_based,
    };
    let Some(arg) = arg else { return Ok(config) };
    for pair in list(arg) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                ARG,
                arg,
                format!("`{pair}` is not key=value"),
            ));
        };
        match key.trim() {
            "endpoint" => config.endpoint = check_url(ARG, value.trim().to_owned())?,
            "pollingIntervalMs" => {
                let ms = parse_u64(ARG, value.trim())?;
                if ms == 0 {
                    return Err(ConfigError::new(
                        ARG,
                        arg,
                        "pollingIntervalMs must be above 0",
                    ));
                }
                config.polling_interval = Duration::from_millis(ms);
            }
            "initialSamplingRate" => config.initial_sampling_rate = parse_ratio(ARG, value.trim())?,
            other => {
                return Err(ConfigError::new(
                    ARG,
                    arg,
                    format!(
                        "unknown key `{other}`; expected endpoint, pollingIntervalMs or initialSamplingRate"
                    ),
                ));
            }
        }
    }
    Ok(config)
}
