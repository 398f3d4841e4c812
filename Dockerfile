# syntax=docker/dockerfile:1
# The ecs-power-operator image: one static (musl) binary on distroless/static, running as the
# unprivileged UID/GID 65532 ("nonroot"), with nothing else in the image (no shell, no libc).
#
#   docker build -t ecs-power-operator:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/ecs-power-operator:TAG --push .
#
# CI does not build this image: its machines have no container engine. Keep it simple and correct.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
# musl-gcc compiles the C parts of dependencies (ring) for the static musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
ARG TARGETARCH
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH '${TARGETARCH}'" >&2; exit 1 ;; \
    esac >/rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --package ecs-power-operator --no-default-features --bin ecs-power-operator --target "$target" \
 && install -D -m 0755 "target/$target/release/ecs-power-operator" /out/ecs-power-operator

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="ecs-power-operator" \
      org.opencontainers.image.description="Keeps Alibaba Cloud ECS instances in the power state an EcsInstancePower resource declares" \
      org.opencontainers.image.source="https://github.com/ecspower/ecs-power-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ecs-power-operator /ecs-power-operator
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/ecs-power-operator"]
CMD ["run"]
