# Shipline: receiver, worker and CLI in one image.
#   docker build -t shipline .        (or: buildah bud -t shipline .)
# BASE: any Debian bookworm. The runtime packages are installed only if the base lacks them: the
#   test suite builds FROM a local mmdebstrap base that already has them (nothing can be pulled
#   there; see scripts/build-debian-base.sh, which reads RUNTIME_PACKAGES from this file).
# KUBECTL: an image holding /bin/kubectl (the `kustomize` and `kluctl` render modes run `kubectl kustomize`).
# HELM: an image holding /usr/bin/helm (the `kluctl` render mode runs `helm template` for helm-chart.yaml).
# PUSH: an image whose /usr/local/bin/ holds shipline-push (scripts/build-push.sh builds it on a bookworm
#   host), so the worker sets the OCI keys while pushing (handlers/build/pushtool.py). The default (the
#   base) has none: the worker then sets them as a build step and logs why.
# The receiver runs as the unprivileged user `shipline` (10001); the worker's local build backend
# runs buildah (chroot isolation, vfs storage), which needs root inside its pod (k8s/base/worker.yaml).
ARG BASE=debian:bookworm-slim
ARG KUBECTL=registry.k8s.io/kubectl:v1.36.3
ARG HELM=alpine/helm:3.22.0
ARG PUSH=debian:bookworm-slim

FROM ${KUBECTL} AS kubectl
FROM ${HELM} AS helm
FROM ${PUSH} AS push

FROM ${BASE} AS os
ARG RUNTIME_PACKAGES="python3 python3-venv git ca-certificates buildah tini"
RUN if dpkg -s $RUNTIME_PACKAGES >/dev/null 2>&1; then echo "base already has: $RUNTIME_PACKAGES"; \
    else apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
      && rm -rf /var/lib/apt/lists/*; fi \
 && groupadd --system --gid 10001 shipline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shipline --create-home shipline

# Only what pip needs: service/ and handlers/ (.dockerignore keeps tests/, bench/, devstack/ out).
FROM os AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY handlers ./handlers
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

FROM os
COPY --from=kubectl /bin/kubectl /usr/local/bin/kubectl
COPY --from=helm /usr/bin/helm /usr/local/bin/helm
COPY --from=push /usr/local/bin/ /usr/local/bin/
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 SHIPLINE_CONFIG=/etc/shipline/shipline.yaml
USER 10001:10001
WORKDIR /var/lib/shipline
EXPOSE 8080
# tini reaps what a killed build leaves behind and passes signals on (-s: also when not PID 1).
ENTRYPOINT ["tini", "-s", "--", "shipline"]
CMD ["serve"]
