# No `# syntax=` line: that would pull a BuildKit frontend image by tag at build time.
# Base image pinned by tag and digest: python:3.11.14-slim-bookworm, the digest of its
# multi-platform index as published on Docker Hub (Dependabot's docker updates bump both).
# Build stage: uv installs exactly uv.lock (hash-checked, the app not editable) into
# /opt/venv; the runtime stage copies that venv and nothing else.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY requirements-uv.txt ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements-uv.txt
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-editable --no-cache --no-install-project
COPY src ./src
RUN uv sync --locked --no-dev --no-editable --no-cache

# Runtime stage: non-root, read-only friendly, health-checked. /secrets belongs to the
# app's user: an empty named volume mounted there takes that owner (compose.yaml).
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# SSL_CERT_FILE: psycopg[binary] bundles an OpenSSL that looks for CAs under its own
# build prefix, so `sslmode=verify-full sslrootcert=system` fails without it; this is the
# bundle the base image's ca-certificates package writes (the build fails if it is missing).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOST=0.0.0.0 \
    PORT=3000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics
# The metrics directory exists before any process starts: every command imports the
# metrics (prometheus_client opens files there at import time).
RUN test -s "$SSL_CERT_FILE" \
    && groupadd --system --gid 10001 rates \
    && useradd --system --uid 10001 --gid rates --no-create-home --shell /usr/sbin/nologin rates \
    && install -d -o 10001 -g 10001 -m 0700 /secrets \
    && install -d -o 10001 -g 10001 -m 0700 "$PROMETHEUS_MULTIPROC_DIR"
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY db/rates.sql ./db/rates.sql
# The access policy the access job applies (`dbaccess policy apply --file
# /app/access-policy.toml`, infrastructure/modules/container_apps).
COPY access-policy.toml ./access-policy.toml
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz\", timeout=2)"]
ENTRYPOINT ["rates"]
CMD ["serve"]
