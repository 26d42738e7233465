# Two-stage build of the synopticon server.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin synopticon

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/synopticon synopticon
COPY --from=build /src/target/release/synopticon /usr/local/bin/synopticon
COPY config /etc/synopticon
WORKDIR /etc/synopticon
USER synopticon
ENV SYNOPTICON__SERVER__HOST=0.0.0.0 \
    SYNOPTICON__SESSIONS__TEMPLATES_DIR=/etc/synopticon/templates \
    SYNOPTICON__LOG__FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/synopticon"]
CMD ["serve"]
