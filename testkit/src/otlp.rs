//! Two small loopback servers for tests against a real Jaeger.
//!
//! - [`Tee`]: an OTLP gRPC endpoint that passes every export request on to
//!   Jaeger unchanged and keeps its spans in a local store, so a test can
//!   compare what Jaeger shows with what the services sent.
//! - [`OlderJaeger`]: Jaeger's query API without `/api/v3` (404), as a Jaeger
//!   from before the v3 API answers, so `tracectl` must fall back to v1.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tracectl::receiver::Store;

/// A running tee; stops when the test's runtime ends.
pub struct Tee {
    pub addr: SocketAddr,
}

struct Forward {
    store: Store,
    jaeger: TraceServiceClient<tonic::transport::Channel>,
}

#[tonic::async_trait]
impl TraceService for Forward {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.store.ingest(request.clone());
        self.jaeger.clone().export(request).await
    }
}

impl Tee {
    /// Listens on a free loopback port; forwards to `jaeger` (an OTLP gRPC
    /// endpoint, `http://host:port`) and keeps the spans in `store`.
    pub async fn start(jaeger: &str, store: Store) -> anyhow::Result<Tee> {
        let channel = tonic::transport::Endpoint::from_shared(jaeger.to_owned())?.connect_lazy();
        let service = TraceServiceServer::new(Forward {
            store,
            jaeger: TraceServiceClient::new(channel),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route_service(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            service,
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Tee { addr })
    }

    /// For `OTEL_EXPORTER_OTLP_ENDPOINT` with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A query API in front of a Jaeger that answers 404 under `/api/v3/`.
pub struct OlderJaeger {
    pub addr: SocketAddr,
}

impl OlderJaeger {
    pub async fn start(query_url: &str) -> anyhow::Result<OlderJaeger> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(forward)
            .with_state((reqwest::Client::new(), query_url.to_owned()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(OlderJaeger { addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(
    State((client, upstream)): State<(reqwest::Client, String)>,
    request: Request,
) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if path.starts_with("/api/v3/") {
        return (StatusCode::NOT_FOUND, "404 page not found").into_response();
    }
    match client.get(format!("{upstream}{path}")).send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = r.bytes().await.unwrap_or_default();
            (status, Body::from(body)).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
