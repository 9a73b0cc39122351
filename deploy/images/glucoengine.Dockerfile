# syntax=docker/dockerfile:1
# GlucoEngine: the API server, with the PWA and the static site built in so that the same image
# also runs a whole embedded GlucoSync (`docker run -p 8080:8080 -v data:/var/lib/glucosync …`).
# In the cluster the two web images serve the front ends; this one serves the API.
# Build from the repository root: docker build -f deploy/images/glucoengine.Dockerfile .

FROM node:20.19.5-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# The project's one toolchain (rust-toolchain is not pinned in the tree: this is it).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/ crates/
COPY bench/ bench/
RUN cargo build --release --locked -p glucoengine \
    && install -D -m 0755 target/release/glucoengine /out/glucoengine

# distroless: no shell, no package manager, runs as uid 65532 ("nonroot"). The root filesystem
# can be read-only: everything written goes to GLUCOSYNC_DATA_DIR.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/glucoengine /usr/local/bin/glucoengine
COPY --from=web /src/web/dist /usr/share/glucosync/web
COPY site/ /usr/share/glucosync/site/
ENV GLUCOSYNC_LISTEN=0.0.0.0:8080 \
    GLUCOSYNC_DATA_DIR=/var/lib/glucosync \
    GLUCOSYNC_WEB_DIR=/usr/share/glucosync/web \
    GLUCOSYNC_SITE_DIR=/usr/share/glucosync/site \
    GLUCOSYNC_LOG_FORMAT=json
VOLUME ["/var/lib/glucosync"]
USER 65532:65532
EXPOSE 8080
# No curl in the image: the binary checks its own liveness endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/glucoengine", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/glucoengine"]
CMD ["serve"]
