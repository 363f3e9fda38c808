//! The OTLP span exporter: gRPC (tonic) or HTTP/protobuf (hyper), over TLS
//! (rustls with the ring provider) for `https://` endpoints, with the headers,
//! compression and CA certificates of [`OtlpConfig`].
//!
//! It is built here on tonic and hyper rather than with opentelemetry-otlp's
//! builder, because that builder reads `OTEL_EXPORTER_OTLP_*` variables by
//! itself as well: it merges the environment's headers into the ones given,
//! and reads the compression variable whenever none is given, failing on the
//! value `none`. Here the parsed [`crate::TelemetryConfig`] is the only
//! source. The request's protobuf is written straight from the SDK's spans
//! (`wire`), the message opentelemetry-proto defines, without building it.
//!
//! [`OtlpClient::send`] is public so that `tracectl doctor` sends its test
//! request through the same code, and failures come as an [`ExportError`]
//! whose [`ErrorKind`] says what went wrong (connection, TLS, certificate,
//! credentials, protocol).

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::{OtlpCompression, OtlpConfig, OtlpProtocol};

mod wire;

const AGENT: &str = concat!("tracing-common/", env!("CARGO_PKG_VERSION"));

/// The exporter could not be built from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

/// What kind of failure an export request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No TCP connection (refused, unreachable, name not resolved).
    Connect,
    /// The TLS handshake failed for another reason than trust (the peer does
    /// not speak TLS, no common protocol version or ALPN, an alert).
    Tls,
    /// The server's certificate does not chain to a trusted CA, or does not
    /// name the endpoint's host.
    UntrustedCertificate,
    /// No answer within the configured timeout.
    Timeout,
    /// HTTP 401/403 or gRPC UNAUTHENTICATED/PERMISSION_DENIED.
    Unauthenticated,
    /// The answer was not the configured protocol's (an HTTP/1 answer to
    /// gRPC, a gRPC-only server to OTLP/HTTP, 404 at the traces path).
    WrongProtocol,
    /// The receiver answered the protocol but refused the request.
    Rejected,
    Other,
}

impl ErrorKind {
    /// What to check, in a few words.
    pub fn hint(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::Connect => "is a collector listening at that host and port?",
            ErrorKind::UntrustedCertificate => {
                "the server's certificate does not chain to a trusted CA: set \
                 OTEL_EXPORTER_OTLP_CERTIFICATE to the CA's PEM file"
            }
            ErrorKind::Tls => "does the endpoint speak TLS (https://) or plain text (http://)?",
            ErrorKind::Unauthenticated => "check the credentials in OTEL_EXPORTER_OTLP_HEADERS",
            ErrorKind::WrongProtocol => {
                "check OTEL_EXPORTER_OTLP_PROTOCOL against the port (usually 4317 for grpc, \
                 4318 for http/protobuf)"
            }
            ErrorKind::Timeout | ErrorKind::Rejected | ErrorKind::Other => return None,
        })
    }
}

/// A failed export request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("export to {endpoint} failed: {message}{}", kind.hint().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct ExportError {
    pub kind: ErrorKind,
    pub endpoint: String,
    /// What happened, including the underlying errors.
    pub message: String,
}

/// Sends OTLP trace export requests as `config` says. Cheap to clone.
#[derive(Clone)]
pub struct OtlpClient {
    endpoint: String,
    timeout: Duration,
    /// Requests run as tasks of this runtime: the batch processor calls the
    /// exporter from a thread of its own, outside any runtime.
    runtime: tokio::runtime::Handle,
    transport: Arc<Transport>,
}

// Built once per exporter and shared through the Arc: the size is no cost.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Grpc {
        client: tonic::client::Grpc<Channel>,
        metadata: MetadataMap,
    },
    Http(HttpTransport),
}

#[derive(Clone)]
struct HttpTransport {
    client: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    gzip: bool,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpClient {
    /// Builds the client; connections are made on first use. Must be called
    /// inside a Tokio runtime, which must outlive the client.
    pub fn new(config: &OtlpConfig) -> Result<Self, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            BuildError("the OTLP exporter must be built inside a Tokio runtime".into())
        })?;
        let roots = if config.uses_tls() {
            Some(root_store(config)?)
        } else {
            None
        };
        let transport = match config.protocol {
            OtlpProtocol::Grpc => grpc_transport(config, roots)?,
            OtlpProtocol::HttpProtobuf => http_transport(config, roots)?,
        };
        Ok(Self {
            endpoint: config.endpoint.clone(),
            timeout: config.timeout,
            runtime,
            transport: Arc::new(transport),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one export request and waits for the answer (at most the
    /// configured timeout).
    pub async fn send(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, ExportError> {
        self.send_encoded(request.encode_to_vec().into()).await
    }

    /// [`OtlpClient::send`] for a request already encoded as protobuf.
    pub(crate) async fn send_encoded(
        &self,
        request: Bytes,
    ) -> Result<ExportTraceServiceResponse, ExportError> {
        let timeout = self.timeout;
        let fail = |kind, message: String| ExportError {
            kind,
            endpoint: self.endpoint.clone(),
            message,
        };
        let task = match &*self.transport {
            Transport::Grpc { client, metadata } => {
                let (mut client, metadata) = (client.clone(), metadata.clone());
                self.runtime.spawn(async move {
                    let mut request = tonic::Request::new(request);
                    *request.metadata_mut() = metadata;
                    let call = tokio::time::timeout(timeout, grpc_export(&mut client, request));
                    match call.await {
                        Err(_) => {
                            Err((ErrorKind::Timeout, format!("no answer within {timeout:?}")))
                        }
                        Ok(Ok(response)) => Ok(response.into_inner()),
                        Ok(Err(status)) => Err(classify_status(&status)),
                    }
                })
            }
            Transport::Http(http) => {
                let http = http.clone();
                self.runtime.spawn(async move {
                    let call = tokio::time::timeout(timeout, post(http, request));
                    match call.await {
                        Err(_) => {
                            Err((ErrorKind::Timeout, format!("no answer within {timeout:?}")))
                        }
                        Ok(result) => result,
                    }
                })
            }
        };
        match task.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err((kind, message))) => Err(fail(kind, message)),
            Err(e) => Err(fail(
                ErrorKind::Other,
                format!("the export task failed: {e}"),
            )),
        }
    }
}

/// The CAs an `https://` endpoint's certificate must chain to: the configured
/// file's, else the system's.
fn root_store(config: &OtlpConfig) -> Result<rustls::RootCertStore, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.certificate {
        Some(ca) => {
            let (added, _) = roots.add_parsable_certificates(ca.certificates());
            if added == 0 {
                return Err(BuildError(format!(
                    "no usable CA certificate in {}",
                    ca.path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(BuildError(
                    "no system CA certificates found for the https:// OTLP endpoint: install \
                     the system's CA bundle (ca-certificates) or set \
                     OTEL_EXPORTER_OTLP_CERTIFICATE"
                        .into(),
                ));
            }
        }
    }
    Ok(roots)
}

fn grpc_transport(
    config: &OtlpConfig,
    roots: Option<rustls::RootCertStore>,
) -> Result<Transport, BuildError> {
    let bad_endpoint = |e: &dyn std::fmt::Display| {
        BuildError(format!("bad OTLP endpoint {}: {e}", config.endpoint))
    };
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| bad_endpoint(&e))?
        .user_agent(AGENT)
        .map_err(|e| bad_endpoint(&e))?
        .connect_timeout(config.timeout)
        .timeout(config.timeout);
    if let Some(roots) = roots {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().trust_anchors(roots.roots))
            .map_err(|e| BuildError(format!("TLS set-up for {}: {e}", config.endpoint)))?;
    }
    let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
    if config.compression == OtlpCompression::Gzip {
        client = client
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    let mut metadata = MetadataMap::new();
    for (name, value) in config.headers.iter() {
        let key = MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| BuildError(format!("`{name}` cannot be a gRPC metadata key")))?;
        let value = MetadataValue::try_from(value)
            .map_err(|_| BuildError(format!("the value of `{name}` cannot be gRPC metadata")))?;
        metadata.insert(key, value);
    }
    Ok(Transport::Grpc { client, metadata })
}

fn http_transport(
    config: &OtlpConfig,
    roots: Option<rustls::RootCertStore>,
) -> Result<Transport, BuildError> {
    let uri: Uri = config
        .endpoint
        .parse()
        .map_err(|e| BuildError(format!("bad OTLP endpoint {}: {e}", config.endpoint)))?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BuildError(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots.unwrap_or_else(rustls::RootCertStore::empty))
    .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(config.timeout));
    tcp.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let client = HyperClient::builder(TokioExecutor::new()).build(connector);

    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    let gzip = config.compression == OtlpCompression::Gzip;
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    for (name, value) in config.headers.iter() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| BuildError(format!("`{name}` cannot be an HTTP header name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            BuildError(format!(
                "the value of `{name}` cannot be an HTTP header value"
            ))
        })?;
        headers.insert(name, value);
    }
    Ok(Transport::Http(HttpTransport {
        client,
        uri,
        headers,
        gzip,
    }))
}

type Failure = (ErrorKind, String);

/// The unary call `TraceService/Export`, as tonic's generated client makes
/// it, with the request's bytes as they are.
async fn grpc_export(
    client: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<Bytes>,
) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
    client.ready().await.map_err(|e| {
        tonic::Status::unknown(format!(
            "Service was not ready: {}",
            Into::<tonic::codegen::StdError>::into(e)
        ))
    })?;
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    client.unary(request, path, EncodedCodec).await
}

/// A gRPC codec whose requests are protobuf already ([`wire::request`]) and
/// whose answers prost decodes.
#[derive(Debug, Clone, Copy)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put(item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable export response: {e}")))
    }
}

async fn post(http: HttpTransport, mut body: Bytes) -> Result<ExportTraceServiceResponse, Failure> {
    let HttpTransport {
        client,
        uri,
        headers,
        gzip,
    } = http;
    if gzip {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        body = encoder
            .write_all(&body)
            .and_then(|()| encoder.finish())
            .map_err(|e| (ErrorKind::Other, format!("gzip: {e}")))?
            .into();
    }
    let mut http_request = http::Request::post(uri)
        .body(Full::new(body))
        .map_err(|e| (ErrorKind::Other, e.to_string()))?;
    *http_request.headers_mut() = headers;
    let response = client
        .request(http_request)
        .await
        .map_err(|e| classify_error(&e))?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| classify_error(&e))?
        .to_bytes();
    let status = parts.status;
    if status.is_success() {
        // An answer that is not protobuf (or empty) still means accepted.
        return Ok(ExportTraceServiceResponse::decode(bytes).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let detail = if text.is_empty() || text.contains('\u{fffd}') {
        String::new()
    } else {
        format!(": {}", text.chars().take(200).collect::<String>())
    };
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Unauthenticated,
        404 | 405 | 415 => ErrorKind::WrongProtocol,
        _ => ErrorKind::Rejected,
    };
    Err((kind, format!("HTTP {status}{detail}")))
}

/// A gRPC status as a failure kind and message.
fn classify_status(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let mut message = format!("gRPC status {:?}", status.code());
    let source = status.source().map(classify_error);
    // tonic repeats a transport error's text as the status message.
    let chain = source.as_ref().map_or("", |(_, chain)| chain.as_str());
    if !status.message().is_empty() && !chain.contains(status.message()) {
        message.push_str(&format!(": {}", status.message()));
    }
    let protocol_words = |m: &str| {
        let m = m.to_ascii_lowercase();
        [
            "h2 protocol error",
            "http2 error",
            "content-type",
            "compression flag",
            "missing grpc-status",
        ]
        .iter()
        .any(|w| m.contains(w))
    };
    // A status with a source was made on this side from a transport error
    // (whatever its code, often Unavailable or Cancelled): the cause decides.
    if let Some((kind, chain)) = source {
        message.push_str(&format!(": {chain}"));
        let kind = match kind {
            ErrorKind::Other if protocol_words(&message) => ErrorKind::WrongProtocol,
            kind => kind,
        };
        return (kind, message);
    }
    // Otherwise the server sent it (or tonic mapped its HTTP status).
    let kind = match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthenticated,
        // Also what tonic makes of an HTTP 404 without grpc-status.
        Code::Unimplemented => ErrorKind::WrongProtocol,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        _ if protocol_words(&message) => ErrorKind::WrongProtocol,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled => ErrorKind::Other,
        _ => ErrorKind::Rejected,
    };
    (kind, message)
}

/// Walks an error's causes: the first one that says what happened decides.
fn classify_error(error: &(dyn StdError + 'static)) -> Failure {
    let mut chain: Vec<String> = Vec::new();
    let mut kind = None;
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !chain.iter().any(|c| c.contains(&text)) {
            chain.push(text.clone());
        }
        let found = if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            Some(classify_tls(tls))
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error hides the error it wraps from source(): look inside.
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(classify_tls(tls))
            } else {
                use std::io::ErrorKind as Io;
                match io.kind() {
                    Io::ConnectionRefused
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
                    | Io::AddrNotAvailable => Some(ErrorKind::Connect),
                    Io::TimedOut => Some(ErrorKind::Timeout),
                    _ => None,
                }
            }
        } else if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            // The peer answered something that is not HTTP/1.1, or hung up
            // without answering: a gRPC-only or TLS-only port.
            (hyper.is_parse() || hyper.is_incomplete_message()).then_some(ErrorKind::WrongProtocol)
        } else if text == "Timeout expired" {
            // tonic's request timeout (the endpoint accepted but did not answer).
            Some(ErrorKind::Timeout)
        } else if text.contains("HTTP/2 was not negotiated") {
            Some(ErrorKind::WrongProtocol)
        } else if text.contains("dns error") || text.contains("failed to lookup address") {
            Some(ErrorKind::Connect)
        } else {
            None
        };
        // The deepest TLS or connection cause is the most telling; keep the
        // first decisive one otherwise.
        match (kind, found) {
            (_, Some(k @ (ErrorKind::UntrustedCertificate | ErrorKind::Tls))) => kind = Some(k),
            (None, Some(k)) => kind = Some(k),
            _ => {}
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    let mut message = chain.join(": ");
    if message.is_empty() {
        message = "unknown error".into();
    }
    (kind.unwrap_or(ErrorKind::Other), message)
}

fn classify_tls(error: &rustls::Error) -> ErrorKind {
    match error {
        rustls::Error::InvalidCertificate(_) => ErrorKind::UntrustedCertificate,
        _ => ErrorKind::Tls,
    }
}

/// The span exporter the batch processor drives: converts spans to OTLP and
/// sends them with an [`OtlpClient`].
#[derive(Debug)]
pub(crate) struct OtlpExporter {
    client: OtlpClient,
    resource: wire::EncodedResource,
    /// The last request's size per span, to size the next one's buffer.
    bytes_per_span: AtomicUsize,
    shut_down: AtomicBool,
}

impl OtlpExporter {
    pub fn new(config: &OtlpConfig) -> Result<Self, BuildError> {
        Ok(Self {
            client: OtlpClient::new(config)?,
            resource: wire::EncodedResource::default(),
            bytes_per_span: AtomicUsize::new(512),
            shut_down: AtomicBool::new(false),
        })
    }
}

impl SpanExporter for OtlpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let request = wire::request(
            &batch,
            &self.resource,
            self.bytes_per_span.load(Ordering::Relaxed),
        );
        if !batch.is_empty() {
            self.bytes_per_span
                .store(request.len() / batch.len() + 1, Ordering::Relaxed);
        }
        drop(batch);
        let response = self
            .client
            .send_encoded(request.into())
            .await
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        if let Some(partial) = response.partial_success
            && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
        {
            tracing::warn!(
                endpoint = self.client.endpoint(),
                rejected_spans = partial.rejected_spans,
                message = partial.error_message,
                "the OTLP endpoint accepted the export only partly"
            );
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = wire::EncodedResource::from(&ResourceAttributesWithSchema::from(resource));
    }
}
