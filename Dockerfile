# syntax=docker/dockerfile:1
# One image for the three services: `flowai serve runtime|tools|approvals --app module:attr`.
#
#   docker build -t flowai-harness .                       # bakes examples/ as the app
#   docker build --build-arg APP_DIR=path/to/myapp -t myapp .
#
# APP_DIR (relative to the build context) is copied to /srv/app, which is on PYTHONPATH, so
# `--app module:attr` finds its modules; compose.yaml can also mount a directory there.

# --- build: the Rust engine and its pyo3 bindings, as an abi3 wheel ----------------------
FROM rust:1-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/maturin && /opt/maturin/bin/pip install --no-cache-dir 'maturin>=1.7,<2'
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY core ./core
COPY python ./python
# The services ship inside the wheel (pyproject.toml, [tool.maturin] include).
COPY services ./services
# `linux`, not manylinux: the wheel only has to run on the bookworm image below.
RUN /opt/maturin/bin/maturin build --release --compatibility linux --out /wheels

# --- run: Python 3.11, the wheel with the Kafka/Redis extras, the services -----------------
FROM python:3.11-slim-bookworm
ARG APP_DIR=examples
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/srv/app
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir "$(ls /tmp/wheels/flowai_harness-*.whl)[kafka]" \
    && rm -rf /tmp/wheels
COPY ${APP_DIR} /srv/app
RUN useradd --system --uid 10001 --home-dir /srv flowai
USER flowai
WORKDIR /srv/app
ENTRYPOINT ["flowai"]
CMD ["--help"]
