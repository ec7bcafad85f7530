# geoagent: `geoagent serve` (retrieval API, agent API, web chat) in a container.
# Build: docker compose build   (or: docker build -t geoagent .)
FROM python:3.11-slim

# CPU wheels of torch by default; pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 for CUDA.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=${TORCH_INDEX} \
    PYTHONUNBUFFERED=1 \
    GEOAGENT_DATA_DIR=/data \
    HF_HOME=/models/huggingface \
    XDG_CACHE_HOME=/models

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY retrieval_service ./retrieval_service
COPY tools ./tools
COPY agent ./agent
COPY prompts ./prompts
COPY evals ./evals
COPY langgraph.json ./
RUN pip install . && useradd --create-home --uid 1000 geoagent && mkdir -p /data /models && chown geoagent /data /models
USER geoagent
VOLUME ["/data", "/models"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1

ENTRYPOINT ["geoagent"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
