//! An OTLP receiver for the TLS, credential and protocol tests, on a free
//! loopback port:
//!
//! - TLS or not; [`TestCa`] makes a CA and a server certificate for
//!   `localhost` and `127.0.0.1` at test time;
//! - optionally a required `authorization: Bearer <token>` header: without
//!   it, OTLP/HTTP gets 401 and gRPC gets UNAUTHENTICATED;
//! - HTTP/1 only, HTTP/2 only (a gRPC-only port such as 4317) or both;
//! - gzip-compressed requests accepted.
//!
//! It keeps, per accepted export, the protocol, the `authorization` header
//! and the content encoding it saw, and the spans' names and trace ids.
//!
//! Here rather than in testkit so that tracing-common's own tests can use it
//! (tracing-common cannot depend on testkit, which depends on tracectl).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM, for `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate and key for `localhost` and `127.0.0.1`.
    pub fn server_certificate(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }

    /// Writes the CA certificate to `dir/name` and returns the path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write the CA file");
        path
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which HTTP versions the receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// OTLP/HTTP only, as a port like 4318 that has no HTTP/2.
    Http1,
    /// HTTP/2 only: gRPC, as a port like 4317.
    Http2,
    Both,
}

/// One accepted export request.
#[derive(Debug, Clone)]
pub struct Export {
    /// `grpc` or `http`.
    pub protocol: &'static str,
    pub authorization: Option<String>,
    /// `grpc-encoding` (gRPC) or `content-encoding` (HTTP).
    pub encoding: Option<String>,
    /// (trace id in hex, span name) of each span.
    pub spans: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Seen {
    exports: Arc<Mutex<Vec<Export>>>,
    rejected: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

impl Seen {
    fn push(&self, export: Export) {
        self.exports.lock().expect("lock").push(export);
        self.changed.notify_waiters();
    }
}

/// Headers of one request, handed from the middleware to the handlers.
#[derive(Clone)]
struct Meta {
    authorization: Option<String>,
    encoding: Option<String>,
}

/// A running receiver; stops when the test's runtime ends.
pub struct TestReceiver {
    pub addr: SocketAddr,
    tls: bool,
    seen: Seen,
}

/// How to start a [`TestReceiver`].
pub struct Options<'a> {
    pub tls: Option<&'a TestCa>,
    /// The token that `authorization: Bearer <token>` must carry.
    pub bearer: Option<&'a str>,
    pub speaks: Speaks,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            tls: None,
            bearer: None,
            speaks: Speaks::Both,
        }
    }
}

impl TestReceiver {
    pub async fn start(options: Options<'_>) -> std::io::Result<Self> {
        let seen = Seen::default();
        let acceptor = options.tls.map(|ca| {
            let (cert, key) = ca.server_certificate();
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
            config.alpn_protocols = match options.speaks {
                Speaks::Http1 => vec![b"http/1.1".to_vec()],
                Speaks::Http2 => vec![b"h2".to_vec()],
                Speaks::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            };
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let grpc = TraceServiceServer::new(GrpcSink(seen.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let expected = options.bearer.map(|t| format!("Bearer {t}"));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .route_service(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                grpc,
            )
            .with_state(seen.clone())
            .layer(axum::middleware::from_fn_with_state(
                (expected, seen.clone()),
                check_credentials,
            ));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let speaks = options.speaks;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let app = app.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            // A client that does not trust the certificate
                            // ends the handshake: nothing to serve then.
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve(tls, app, speaks).await;
                            }
                        }
                        None => serve(tcp, app, speaks).await,
                    }
                });
            }
        });
        Ok(Self {
            addr,
            tls: options.tls.is_some(),
            seen,
        })
    }

    /// `http(s)://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Accepted exports so far.
    pub fn exports(&self) -> Vec<Export> {
        self.seen.exports.lock().expect("lock").clone()
    }

    /// Requests refused for a missing or wrong bearer token.
    pub fn rejected(&self) -> usize {
        self.seen.rejected.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) for an export holding a span called `name`.
    pub async fn wait_for_span(&self, name: &str, timeout: Duration) -> Option<Export> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.seen.changed.notified();
            let found = self
                .exports()
                .into_iter()
                .find(|e| e.spans.iter().any(|(_, n)| n == name));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            let _ = tokio::time::timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200)),
                changed,
            )
            .await;
        }
    }
}

async fn serve<I>(io: I, app: axum::Router, speaks: Speaks)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match speaks {
        Speaks::Http1 => builder.http1_only(),
        Speaks::Http2 => builder.http2_only(),
        Speaks::Both => builder,
    };
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

async fn check_credentials(
    State((expected, seen)): State<(Option<String>, Seen)>,
    mut request: Request,
    next: Next,
) -> Response {
    let (grpc, meta) = {
        let get = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let grpc = get("content-type").is_some_and(|c| c.starts_with("application/grpc"));
        let meta = Meta {
            authorization: get("authorization"),
            encoding: get(if grpc {
                "grpc-encoding"
            } else {
                "content-encoding"
            }),
        };
        (grpc, meta)
    };
    if let Some(expected) = expected
        && meta.authorization.as_deref() != Some(expected.as_str())
    {
        seen.rejected.fetch_add(1, Ordering::Relaxed);
        seen.changed.notify_waiters();
        return if grpc {
            tonic::Status::unauthenticated("missing or wrong bearer token").into_http::<Body>()
        } else {
            (StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response()
        };
    }
    request.extensions_mut().insert(meta);
    next.run(request).await
}

fn spans_of(request: &ExportTraceServiceRequest) -> Vec<(String, String)> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| {
            let id = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
            (id, s.name.clone())
        })
        .collect()
}

async fn http_export(
    State(seen): State<Seen>,
    axum::Extension(meta): axum::Extension<Meta>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = if meta.encoding.as_deref() == Some("gzip") {
        let mut out = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&body[..]);
        if let Err(e) = std::io::Read::read_to_end(&mut decoder, &mut out) {
            return (StatusCode::BAD_REQUEST, format!("bad gzip body: {e}")).into_response();
        }
        Bytes::from(out)
    } else {
        body
    };
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-protobuf"));
    if !protobuf {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected protobuf").into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            seen.push(Export {
                protocol: "http",
                authorization: meta.authorization,
                encoding: meta.encoding,
                spans: spans_of(&request),
            });
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not OTLP: {e}")).into_response(),
    }
}

struct GrpcSink(Seen);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let meta = request.extensions().get::<Meta>().cloned();
        let request = request.into_inner();
        self.0.push(Export {
            protocol: "grpc",
            authorization: meta.as_ref().and_then(|m| m.authorization.clone()),
            encoding: meta.and_then(|m| m.encoding),
            spans: spans_of(&request),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
