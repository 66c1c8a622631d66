# Pantau's services: one image, the `pantau` command as its entry point.
FROM python:3.11-slim-bookworm

# OpenCV needs these shared libraries even without a display.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    YOLO_CONFIG_DIR=/var/lib/pantau/ultralytics

WORKDIR /opt/pantau
COPY pyproject.toml constraints.txt README.md ./
COPY pantau ./pantau
COPY ingest ./ingest
COPY detectors ./detectors
COPY streams ./streams
COPY storage ./storage
COPY dashboards ./dashboards
COPY console ./console

# The CPU build of torch keeps the image a fraction of the size of the CUDA one; use the
# default index instead for a GPU host.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX" torch torchvision \
    && pip install -c constraints.txt .

RUN useradd --system --create-home --home-dir /var/lib/pantau pantau
USER pantau
ENTRYPOINT ["pantau"]
CMD ["--help"]
