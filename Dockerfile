# syntax=docker/dockerfile:1
# The operator image: `docker build -t detection-operator:dev .` (the Helm chart's image).
# BASE_IMAGE: any Debian-based image with python >= 3.11 and pip; the tests build on a local one.
ARG BASE_IMAGE=python:3.11-slim

# Stage 1: build the wheel of the operator and of every dependency (compilers stay in this stage).
FROM ${BASE_IMAGE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

# Stage 2: only the installed wheels, run as a fixed non-root user on a read-only root filesystem.
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="detection-operator" \
      org.opencontainers.image.description="Adaptive bot-detection profiles and ML model failover, driven by PromQL" \
      org.opencontainers.image.licenses="Apache-2.0"
# No .pyc writes at run time (the root filesystem is read-only; pip compiled them at install), unbuffered
# logs, and a HOME the non-root user can write (the chart mounts an emptyDir at /tmp).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels detection-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["detection-operator"]
CMD ["run", "--log-format=json"]
