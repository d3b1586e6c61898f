# kokoro in a container: built in a builder stage, run from a slim image as
# an unprivileged user. The data dir (SQLite, backups, result files, keys)
# is the volume /data. Secrets (KOKORO_API_TOKEN, DISCORD_TOKEN,
# TELEGRAM_BOT_TOKEN, ...) come from the environment at run time, never
# from the image.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY actors ./actors
COPY src ./src
COPY benches ./benches
COPY assets ./assets
RUN cargo build --release --locked --bin kokoro

FROM debian:bookworm-slim
# ca-certificates for TLS to Discord, Telegram and a remote PostgreSQL.
# Not version-pinned (hadolint DL3008 is ignored in .hadolint.yaml): the
# base image's tag is pinned, and Debian's security updates replace a
# pinned version, which would break the build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin kokoro \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /src/target/release/kokoro /usr/local/bin/kokoro
COPY --from=build /src/assets /usr/share/kokoro/assets
USER 10001:10001
WORKDIR /data
ENV KOKORO_DATA_DIR=/data \
    KOKORO_HTTP_ADDR=0.0.0.0:8080 \
    KOKORO_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
# kokoro probes itself: no curl in the image.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/kokoro", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/kokoro"]
CMD ["serve"]
