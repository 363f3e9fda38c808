//! Telemetry settings, read once from the standard `OTEL_*` variables.
//!
//! Parsing is separate from the environment ([`TelemetryConfig::from_lookup`]) so
//! every variable and every bad value is unit-tested without touching process
//! state. A bad value is an error that names the variable; nothing is silently
//! ignored, because a typo in a sampler name should not quietly drop all traces.

use std::collections::BTreeMap;

mod otlp;
mod sampler;

pub use otlp::{CaCertificate, OtlpCompression, OtlpConfig, OtlpHeaders, OtlpProtocol};
pub use sampler::{JaegerRemoteConfig, SamplerConfig};

use otlp::{otlp_config, percent_decode};
use sampler::parse_sampler;

/// An environment variable held a value this crate cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The variable's name, so the operator knows what to fix.
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Where finished spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExporterConfig {
    Otlp(OtlpConfig),
    Zipkin {
        endpoint: String,
    },
    /// Human-readable spans on stdout, for local debugging.
    Console,
}

/// One propagation format named in `OTEL_PROPAGATORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropagatorKind {
    TraceContext,
    Baggage,
    B3,
    B3Multi,
    Jaeger,
}

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line, with `trace_id` and `span_id`.
    Json,
    /// Multi-line coloured output for a developer's terminal.
    Pretty,
}

/// Everything [`crate::init`] needs, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TelemetryConfig {
    pub service_name: String,
    /// `OTEL_SDK_DISABLED=true`: no provider, no exporter, no span is recorded.
    pub sdk_disabled: bool,
    pub sampler: SamplerConfig,
    /// Empty when `OTEL_TRACES_EXPORTER=none`.
    pub exporters: Vec<ExporterConfig>,
    /// Empty when `OTEL_PROPAGATORS=none`.
    pub propagators: Vec<PropagatorKind>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, already percent-decoded.
    pub resource_attributes: BTreeMap<String, String>,
    pub log_format: LogFormat,
    /// `RUST_LOG`, passed to `tracing_subscriber::EnvFilter`.
    pub log_filter: String,
    /// [`STATS_FILE_VARIABLE`]: where [`crate::TelemetryGuard`]'s shutdown
    /// writes the process's [`crate::ExportStats`] as JSON; `None` writes nothing.
    pub stats_file: Option<std::path::PathBuf>,
    /// What belongs to the application rather than to the environment: the
    /// baggage keys copied onto every span ([`Self::with_span_baggage`]).
    pub span_baggage: &'static [&'static str],
    /// `deployment.environment.name` where `OTEL_RESOURCE_ATTRIBUTES` does
    /// not say ([`Self::with_environment`]).
    pub environment: Option<String>,
}

/// The variable naming the file that telemetry shutdown writes its span
/// counts to, as one JSON object (see [`crate::ExportStats::to_json`]):
/// for benchmarks and tests, which need the figures from a process that has
/// exited, without reading its log.
pub const STATS_FILE_VARIABLE: &str = "TELEMETRY_STATS_FILE";

pub(crate) const DEFAULT_OTLP_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
pub(crate) const DEFAULT_OTLP_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";
const DEFAULT_ZIPKIN_ENDPOINT: &str = "http://127.0.0.1:9411/api/v2/spans";
pub(super) const DEFAULT_JAEGER_SAMPLING_ENDPOINT: &str = "http://127.0.0.1:5778/sampling";

impl TelemetryConfig {
    /// Reads the process environment. `default_service_name` is used when
    /// `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(default_service_name: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(default_service_name, |name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::new(
                name,
                "<not UTF-8>",
                "the value is not valid UTF-8",
            )),
        })
    }

    /// Parses from any source of variables; `lookup` returns `Ok(None)` for unset.
    pub fn from_lookup(
        default_service_name: &str,
        lookup: impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let sdk_disabled = match vars.get("OTEL_SDK_DISABLED")? {
            None => false,
            Some(v) => parse_bool("OTEL_SDK_DISABLED", &v)?,
        };
        let service_name = vars
            .get("OTEL_SERVICE_NAME")?
            .unwrap_or_else(|| default_service_name.into());
        let sampler = parse_sampler(
            vars.get("OTEL_TRACES_SAMPLER")?.as_deref(),
            vars.get("OTEL_TRACES_SAMPLER_ARG")?.as_deref(),
        )?;
        // Read (and checked) whether or not `otlp` is among the exporters.
        let otlp = otlp_config(&vars)?;
        let exporters = exporters(&vars, &otlp)?;
        let propagators = propagators(&vars)?;
        let resource_attributes = match vars.get("OTEL_RESOURCE_ATTRIBUTES")? {
            None => BTreeMap::new(),
            Some(v) => parse_resource_attributes(&v)?,
        };
        let (log_format, log_filter) = log_settings(&vars)?;
        let stats_file = vars.get(STATS_FILE_VARIABLE)?.map(std::path::PathBuf::from);
        Ok(Self {
            service_name,
            sdk_disabled,
            sampler,
            exporters,
            propagators,
            resource_attributes,
            log_format,
            log_filter,
            stats_file,
            span_baggage: &[],
            environment: None,
        })
    }

    /// Copies these baggage entries, where a span's parent context carries
    /// them, onto every span as attributes (an allow-list: other baggage is
    /// never copied).
    pub fn with_span_baggage(mut self, keys: &'static [&'static str]) -> Self {
        self.span_baggage = keys;
        self
    }

    /// The `deployment.environment.name` resource attribute, unless
    /// `OTEL_RESOURCE_ATTRIBUTES` sets it.
    pub fn with_environment(mut self, name: impl Into<String>) -> Self {
        self.environment = Some(name.into());
        self
    }
}

/// The variables, read through the caller's lookup.
pub(super) struct Vars<'a>(&'a dyn Fn(&'static str) -> Result<Option<String>, ConfigError>);

impl Vars<'_> {
    /// The trimmed value; an empty value means unset, as the SDK
    /// environment specification says.
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        Ok((self.0)(name)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    /// An OTLP setting: the signal-specific variable wins over the generic one.
    fn signal(
        &self,
        traces: &'static str,
        generic: &'static str,
    ) -> Result<Option<(&'static str, String)>, ConfigError> {
        Ok(match self.get(traces)? {
            Some(v) => Some((traces, v)),
            None => self.get(generic)?.map(|v| (generic, v)),
        })
    }
}

/// `OTEL_TRACES_EXPORTER` (default `otlp`), each exporter once.
fn exporters(vars: &Vars<'_>, otlp: &OtlpConfig) -> Result<Vec<ExporterConfig>, ConfigError> {
    const VARIABLE: &str = "OTEL_TRACES_EXPORTER";
    let zipkin_endpoint = match vars.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT")? {
        None => DEFAULT_ZIPKIN_ENDPOINT.into(),
        Some(v) => check_url("OTEL_EXPORTER_ZIPKIN_ENDPOINT", v)?,
    };
    let value = vars.get(VARIABLE)?.unwrap_or_else(|| "otlp".into());
    let mut exporters = Vec::new();
    for name in list(&value) {
        let exporter = match name {
            "otlp" => ExporterConfig::Otlp(otlp.clone()),
            "zipkin" => {
                needs_feature(VARIABLE, &value, cfg!(feature = "zipkin"), "zipkin")?;
                ExporterConfig::Zipkin {
                    endpoint: zipkin_endpoint.clone(),
                }
            }
            "console" => {
                needs_feature(VARIABLE, &value, cfg!(feature = "console"), "console")?;
                ExporterConfig::Console
            }
            "none" => continue,
            other => {
                return Err(ConfigError::new(
                    VARIABLE,
                    &value,
                    format!("unknown exporter `{other}`; expected otlp, zipkin, console or none"),
                ));
            }
        };
        if !exporters.contains(&exporter) {
            exporters.push(exporter);
        }
    }
    Ok(exporters)
}

/// `OTEL_PROPAGATORS` (default `tracecontext,baggage`), each once, in order.
fn propagators(vars: &Vars<'_>) -> Result<Vec<PropagatorKind>, ConfigError> {
    const VARIABLE: &str = "OTEL_PROPAGATORS";
    let value = vars
        .get(VARIABLE)?
        .unwrap_or_else(|| "tracecontext,baggage".into());
    let mut propagators = Vec::new();
    for name in list(&value) {
        let kind = match name {
            "tracecontext" => PropagatorKind::TraceContext,
            "baggage" => PropagatorKind::Baggage,
            "b3" | "b3multi" => {
                needs_feature(VARIABLE, &value, cfg!(feature = "zipkin"), "zipkin")?;
                if name == "b3" {
                    PropagatorKind::B3
                } else {
                    PropagatorKind::B3Multi
                }
            }
            "jaeger" => PropagatorKind::Jaeger,
            "none" => continue,
            other => {
                return Err(ConfigError::new(
                    VARIABLE,
                    &value,
                    format!(
                        "unknown propagator `{other}`; expected tracecontext, baggage, b3, b3multi, jaeger or none"
                    ),
                ));
            }
        };
        if !propagators.contains(&kind) {
            propagators.push(kind);
        }
    }
    Ok(propagators)
}

/// `LOG_FORMAT` and `RUST_LOG`, the filter checked now.
fn log_settings(vars: &Vars<'_>) -> Result<(LogFormat, String), ConfigError> {
    let format = match vars.get("LOG_FORMAT")?.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(other) => {
            return Err(ConfigError::new(
                "LOG_FORMAT",
                other,
                "expected `json` or `pretty`",
            ));
        }
    };
    let filter = vars.get("RUST_LOG")?.unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| ConfigError::new("RUST_LOG", &filter, e.to_string()))?;
    Ok((format, filter))
}

impl TelemetryConfig {
    /// The OTLP exporter's settings, when `OTEL_TRACES_EXPORTER` includes `otlp`.
    pub fn otlp(&self) -> Option<&OtlpConfig> {
        self.exporters.iter().find_map(|e| match e {
            ExporterConfig::Otlp(otlp) => Some(otlp),
            _ => None,
        })
    }
}

pub(super) fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::new(
            variable,
            value,
            "expected `true` or `false`",
        )),
    }
}

pub(super) fn parse_u64(variable: &'static str, value: &str) -> Result<u64, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::new(variable, value, "expected a whole number of milliseconds"))
}

pub(super) fn parse_ratio(variable: &'static str, value: &str) -> Result<f64, ConfigError> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(ConfigError::new(
            variable,
            value,
            "expected a ratio between 0 and 1",
        )),
    }
}

pub(super) fn check_url(variable: &'static str, value: String) -> Result<String, ConfigError> {
    match value.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(value)
        }
        _ => Err(ConfigError::new(
            variable,
            &value,
            "expected an absolute http:// or https:// URL",
        )),
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C baggage octets).
fn parse_resource_attributes(value: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let mut out = BTreeMap::new();
    for pair in list(value) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                VAR,
                value,
                format!("`{pair}` is not key=value"),
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError::new(
                VAR,
                value,
                format!("`{pair}` has an empty key"),
            ));
        }
        let v = percent_decode(v.trim())
            .ok_or_else(|| ConfigError::new(VAR, value, format!("`{pair}` has a bad %-escape")))?;
        out.insert(k.to_owned(), v);
    }
    Ok(out)
}

/// A value this build cannot serve: the crate feature that would is off.
fn needs_feature(
    variable: &'static str,
    value: &str,
    enabled: bool,
    feature: &str,
) -> Result<(), ConfigError> {
    if enabled {
        Ok(())
    } else {
        Err(ConfigError::new(
            variable,
            value,
            format!("this build of tracing-common leaves out its `{feature}` feature"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup("svc", move |name| {
            Ok(vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        })
    }

    fn err_var(vars: &[(&str, &str)]) -> &'static str {
        parse(vars).expect_err("value should be refused").variable
    }

    #[test]
    fn a_value_whose_feature_a_build_leaves_out_is_refused_naming_the_feature() {
        // Test builds have every feature on (tracing-common-testing asks for
        // all of them), so the refusal itself is checked directly.
        assert!(needs_feature("OTEL_PROPAGATORS", "b3", true, "zipkin").is_ok());
        let e = needs_feature("OTEL_PROPAGATORS", "tracecontext,b3", false, "zipkin").unwrap_err();
        assert_eq!(e.variable, "OTEL_PROPAGATORS");
        assert!(e.to_string().contains("`zipkin` feature"), "{e}");
        for (variable, value) in [
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_PROPAGATORS", "b3multi"),
            ("OTEL_PROPAGATORS", "jaeger"),
        ] {
            assert!(parse(&[(variable, value)]).is_ok(), "{variable}={value}");
        }
    }

    #[test]
    fn defaults_are_otlp_grpc_parent_based_always_on_with_w3c_propagation() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.service_name, "svc");
        assert!(!c.sdk_disabled);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(
            c.exporters,
            vec![ExporterConfig::Otlp(OtlpConfig::new(
                "http://127.0.0.1:4317",
                OtlpProtocol::Grpc
            ))]
        );
        assert_eq!(
            c.propagators,
            vec![PropagatorKind::TraceContext, PropagatorKind::Baggage]
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn every_sampler_name_parses_with_its_argument() {
        let cases: &[(&str, Option<&str>, SamplerConfig)] = &[
            ("always_on", None, SamplerConfig::AlwaysOn),
            ("always_off", None, SamplerConfig::AlwaysOff),
            (
                "traceidratio",
                Some("0.25"),
                SamplerConfig::TraceIdRatio(0.25),
            ),
            ("traceidratio", None, SamplerConfig::TraceIdRatio(1.0)),
            (
                "parentbased_always_on",
                None,
                SamplerConfig::ParentBasedAlwaysOn,
            ),
            (
                "parentbased_always_off",
                None,
                SamplerConfig::ParentBasedAlwaysOff,
            ),
            (
                "parentbased_traceidratio",
                Some("0.1"),
                SamplerConfig::ParentBasedTraceIdRatio(0.1),
            ),
        ];
        for (name, arg, want) in cases {
            let mut vars = vec![("OTEL_TRACES_SAMPLER", *name)];
            if let Some(arg) = arg {
                vars.push(("OTEL_TRACES_SAMPLER_ARG", arg));
            }
            assert_eq!(&parse(&vars).unwrap().sampler, want, "{name}");
        }
    }

    #[test]
    fn jaeger_remote_sampler_reads_endpoint_interval_and_initial_rate() {
        let c = parse(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote"),
            (
                "OTEL_TRACES_SAMPLER_ARG",
                "endpoint=http://jaeger:5778/sampling, pollingIntervalMs=5000,initialSamplingRate=0.25",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.sampler,
            SamplerConfig::JaegerRemote(JaegerRemoteConfig {
                endpoint: "http://jaeger:5778/sampling".into(),
                polling_interval: Duration::from_millis(5000),
                initial_sampling_rate: 0.25,
                parent_based: true,
            })
        );
        let plain = parse(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).unwrap();
        let SamplerConfig::JaegerRemote(r) = plain.sampler else {
            panic!("not remote")
        };
        assert!(!r.parent_based);
        assert_eq!(r.endpoint, DEFAULT_JAEGER_SAMPLING_ENDPOINT);
    }

    #[test]
    fn bad_values_are_errors_naming_their_variable() {
        assert_eq!(
            err_var(&[("OTEL_TRACES_SAMPLER", "sometimes")]),
            "OTEL_TRACES_SAMPLER"
        );
        for arg in ["1.5", "-0.1", "abc", "NaN"] {
            assert_eq!(
                err_var(&[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", arg)
                ]),
                "OTEL_TRACES_SAMPLER_ARG",
                "{arg}"
            );
        }
        for arg in [
            "endpoint",
            "endpoint=ftp://x",
            "pollingIntervalMs=0",
            "pollingIntervalMs=soon",
            "colour=blue",
        ] {
            assert_eq!(
                err_var(&[
                    ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
                    ("OTEL_TRACES_SAMPLER_ARG", arg)
                ]),
                "OTEL_TRACES_SAMPLER_ARG",
                "{arg}"
            );
        }
        assert_eq!(
            err_var(&[("OTEL_SDK_DISABLED", "yes")]),
            "OTEL_SDK_DISABLED"
        );
        assert_eq!(
            err_var(&[("OTEL_TRACES_EXPORTER", "otlp,jaeger")]),
            "OTEL_TRACES_EXPORTER"
        );
        assert_eq!(
            err_var(&[("OTEL_PROPAGATORS", "tracecontext,xray")]),
            "OTEL_PROPAGATORS"
        );
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        );
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")]),
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]),
            "OTEL_EXPORTER_OTLP_TIMEOUT"
        );
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "zipkin")]),
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT"
        );
        assert_eq!(
            err_var(&[("OTEL_RESOURCE_ATTRIBUTES", "team")]),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
        assert_eq!(
            err_var(&[("OTEL_RESOURCE_ATTRIBUTES", "a=%zz")]),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
        assert_eq!(err_var(&[("LOG_FORMAT", "xml")]), "LOG_FORMAT");
        assert_eq!(err_var(&[("RUST_LOG", "info,[[[")]), "RUST_LOG");
        let message = parse(&[("OTEL_TRACES_SAMPLER", "sometimes")])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("OTEL_TRACES_SAMPLER") && message.contains("sometimes"),
            "{message}"
        );
    }

    #[test]
    fn http_protocol_appends_the_signal_path_to_the_base_endpoint_only() {
        let c = parse(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"),
        ])
        .unwrap();
        assert!(
            matches!(&c.exporters[0], ExporterConfig::Otlp(o) if o.endpoint == "http://jaeger:4318/v1/traces" && o.protocol == OtlpProtocol::HttpProtobuf)
        );
        let c = parse(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4318/custom",
            ),
        ])
        .unwrap();
        assert!(
            matches!(&c.exporters[0], ExporterConfig::Otlp(o) if o.endpoint == "http://collector:4318/custom")
        );
    }

    #[test]
    fn exporters_and_propagators_accept_lists_and_none() {
        let c = parse(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            (
                "OTEL_PROPAGATORS",
                "b3multi, jaeger,b3,tracecontext,baggage,baggage",
            ),
        ])
        .unwrap();
        assert!(c.exporters.is_empty());
        assert_eq!(
            c.propagators,
            vec![
                PropagatorKind::B3Multi,
                PropagatorKind::Jaeger,
                PropagatorKind::B3,
                PropagatorKind::TraceContext,
                PropagatorKind::Baggage
            ]
        );
        let c = parse(&[
            ("OTEL_TRACES_EXPORTER", "zipkin,console"),
            ("OTEL_PROPAGATORS", "none"),
        ])
        .unwrap();
        assert_eq!(c.exporters.len(), 2);
        assert!(c.propagators.is_empty());
    }

    #[test]
    fn resource_attributes_are_percent_decoded_and_empty_values_mean_unset() {
        let c = parse(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=staging,team=order%20flow",
            ),
            ("OTEL_SERVICE_NAME", ""),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])
        .unwrap();
        assert_eq!(c.resource_attributes["team"], "order flow");
        assert_eq!(
            c.resource_attributes["deployment.environment.name"],
            "staging"
        );
        assert_eq!(c.service_name, "svc");
        assert!(c.sdk_disabled);
    }

    #[test]
    fn headers_are_percent_decoded_and_the_traces_variable_wins() {
        let c = parse(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20s3cr3t, x-tenant = team%2Cone,empty=",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap();
        let otlp = c.otlp().unwrap();
        assert_eq!(
            otlp.headers.iter().collect::<Vec<_>>(),
            vec![
                ("authorization", "Bearer s3cr3t"),
                ("x-tenant", "team,one"),
                ("empty", "")
            ]
        );
        assert_eq!(otlp.timeout, Duration::from_millis(2500));
        let c = parse(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
        ])
        .unwrap();
        let otlp = c.otlp().unwrap();
        assert_eq!(
            otlp.headers.iter().collect::<Vec<_>>(),
            vec![("api-key", "traces")]
        );
        assert_eq!(otlp.timeout, Duration::from_millis(700));
    }

    #[test]
    fn header_values_never_appear_in_debug_output_or_errors() {
        let c = parse(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20s3cr3t",
        )])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("authorization"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        for bad in [
            "authorization=Bearer%zzs3cr3t",
            "authorization=ok,s3cr3t",
            "bad name=s3cr3t",
            "x=s3cr3t%0A",
        ] {
            let e = parse(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]).unwrap_err();
            assert_eq!(e.variable, "OTEL_EXPORTER_OTLP_HEADERS", "{bad}");
            let message = e.to_string();
            assert!(!message.contains("s3cr3t"), "{message}");
        }
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "novalue")]),
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        );
    }

    #[test]
    fn compression_is_gzip_or_none() {
        let gzip = parse(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).unwrap();
        assert_eq!(gzip.otlp().unwrap().compression, OtlpCompression::Gzip);
        let none = parse(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ])
        .unwrap();
        assert_eq!(none.otlp().unwrap().compression, OtlpCompression::None);
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]),
            "OTEL_EXPORTER_OTLP_COMPRESSION"
        );
        assert_eq!(
            err_var(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br")]),
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
        );
    }

    #[test]
    fn an_unreadable_or_empty_certificate_file_is_an_error_naming_variable_and_path() {
        let missing = std::env::temp_dir().join(format!("no-such-ca-{}.pem", std::process::id()));
        let path = missing.display().to_string();
        let e = parse(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", &path)]).unwrap_err();
        assert_eq!(e.variable, "OTEL_EXPORTER_OTLP_CERTIFICATE");
        let message = e.to_string();
        assert!(
            message.contains(&path) && message.contains("cannot read"),
            "{message}"
        );

        let not_pem = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&not_pem, "hello").unwrap();
        let e = parse(&[(
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            &not_pem.display().to_string(),
        )])
        .unwrap_err();
        std::fs::remove_file(&not_pem).ok();
        assert_eq!(e.variable, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
