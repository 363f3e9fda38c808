//! Telemetry settings, read once from the standard `OTEL_*` variables.
//!
//! Parsing is separate from the environment ([`TelemetryConfig::from_lookup`]) so
//! every variable and every bad value is unit-tested without touching process
//! state. A bad value is an error that names the variable; nothing is silently
//! ignored, because a typo in a sampler name should not quietly drop all traces.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL` that selects it.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }

    /// The port collectors serve it on by convention (4317, 4318).
    pub fn default_port(self) -> u16 {
        match self {
            OtlpProtocol::Grpc => 4317,
            OtlpProtocol::HttpProtobuf => 4318,
        }
    }

    /// The path a base endpoint gets for traces: none for gRPC,
    /// `/v1/traces` for OTLP/HTTP.
    pub fn traces_path(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "",
            OtlpProtocol::HttpProtobuf => "/v1/traces",
        }
    }

    /// The other OTLP transport: what a mismatched endpoint may speak.
    pub fn other(self) -> Self {
        match self {
            OtlpProtocol::Grpc => OtlpProtocol::HttpProtobuf,
            OtlpProtocol::HttpProtobuf => OtlpProtocol::Grpc,
        }
    }
}

/// The OTLP exporter's settings. For each, the `OTEL_EXPORTER_OTLP_TRACES_*`
/// variable wins over the `OTEL_EXPORTER_OTLP_*` one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// `http://` or `https://`; for OTLP/HTTP the full URL of the traces path.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Per export request (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
    pub timeout: Duration,
    /// Sent with every export request (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. an
    /// API key. Values are secrets: `Debug` shows only the names.
    pub headers: OtlpHeaders,
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`.
    pub compression: OtlpCompression,
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`: the CA certificates an `https://`
    /// endpoint's certificate must chain to. Without it, the system's CA store
    /// is used. Not used for `http://` endpoints.
    pub certificate: Option<CaCertificate>,
}

impl OtlpConfig {
    /// These settings with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// These settings sent to another endpoint, with another protocol and
    /// timeout (headers, compression and CAs kept): a probe of what an
    /// endpoint speaks.
    pub fn retargeted(&self, endpoint: String, protocol: OtlpProtocol, timeout: Duration) -> Self {
        Self {
            endpoint,
            protocol,
            timeout,
            ..self.clone()
        }
    }

    /// Plain settings: no headers, no compression, system CAs, 10 s timeout.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            timeout: Duration::from_secs(10),
            headers: OtlpHeaders::default(),
            compression: OtlpCompression::None,
            certificate: None,
        }
    }

    /// Whether the endpoint is `https://` (TLS).
    pub fn uses_tls(&self) -> bool {
        self.endpoint
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }
}

/// Request headers for the OTLP endpoint, in the order given. `Debug` and
/// [`OtlpHeaders::names`] never show the values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OtlpHeaders(Vec<(String, String)>);

impl OtlpHeaders {
    /// Adds or replaces a header (names are case-insensitive, kept lowercase).
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Names and values, for building requests.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Names only, safe to print.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, _)| (n, "<redacted>")))
            .finish()
    }
}

/// Compression of export request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpCompression {
    #[default]
    None,
    Gzip,
}

/// CA certificates (PEM) read from a file at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    /// Where they came from, for messages.
    pub path: PathBuf,
    pem: Vec<u8>,
    count: usize,
}

impl CaCertificate {
    /// Reads and checks a PEM file holding one or more certificates.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, String> {
        let path = path.into();
        let pem = std::fs::read(&path)
            .map_err(|e| format!("cannot read the CA certificate file: {e}"))?;
        Self::from_pem(path, pem)
    }

    /// Checks PEM text holding one or more certificates; `origin` names it in messages.
    pub fn from_pem(origin: impl Into<PathBuf>, pem: impl Into<Vec<u8>>) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem = pem.into();
        let count = CertificateDer::pem_slice_iter(&pem)
            .try_fold(0, |n, cert| cert.map(|_| n + 1))
            .map_err(|e| format!("the file is not valid PEM: {e}"))?;
        if count == 0 {
            return Err("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(Self {
            path: origin.into(),
            pem,
            count,
        })
    }

    /// The certificates, DER-encoded.
    pub fn certificates(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(&self.pem)
            .filter_map(Result::ok)
            .collect()
    }

    /// How many certificates the file holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl std::fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCertificate")
            .field("path", &self.path)
            .field("certificates", &self.count)
            .finish()
    }
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
}

/// The variable naming the file that telemetry shutdown writes its span
/// counts to, as one JSON object (see [`crate::ExportStats::to_json`]):
/// for benchmarks and tests, which need the figures from a process that has
/// exited, without reading its log.
pub const STATS_FILE_VARIABLE: &str = "TELEMETRY_STATS_FILE";

pub(crate) const DEFAULT_OTLP_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
pub(crate) const DEFAULT_OTLP_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";
const DEFAULT_ZIPKIN_ENDPOINT: &str = "http://127.0.0.1:9411/api/v2/spans";
const DEFAULT_JAEGER_SAMPLING_ENDPOINT: &str = "http://127.0.0.1:5778/sampling";

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
        })
    }
}

/// The variables, read through the caller's lookup.
struct Vars<'a>(&'a dyn Fn(&'static str) -> Result<Option<String>, ConfigError>);

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

/// `OTEL_EXPORTER_OTLP_[TRACES_]*`.
fn otlp_config(vars: &Vars<'_>) -> Result<OtlpConfig, ConfigError> {
    let protocol = match vars.signal(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    )? {
        None => OtlpProtocol::Grpc,
        Some((name, v)) => match v.as_str() {
            "grpc" => OtlpProtocol::Grpc,
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            _ => {
                return Err(ConfigError::new(
                    name,
                    &v,
                    "expected `grpc` or `http/protobuf`",
                ));
            }
        },
    };
    let endpoint = match (
        vars.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?,
        vars.get("OTEL_EXPORTER_OTLP_ENDPOINT")?,
    ) {
        // The signal-specific variable is used as given.
        (Some(url), _) => check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?,
        // The generic one is a base URL: OTLP/HTTP appends the signal path.
        (None, Some(base)) => {
            let base = check_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
            match protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            }
        }
        (None, None) => match protocol {
            OtlpProtocol::Grpc => DEFAULT_OTLP_GRPC_ENDPOINT.into(),
            OtlpProtocol::HttpProtobuf => format!("{DEFAULT_OTLP_HTTP_ENDPOINT}/v1/traces"),
        },
    };
    let timeout = match vars.signal(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    )? {
        None => Duration::from_secs(10),
        Some((name, v)) => Duration::from_millis(parse_u64(name, &v)?),
    };
    let headers = match vars.signal(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    )? {
        None => OtlpHeaders::default(),
        Some((name, v)) => parse_headers(name, &v)?,
    };
    let compression = match vars.signal(
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    )? {
        None => OtlpCompression::None,
        Some((name, v)) => match v.to_ascii_lowercase().as_str() {
            "gzip" => OtlpCompression::Gzip,
            "none" => OtlpCompression::None,
            _ => return Err(ConfigError::new(name, &v, "expected `gzip` or `none`")),
        },
    };
    let certificate = match vars.signal(
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    )? {
        None => None,
        Some((name, path)) => {
            Some(CaCertificate::from_file(&path).map_err(|e| ConfigError::new(name, &path, e))?)
        }
    };
    Ok(OtlpConfig {
        endpoint,
        protocol,
        timeout,
        headers,
        compression,
        certificate,
    })
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

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
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

fn parse_u64(variable: &'static str, value: &str) -> Result<u64, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::new(variable, value, "expected a whole number of milliseconds"))
}

fn parse_ratio(variable: &'static str, value: &str) -> Result<f64, ConfigError> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(ConfigError::new(
            variable,
            value,
            "expected a ratio between 0 and 1",
        )),
    }
}

fn check_url(variable: &'static str, value: String) -> Result<String, ConfigError> {
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

fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerConfig, ConfigError> {
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

/// `OTEL_EXPORTER_OTLP_HEADERS`: `name1=value1,name2=value2` with
/// percent-encoded values, as the OTLP exporter specification defines it
/// (the W3C baggage format). Error messages never repeat a value: it may be
/// a secret.
fn parse_headers(variable: &'static str, value: &str) -> Result<OtlpHeaders, ConfigError> {
    // What an error may show of the variable: its names, not its values.
    let shown = list(value)
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{}=<redacted>", k.trim()),
            None => "<redacted>".into(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut headers = OtlpHeaders::default();
    for (i, pair) in list(value).enumerate() {
        let entry = i + 1;
        let Some((name, raw)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                variable,
                &shown,
                format!("entry {entry} is not name=value"),
            ));
        };
        let name = name.trim();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::new(
                variable,
                &shown,
                format!("entry {entry}: `{name}` is not a valid header name"),
            ));
        }
        let decoded = percent_decode(raw.trim()).ok_or_else(|| {
            ConfigError::new(
                variable,
                &shown,
                format!("the value of `{name}` has a bad %-escape"),
            )
        })?;
        if http::HeaderValue::from_str(&decoded).is_err() {
            return Err(ConfigError::new(
                variable,
                &shown,
                format!("the value of `{name}` holds characters a header cannot carry"),
            ));
        }
        headers.insert(name, decoded);
    }
    Ok(headers)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
