# The clf service image: `clf serve` on port 8000 over a registry mounted at /models.
#
#   docker build -t clf:latest .                                                  # CPU (the default)
#   docker build -t clf:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 .   # NVIDIA GPUs
#   docker run -p 8000:8000 -v "$PWD/models:/models" clf:latest
#
# The CUDA build takes torch's CUDA wheels, which carry their own CUDA runtime; the host needs the NVIDIA driver and
# container toolkit (docker run --gpus all, or a nvidia.com/gpu resource in Kubernetes), and `--service.device auto`
# picks the GPU. Not built in CI (no container engine there): tests/test_deployment_artifacts.py checks this file statically.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# torch first, from the index of the build's accelerator: a bare requirement would pull the multi-GB CUDA build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md constraints.txt ./
COPY clf ./clf
COPY lightning_app ./lightning_app
COPY configs ./configs
# serve: FastAPI and uvicorn; postgres: psycopg for --fleet.state_db and --feedback.experiments_db on PostgreSQL;
# onnx: --service.backend onnx; at the versions the tests last passed with (constraints.txt, torch aside).
RUN pip install -c constraints.txt ".[serve,postgres,onnx]"

RUN useradd --create-home --uid 10001 clf && mkdir -p /models && chown clf /models
USER clf
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3).status != 200)"]
ENTRYPOINT ["clf"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--registry", "/models/classification", "--logging.json_logs", "true"]
