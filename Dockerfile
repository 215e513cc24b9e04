# healthmon in a small image: built in a throwaway Rust stage, run as an
# unprivileged user, its data kept in a volume. docs/docker.md tells how to
# run it alone (SQLite) or as a fleet (docker-compose.yml).
#
#   docker build -t healthmon .
#   docker run --rm -v healthmon-data:/var/lib/healthmon healthmon keys create --name admin --scope write
#   docker run -d -p 127.0.0.1:8088:8088 -v healthmon-data:/var/lib/healthmon healthmon
#
# Tags are pinned, not digests: no registry could be reached where this file
# was written, so no digest could be checked. Bump both together (the Rust
# stage and the runtime must share Debian's release, for glibc).

# The toolchain CI tests with (the lock needs at least 1.89: actix-web).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: built against stub sources, so a
# change to healthmon's code reuses this layer and compiles one crate, not
# some 300. The stub covers every target the manifest names (cargo refuses a
# manifest whose bench file is missing, even when building the binary only).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > benches/pipeline.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin healthmon \
 && rm -rf src

COPY src src
COPY migrations migrations
COPY config config
COPY assets assets
# COPY keeps the files' own times, older than the stub's build: without the
# touch cargo would take the stub's healthmon as fresh and ship it.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin healthmon \
 && strip target/release/healthmon

FROM debian:12.11-slim
# ca-certificates: checks of https targets verify against the system roots.
# Nothing else: the health check is the binary's own `healthmon healthcheck`.
# Versions are not pinned: Debian drops superseded versions of a package from
# its archive, so a pin would break the build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
      --home-dir /var/lib/healthmon --shell /usr/sbin/nologin healthmon \
 && mkdir -p /var/lib/healthmon \
 && chown 10001:10001 /var/lib/healthmon \
 && chmod 700 /var/lib/healthmon
COPY --from=build /src/target/release/healthmon /usr/local/bin/healthmon

# Everything healthmon keeps (the SQLite database with its -wal and -shm
# files, and so the API keys) lives here. A fresh named volume takes this
# directory's owner, so the user below can write to it; a bind-mounted host
# directory must be writable by uid 10001.
VOLUME ["/var/lib/healthmon"]
WORKDIR /var/lib/healthmon
# An absolute path, so the data lands in the volume whatever the working
# directory. The namespaced key outranks DATABASE_URL and DB_*: to use
# PostgreSQL, set HEALTHMON__DATABASE__URL (or pass --database-url).
ENV HEALTHMON__DATABASE__URL=sqlite:///var/lib/healthmon/healthmon.db
# The API must listen beyond loopback to be reached through a published
# port. healthmon then refuses to start until an API key exists, unless
# HEALTHMON__AUTH__ALLOW_ANONYMOUS=true says the API is open on purpose
# (docs/docker.md, docs/security.md).
ENV HEALTHMON__SERVER__BIND=0.0.0.0:8088
EXPOSE 8088

USER 10001:10001
# Probes /readyz of this container's API. A process without the api role
# serves /readyz on its --health-bind address instead: give it
# `healthcheck --url` (docker-compose.yml does, for its workers).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["healthmon", "healthcheck"]
ENTRYPOINT ["healthmon"]
