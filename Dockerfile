# syntax=docker/dockerfile:1
# The corsgate image: the one binary (controller and proxy) on a distroless runtime — glibc,
# libgcc and CA certificates, no shell, no package manager — as the non-root user 65532.
#
#   docker build -t corsgate:0.1.0 .
#
# The builder is Debian 12 (bookworm), like the runtime, so the binary's glibc symbols exist there.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
ENV CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_TERM_COLOR=never

# 1. Dependencies only. With just the manifests and empty targets this layer is rebuilt when
#    Cargo.toml or Cargo.lock change, not on every source edit. The empty crate's own artifacts
#    are removed, so the real build below never mistakes them for fresh.
# .cargo/config.toml holds jemalloc's built-in settings (it returns freed memory).
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/engine.rs \
    && cargo build --release --locked --bin corsgate \
    && rm -rf src benches target/release/corsgate target/release/corsgate.d \
       target/release/deps/corsgate-* target/release/deps/libcorsgate-* \
       target/release/.fingerprint/corsgate-*

# 2. The crate. examples/ is compiled in (the demo's policy); benches/ is named by Cargo.toml.
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin corsgate

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="corsgate" \
      org.opencontainers.image.description="CORS at the edge of a Kubernetes cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/corsgate /usr/local/bin/corsgate
# Numeric, so the kubelet can verify runAsNonRoot without the image's /etc/passwd.
USER 65532:65532
# proxy traffic and admin; controller config stream, admin and admission webhook
EXPOSE 8080 9901 9090 9902 9443
ENTRYPOINT ["/usr/local/bin/corsgate"]
CMD ["--help"]
