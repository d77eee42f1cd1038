# syntax=docker/dockerfile:1
#
# One image with every binary of the workspace (alert-listener,
# alert-processor, alert-notify, and alert-standalone / alert-loadtest when
# present) in /usr/local/bin. The Helm chart picks the binary with `command`.
#
#   docker build -t alert-broadcaster:dev .
#   docker run --rm -p 4000:4000 alert-broadcaster:dev alert-listener

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# --workspace: the workspace's default-members would build the listener only.
# The cache mounts keep the registry and target/ between builds; the binaries
# are copied out in the same step, since the mounted target/ is not in a layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -name 'alert-*' -perm -u+x -exec cp {} /out/ \; \
 && ls -l /out \
 && test -n "$(ls /out)"

FROM debian:bookworm-slim AS runtime
# ca-certificates for amqps:// and rediss://; nothing else is needed at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 alerts \
 && useradd --system --uid 10001 --gid alerts --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin alerts
COPY --from=build /out/ /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENV LOG_FORMAT=json RUST_LOG=info
EXPOSE 4000 4001 4002
# Override with the service to run: alert-listener, alert-processor or alert-notify.
CMD ["alert-listener"]
