# syntax=docker/dockerfile:1
# Two images from one file:
#   --target streams  slim stream-processing image: the core dependencies only (no torch);
#                     runs `flywheel topics …`, `flywheel streams run …`, `flywheel produce`.
#   --target full     training / serving image: core + the `train` and `serve` extras (torch,
#                     transformers, trl, peft, fastapi); runs `flywheel trainers run`, `flywheel serve`.
# Versions are pinned by requirements/lock.txt, used as constraints so that each image
# installs only what its extras need, at the locked versions.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system flywheel && useradd --system --gid flywheel --home-dir /var/lib/flywheel --create-home flywheel

# Build stage: uv resolves from the lock in seconds (pip's resolver can backtrack for minutes).
FROM base AS build
RUN pip install --no-cache-dir uv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/lock.txt requirements/lock.txt
COPY schemas schemas
COPY streams streams
COPY trainers trainers
COPY serving serving
COPY flywheel flywheel

FROM build AS build-streams
# Core dependencies, plus the gateway's light HTTP packages: `flywheel` loads every part's
# settings at start-up (serving's included), which imports them. No torch, no transformers.
ARG STREAMS_EXTRA_PACKAGES="fastapi uvicorn httpx"
RUN uv venv /opt/venv && uv pip install --no-cache -c requirements/lock.txt . ${STREAMS_EXTRA_PACKAGES}

FROM build AS build-full
RUN uv venv /opt/venv && uv pip install --no-cache -c requirements/lock.txt ".[train,serve]"

FROM base AS streams
COPY --from=build-streams /opt/venv /opt/venv
USER flywheel
WORKDIR /var/lib/flywheel
EXPOSE 9100
CMD ["flywheel", "--help"]

FROM base AS full
COPY --from=build-full /opt/venv /opt/venv
RUN mkdir -p /var/lib/flywheel/registry /models && chown -R flywheel:flywheel /var/lib/flywheel /models
USER flywheel
WORKDIR /var/lib/flywheel
EXPOSE 8000 9100
CMD ["flywheel", "--help"]
