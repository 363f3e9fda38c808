//! `tracectl doctor`: why traces do not arrive. Reads the `OTEL_*` variables
//! a service would get (with tracing-common's parser) and checks the path in
//! order: the configuration, the SDK switch, the exporter list, the sampler,
//! then the OTLP endpoint — TCP, then a real, empty OTLP export request sent
//! by the services' own exporter code (TLS, headers, compression included),
//! whose failure is explained: nothing listening, certificate not trusted,
//! TLS expected or not, credentials refused, the other OTLP protocol on that
//! port. When the endpoint accepts, one span named `doctor` is sent and its
//! trace id printed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use tracing_common::config::{
    ConfigError, ExporterConfig, OtlpCompression, OtlpConfig, OtlpProtocol, SamplerConfig,
    TelemetryConfig,
};
use tracing_common::export::{ErrorKind, ExportError, OtlpClient};

/// How a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Note,
    Problem,
}

/// One line of the diagnosis, with what to do about it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub text: String,
    pub fix: Option<String>,
}

/// Everything doctor found, in the order it checked.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The trace id of the `doctor` span, when the endpoint accepted it.
    pub trace_id: Option<String>,
}

impl Report {
    fn push(&mut self, level: Level, text: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            text: text.into(),
            fix,
        });
    }

    fn ok(&mut self, text: impl Into<String>) {
        self.push(Level::Ok, text, None);
    }

    fn note(&mut self, text: impl Into<String>) {
        self.push(Level::Note, text, None);
    }

    fn problem(&mut self, text: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Problem, text, Some(fix.into()));
    }

    /// Notes each `OTEL_*` name of `names` that no service reads
    /// (`service_runtime::variables`): most often a misspelt variable, which
    /// the services silently ignore.
    pub fn unread_variables<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for name in service_runtime::variables::unread(names) {
            self.note(format!(
                "{name} is set, but no service here reads it (misspelt? see docs/configuration.md)"
            ));
        }
    }

    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.level == Level::Problem)
            .count()
    }

    /// The report as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let tag = match f.level {
                Level::Ok => "ok",
                Level::Note => "note",
                Level::Problem => "PROBLEM",
            };
            out.push_str(&format!("  {tag:<8} {}\n", f.text));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("  {:<8} -> {fix}\n", ""));
            }
        }
        match self.problems() {
            0 => out.push_str("no problem found\n"),
            1 => out.push_str("1 problem found\n"),
            n => out.push_str(&format!("{n} problems found\n")),
        }
        out
    }
}

/// Checks the telemetry path `config` describes (the result of parsing the
/// environment, so that a parse error is a finding too).
pub async fn diagnose(config: Result<TelemetryConfig, ConfigError>) -> Report {
    let mut report = Report::default();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            report.problem(
                format!("the configuration is invalid: {e}"),
                format!(
                    "fix {}; a service with this environment does not start",
                    e.variable
                ),
            );
            return report;
        }
    };
    report.note(format!(
        "service name {:?}; exporters: {}",
        config.service_name,
        describe_exporters(&config)
    ));

    if config.sdk_disabled {
        report.problem(
            "OTEL_SDK_DISABLED=true: the services record and export no span",
            "unset OTEL_SDK_DISABLED or set it to false",
        );
    }
    if config.exporters.is_empty() {
        report.problem(
            "OTEL_TRACES_EXPORTER=none: spans are recorded but sent nowhere",
            "set OTEL_TRACES_EXPORTER=otlp (the default)",
        );
    }
    check_sampler(&config.sampler, &mut report);

    for exporter in &config.exporters {
        match exporter {
            ExporterConfig::Otlp(otlp) => check_otlp(otlp, &config, &mut report).await,
            ExporterConfig::Zipkin { endpoint } => {
                if let Some((host, port)) = host_port(endpoint)
                    && tcp(&host, port, Duration::from_secs(3), &mut report)
                        .await
                        .is_ok()
                {
                    report.note(format!(
                        "zipkin: only TCP to {host}:{port} is checked, not the Zipkin API"
                    ));
                }
            }
            ExporterConfig::Console => {
                report.note("console exporter: spans are printed on standard output only");
            }
            other => report.note(format!("{other:?}: not checked")),
        }
    }

    report.note(
        "spans lost while a service runs show in its log: \"span export failing\" with \
         the reason, then \"span export still failing\" with the counts once a minute; \
         \"BatchSpanProcessor dropped a Span\" when its queue overflows; at shutdown \
         \"some spans were not exported\" with spans_lost",
    );
    report
}

fn describe_exporters(config: &TelemetryConfig) -> String {
    if config.exporters.is_empty() {
        return "none".into();
    }
    config
        .exporters
        .iter()
        .map(|e| match e {
            ExporterConfig::Otlp(o) => {
                let mut parts = vec![format!("otlp {} to {}", o.protocol.as_str(), o.endpoint)];
                if o.compression == OtlpCompression::Gzip {
                    parts.push("gzip".into());
                }
                if !o.headers.is_empty() {
                    let names: Vec<&str> = o.headers.names().collect();
                    parts.push(format!("headers {}", names.join(", ")));
                }
                if let Some(ca) = &o.certificate {
                    parts.push(format!("CA file {}", ca.path.display()));
                }
                parts.push(format!("timeout {} ms", o.timeout.as_millis()));
                parts.join(", ")
            }
            ExporterConfig::Zipkin { endpoint } => format!("zipkin to {endpoint}"),
            ExporterConfig::Console => "console".into(),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn check_sampler(sampler: &SamplerConfig, report: &mut Report) {
    let drops_all = |what: &str, report: &mut Report| {
        report.problem(
            format!("OTEL_TRACES_SAMPLER={what}: no trace is sampled, so no span is exported"),
            "set OTEL_TRACES_SAMPLER=parentbased_always_on (the default), or a ratio above 0 \
             with parentbased_traceidratio",
        );
    };
    match sampler {
        SamplerConfig::AlwaysOff => drops_all("always_off", report),
        SamplerConfig::TraceIdRatio(r) if *r <= 0.0 => {
            drops_all("traceidratio with OTEL_TRACES_SAMPLER_ARG=0", report);
        }
        SamplerConfig::ParentBasedTraceIdRatio(r) if *r <= 0.0 => report.problem(
            "OTEL_TRACES_SAMPLER=parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0: \
             no trace started here is sampled",
            "raise OTEL_TRACES_SAMPLER_ARG (1 keeps every trace)",
        ),
        SamplerConfig::ParentBasedAlwaysOff => report.problem(
            "OTEL_TRACES_SAMPLER=parentbased_always_off: no trace started here is sampled \
             (only requests arriving with a sampled traceparent are)",
            "set OTEL_TRACES_SAMPLER=parentbased_always_on (the default)",
        ),
        SamplerConfig::TraceIdRatio(r) | SamplerConfig::ParentBasedTraceIdRatio(r) if *r < 1.0 => {
            report.note(format!(
                "sampler keeps {:.3}% of traces: a given request's trace may be missing",
                r * 100.0
            ));
        }
        SamplerConfig::JaegerRemote(remote) => report.note(format!(
            "sampling is decided by the strategies at {} (until they arrive: {:.3}%)",
            remote.endpoint,
            remote.initial_sampling_rate * 100.0
        )),
        _ => report.ok("the sampler records traces"),
    }
}

fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let uri: Uri = endpoint.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Some((host.to_owned(), port))
}

/// The endpoint with only scheme and authority, plus `path`.
fn base(endpoint: &str, path: &str) -> Option<String> {
    let uri: Uri = endpoint.parse().ok()?;
    Some(format!(
        "{}://{}{path}",
        uri.scheme_str()?,
        uri.authority()?.as_str()
    ))
}

async fn tcp(host: &str, port: u16, timeout: Duration, report: &mut Report) -> Result<(), ()> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => {
            report.ok(format!("{host}:{port} accepts TCP connections"));
            Ok(())
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            report.problem(
                format!("nothing listens on {host}:{port} (connection refused)"),
                "start the collector or backend there, or point OTEL_EXPORTER_OTLP_ENDPOINT \
                 at it (OTLP listens on 4317 for grpc, 4318 for http/protobuf by default)",
            );
            Err(())
        }
        Ok(Err(e)) => {
            report.problem(
                format!("cannot connect to {host}:{port}: {e}"),
                "check the host name and port in the endpoint, and that the network allows it",
            );
            Err(())
        }
        Err(_) => {
            report.problem(
                format!("no TCP answer from {host}:{port} within {timeout:?}"),
                "a firewall may drop the packets, or the host is down",
            );
            Err(())
        }
    }
}

fn port_of(protocol: OtlpProtocol) -> u16 {
    protocol.default_port()
}

async fn check_otlp(otlp: &OtlpConfig, config: &TelemetryConfig, report: &mut Report) {
    let Some((host, port)) = host_port(&otlp.endpoint) else {
        report.problem(
            format!("cannot tell host and port of {}", otlp.endpoint),
            "set OTEL_EXPORTER_OTLP_ENDPOINT to http(s)://host:port",
        );
        return;
    };
    let probe_timeout = otlp.timeout.min(Duration::from_secs(5));
    if tcp(&host, port, probe_timeout, report).await.is_err() {
        return;
    }
    if otlp.certificate.is_some() && !otlp.uses_tls() {
        report.note(
            "OTEL_EXPORTER_OTLP_CERTIFICATE is set but the endpoint is http://: the \
             certificate is not used",
        );
    }
    let client = match OtlpClient::new(otlp) {
        Ok(c) => c,
        Err(e) => {
            report.problem(
                format!("the exporter cannot be built: {e}"),
                "a service with this environment does not start",
            );
            return;
        }
    };
    let protocol = otlp.protocol.as_str();
    match client.send(ExportTraceServiceRequest::default()).await {
        Ok(_) => {
            report.ok(format!(
                "{} accepted an empty OTLP export ({protocol}{}{}{})",
                otlp.endpoint,
                if otlp.uses_tls() { ", TLS" } else { "" },
                if otlp.compression == OtlpCompression::Gzip {
                    ", gzip"
                } else {
                    ""
                },
                if otlp.headers.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", headers {}",
                        otlp.headers.names().collect::<Vec<_>>().join(", ")
                    )
                },
            ));
            send_doctor_span(&client, config, report).await;
        }
        Err(e) => explain(e, otlp, &host, port, probe_timeout, report).await,
    }
}

async fn explain(
    error: ExportError,
    otlp: &OtlpConfig,
    host: &str,
    port: u16,
    probe_timeout: Duration,
    report: &mut Report,
) {
    let detail = error.message.clone();
    match error.kind {
        ErrorKind::UntrustedCertificate => {
            let trusted = match &otlp.certificate {
                Some(ca) => format!(
                    "the CA file OTEL_EXPORTER_OTLP_CERTIFICATE={} did not sign it",
                    ca.path.display()
                ),
                None => "no CA of the system's store signed it".into(),
            };
            report.problem(
                format!(
                    "TLS: the certificate of {host}:{port} is not trusted ({detail}); {trusted}"
                ),
                "set OTEL_EXPORTER_OTLP_CERTIFICATE to the PEM file of the CA that signed the \
                 server's certificate (and check that the certificate names this host)",
            );
        }
        ErrorKind::Unauthenticated => {
            let sent = if otlp.headers.is_empty() {
                "no header is set".to_owned()
            } else {
                format!(
                    "OTEL_EXPORTER_OTLP_HEADERS sends {}",
                    otlp.headers.names().collect::<Vec<_>>().join(", ")
                )
            };
            report.problem(
                format!("authentication rejected by {host}:{port} ({detail}); {sent}"),
                "set OTEL_EXPORTER_OTLP_HEADERS to the credentials the backend expects, e.g. \
                 authorization=Bearer%20<token> or api-key=<key> (values percent-encoded)",
            );
        }
        ErrorKind::Timeout => report.problem(
            format!("{host}:{port} accepted the connection but did not answer in time ({detail})"),
            "raise OTEL_EXPORTER_OTLP_TIMEOUT (milliseconds) or check the backend's health",
        ),
        ErrorKind::Rejected => report.problem(
            format!("{host}:{port} speaks OTLP but refused the export: {detail}"),
            "see the backend's documentation for this answer",
        ),
        ErrorKind::Tls if otlp.uses_tls() && !speaks_tls(host, port, probe_timeout).await => {
            report.problem(
                format!("{host}:{port} does not speak TLS ({detail})"),
                format!(
                    "use http://{host}:{port} in OTEL_EXPORTER_OTLP_ENDPOINT, or the port where \
                     the backend serves TLS"
                ),
            );
        }
        // Connect, Tls from a server that speaks TLS, WrongProtocol, Other, and
        // kinds a later tracing-common adds: try what the endpoint speaks.
        _ => {
            if !otlp.uses_tls() && speaks_tls(host, port, probe_timeout).await {
                report.problem(
                    format!("{host}:{port} requires TLS, but the endpoint is http:// ({detail})"),
                    format!(
                        "use https://{host}:{port} (and OTEL_EXPORTER_OTLP_CERTIFICATE if the \
                         server's CA is private)"
                    ),
                );
                return;
            }
            let other = otlp.protocol.other();
            if answers(otlp, other).await {
                let (configured, speaks) = (otlp.protocol.as_str(), other.as_str());
                report.problem(
                    format!(
                        "protocol mismatch: {host}:{port} speaks OTLP {speaks}, not {configured} \
                         ({detail})"
                    ),
                    format!(
                        "set OTEL_EXPORTER_OTLP_PROTOCOL={speaks}, or keep {configured} and use \
                         the backend's {configured} port (usually {})",
                        port_of(otlp.protocol)
                    ),
                );
            } else {
                report.problem(
                    format!(
                        "{host}:{port} does not answer as an OTLP receiver ({}): {detail}",
                        otlp.protocol.as_str()
                    ),
                    format!(
                        "check the endpoint: OTLP listens on 4317 for grpc and 4318 for \
                         http/protobuf by default (the configured port is {port})"
                    ),
                );
            }
        }
    }
}

/// Whether the endpoint answers an empty export in `protocol` (accepting it,
/// or asking for credentials, which also shows it speaks that protocol).
async fn answers(otlp: &OtlpConfig, protocol: OtlpProtocol) -> bool {
    let path = protocol.traces_path();
    let Some(endpoint) = base(&otlp.endpoint, path) else {
        return false;
    };
    let probe = otlp.retargeted(endpoint, protocol, otlp.timeout.min(Duration::from_secs(5)));
    let Ok(client) = OtlpClient::new(&probe) else {
        return false;
    };
    match client.send(ExportTraceServiceRequest::default()).await {
        Ok(_) => true,
        Err(e) => e.kind == ErrorKind::Unauthenticated,
    }
}

/// Whether the server answers a TLS handshake (with any certificate).
async fn speaks_tls(host: &str, port: u16, timeout: Duration) -> bool {
    let Ok(server_name) = rustls::pki_types::ServerName::try_from(host.to_owned()) else {
        return false;
    };
    let Ok(builder) = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions() else {
        return false;
    };
    // No trusted root: a server that speaks TLS shows itself by sending a
    // certificate, which then fails verification.
    let config = builder
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let Ok(Ok(tcp)) =
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await
    else {
        return false;
    };
    match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::AlertReceived(_)
                    | rustls::Error::PeerIncompatible(_)
                    | rustls::Error::NoApplicationProtocol
            )
        ),
        Err(_) => false,
    }
}

async fn send_doctor_span(client: &OtlpClient, config: &TelemetryConfig, report: &mut Report) {
    let (request, trace_id) = doctor_span(config);
    match client.send(request).await {
        Ok(response) => {
            let rejected = response
                .partial_success
                .filter(|p| p.rejected_spans > 0)
                .map(|p| p.error_message);
            match rejected {
                Some(message) => report.problem(
                    format!("the endpoint rejected the test span: {message}"),
                    "see the backend's documentation for this answer",
                ),
                None => {
                    report.ok(format!(
                        "sent a test span named \"doctor\" (service {:?}) in trace {trace_id}: \
                         look it up in your tracing backend",
                        config.service_name
                    ));
                    report.trace_id = Some(trace_id);
                }
            }
        }
        Err(e) => report.problem(
            format!("the test span was not accepted: {e}"),
            "run doctor again; if it persists, the backend refuses spans it is sent",
        ),
    }
}

/// One finished INTERNAL span called `doctor`, under the configured
/// service name and resource attributes, in a fresh trace.
fn doctor_span(config: &TelemetryConfig) -> (ExportTraceServiceRequest, String) {
    let trace_id = uuid::Uuid::new_v4().as_bytes().to_vec();
    let span_id = uuid::Uuid::new_v4().as_bytes()[..8].to_vec();
    let hex: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let text = |key: &str, value: &str| KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    };
    let mut resource = vec![text("service.name", &config.service_name)];
    resource.extend(
        config
            .resource_attributes
            .iter()
            .filter(|(k, _)| k.as_str() != "service.name")
            .map(|(k, v)| text(k, v)),
    );
    let span = Span {
        trace_id,
        span_id,
        name: "doctor".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: now.saturating_sub(1_000_000),
        end_time_unix_nano: now,
        attributes: vec![text("tracectl.check", "doctor")],
        ..Span::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tracectl".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![span],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    (request, hex)
}
