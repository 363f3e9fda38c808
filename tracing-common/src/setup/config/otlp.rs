//! `OTEL_EXPORTER_OTLP_[TRACES_]*`: endpoint, protocol, headers, compression,
//! timeout and TLS files.

use std::path::PathBuf;
use std::time::Duration;

use super::{
    ConfigError, DEFAULT_OTLP_GRPC_ENDPOINT, DEFAULT_OTLP_HTTP_ENDPOINT, Vars, check_url, list,
    parse_u64,
};

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

/// `OTEL_EXPORTER_OTLP_[TRACES_]*`.
pub(super) fn otlp_config(vars: &Vars<'_>) -> Result<OtlpConfig, ConfigError> {
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

/// `OTEL_EXPORTER_OTLP_HEADERS`: `name1=value1,name2=value2` with
/// percent-encoded values, as the OTLP exporter specification defines it
/// (the W3C baggage format). Error messages never repeat a value: it may be
/// a secret.
pub(super) fn parse_headers(
    variable: &'static str,
    value: &str,
) -> Result<OtlpHeaders, ConfigError> {
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

pub(super) fn percent_decode(s: &str) -> Option<String> {
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
