# One image for every service of docker-compose.yml: migrate, watcher, workers, dashboard.
# The PyPI torch wheel carries its CUDA libraries; the host supplies the NVIDIA driver
# (NVIDIA Container Toolkit). Without a GPU the same image scores on the CPU.
FROM python:3.12-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 inspector \
    && mkdir -p /var/lib/inspector /incoming /models \
    && chown inspector:inspector /var/lib/inspector /incoming

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY inspector inspector
COPY workers workers
COPY migrations migrations
COPY configs configs
# Editable, so migrations/ is found beside the package as in a checkout.
RUN pip install --no-cache-dir -e .

USER inspector
ENV INSPECTOR_CONFIG=/app/configs/distributed.yaml \
    PYTHONUNBUFFERED=1
CMD ["inspector", "--help"]
