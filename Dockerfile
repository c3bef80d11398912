# syntax=docker/dockerfile:1.7
# Multi-stage build: a full Rust toolchain compiles both binaries; the runtime image is Debian
# slim with the two binaries, CA certificates (for amqps/postgres TLS) and a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin receiver --bin worker \
    && mkdir -p /out && cp target/release/receiver target/release/worker /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home blitz
COPY --from=build /out/receiver /out/worker /usr/local/bin/
USER 10001
ENV RECEIVER_ADDR=0.0.0.0:8080 ADMIN_ADDR=0.0.0.0:8081 WORKER_ADDR=0.0.0.0:9090 LOG_FORMAT=json
EXPOSE 8080 8081 9090
CMD ["receiver"]
