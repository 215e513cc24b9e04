# A small image of the healthmon binary, built in a throwaway Rust stage and
# run as an unprivileged user.
#
#   docker build -t healthmon .
#   docker run --rm -p 127.0.0.1:8088:8088 healthmon   # needs a key or opt-out: see README
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
RUN cargo build --release --locked --bin healthmon \
 && strip target/release/healthmon

FROM debian:bookworm-slim
# ca-certificates: checks of https targets verify against the system roots.
# curl: the compose file's health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/healthmon healthmon
COPY --from=build /src/target/release/healthmon /usr/local/bin/healthmon
USER healthmon
WORKDIR /var/lib/healthmon
# Inside a container the API must listen beyond loopback; healthmon then
# refuses to start without an API key unless HEALTHMON__AUTH__ALLOW_ANONYMOUS
# is true.
ENV HEALTHMON__SERVER__BIND=0.0.0.0:8088
EXPOSE 8088
ENTRYPOINT ["healthmon"]
