# syntax=docker/dockerfile:1
#
# One image per service, all four from a single cached compile:
#   docker build --target order-service -t tracing-reference/order-service:dev .
# Targets: api-gateway (the default), user-service, order-service, inventory-service.

# --- manifests only, so the dependency layer below survives source edits ---
FROM rust:1.95-bookworm AS skeleton
WORKDIR /src
COPY . .
# Every crate keeps its Cargo.toml and gets empty stand-ins for the targets it
# has (examples too: cargo refuses a manifest whose declared example is
# missing); everything else goes. Found generically so a new workspace member needs
# no change here.
RUN for f in */src/main.rs */examples/*.rs; do echo 'fn main() {}' > "$f"; done \
    && for f in */src/lib.rs; do : > "$f"; done \
    && find . -type f ! -name Cargo.toml ! -name Cargo.lock \
        ! -path './*/src/lib.rs' ! -path './*/src/main.rs' \
        ! -path './*/examples/*.rs' -delete

# --- build ---
FROM rust:1.95-bookworm AS build
# rdkafka-sys compiles the bundled librdkafka with ./configure and make
# (default features: no cmake, no OpenSSL); zlib is its only codec.
# Package versions are left to the pinned Debian release (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY --from=skeleton /src ./
RUN cargo build --release --locked \
    -p api-gateway -p user-service -p order-service -p inventory-service
COPY . .
# COPY keeps the context's modification times, older than the stand-ins built
# above, so cargo would call the workspace crates fresh: touch them first.
# migrations/ must be here too: sqlx::migrate! embeds them at compile time.
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
        -p api-gateway -p user-service -p order-service -p inventory-service \
    && mkdir -p /out \
    && cp target/release/api-gateway target/release/user-service \
        target/release/order-service target/release/inventory-service /out/

# --- runtime base ---
FROM debian:12.12-slim AS runtime
# curl is only for the health check below (and compose's); Kubernetes probes
# need nothing in the image. Versions come from the pinned Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
USER 10001:10001
ENV RUST_LOG=info LOG_FORMAT=json
# A shell so that $PORT is the container's own, even when overridden at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:$PORT/healthz || exit 1"]

FROM runtime AS user-service
COPY --from=build /out/user-service /usr/local/bin/user-service
ENV PORT=3001
EXPOSE 3001
ENTRYPOINT ["/usr/local/bin/user-service"]

FROM runtime AS order-service
COPY --from=build /out/order-service /usr/local/bin/order-service
ENV PORT=3003
EXPOSE 3003
ENTRYPOINT ["/usr/local/bin/order-service"]

FROM runtime AS inventory-service
COPY --from=build /out/inventory-service /usr/local/bin/inventory-service
ENV PORT=3004
EXPOSE 3004
ENTRYPOINT ["/usr/local/bin/inventory-service"]

FROM runtime AS api-gateway
COPY --from=build /out/api-gateway /usr/local/bin/api-gateway
ENV PORT=3000
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/api-gateway"]
