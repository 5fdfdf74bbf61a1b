# Shipline: receiver, worker and CLI in one image.
# The receiver runs as the unprivileged user `shipline`; the worker's local build backend runs
# buildah (chroot isolation, vfs storage), which needs root inside its pod (see k8s/base/worker.yaml).
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv git buildah ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/shipline
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY handlers ./handlers
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --uid 10001 --home-dir /var/lib/shipline --create-home shipline

ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 SHIPLINE_CONFIG=/etc/shipline/shipline.yaml
USER 10001
EXPOSE 8080
ENTRYPOINT ["shipline"]
CMD ["serve"]
