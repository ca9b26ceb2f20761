# syntax=docker/dockerfile:1
# One image, two entry points: horizon-exporter (the default) and horizon-scaler (the sidecar sets
# `command: [horizon-scaler]`). Build: docker build -t horizon-keda:0.1.0 --build-arg VERSION=0.1.0 .
# tests/test_deploy_dockerfile.py lints this file and replays its pip steps in a clean venv.

# Pinned by version; pin the digest too (python:3.11.17-slim-bookworm@sha256:...) where builds must be repeatable.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

# --- build: every dependency as a wheel (grpcio, PyYAML, aiohttp ship manylinux wheels: no compiler needed) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed into a venv without pip; nothing to build or install with ---
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="horizon-keda" \
      org.opencontainers.image.description="Laravel Horizon exporter for Prometheus and KEDA external scaler sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# No .pyc writes at run time (the root filesystem is read-only; pip compiled them at install), unbuffered logs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
# The wheels are bind-mounted from the build stage, so no layer keeps them; --no-index: only those wheels.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir --root-user-action=ignore --disable-pip-version-check \
        --no-index --find-links=/wheels /wheels/*.whl
# Numeric, so that Kubernetes can verify runAsNonRoot; owns nothing: the image is read-only to it.
USER 10001:10001
# 9108: exporter (/metrics, /healthz, /readyz, /api/v1/snapshot); 6000: scaler gRPC (KEDA external-push).
EXPOSE 9108 6000
ENTRYPOINT ["horizon-exporter"]
CMD ["--config", "/etc/horizon-keda/config.yml"]
