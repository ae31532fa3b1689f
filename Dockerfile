# syntax=docker/dockerfile:1
# LeMo service images. Two targets:
#
#   docker build --target coordinator -t lemo-coordinator .   # Debian 12 slim, no LibTorch
#   docker build --target worker      -t lemo-worker .        # CUDA 13 runtime + LibTorch + NCCL
#
# The build steps are the project's own scripts (scripts/bootstrap, scripts/build), the ones CI
# runs, so the image compiles what CI tests. deploy/docker/collect-runtime.sh copies the binaries
# and the shared libraries they load into /opt/lemo, so the runtime stages need no -dev packages.
# Bases are pinned to exact releases (Debian 12.11, CUDA 13.0.1 on Ubuntu 24.04, the CUDA the
# torch 2.11 wheel is built for); pin digests too (`@sha256:...`) in a registry you control. The
# worker builds on Ubuntu because NVIDIA publishes no Debian CUDA images; scripts/bootstrap's
# package names are the same there.
# docs/deploy.md has the details; `scripts/check-deploy` runs hadolint on this file.

# --- coordinator + lemoctl: no LibTorch, no Python venv ---------------------------------------
FROM debian:12.11 AS coordinator-build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python3 first: scripts/common.sh asks it for the venv key. Versions come from the pinned base.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .git stays out of the build context: --version and lemo_build_info report this commit
# (--build-arg LEMO_GIT_REVISION=$(git rev-parse --short=12 HEAD)), else "unknown".
ARG LEMO_GIT_REVISION=""
ENV LEMO_BOOTSTRAP_VENV=0 LEMO_BOOTSTRAP_TEST_TOOLS=0 LEMO_JOBS=4 \
    LEMO_CMAKE_FLAGS="-DLEMO_BUILD_WORKER=OFF -DCMAKE_BUILD_TYPE=Release -DLEMO_GIT_REVISION=${LEMO_GIT_REVISION}"
RUN scripts/bootstrap \
    && rm -rf /var/lib/apt/lists/* \
    && scripts/build --target lemo-coordinator lemoctl \
    && deploy/docker/collect-runtime.sh /opt/lemo build/bin/lemo-coordinator build/bin/lemoctl

FROM debian:12.11-slim AS coordinator
LABEL org.opencontainers.image.title="lemo-coordinator" \
      org.opencontainers.image.description="LeMo fine-tuning service: coordinator and lemoctl" \
      org.opencontainers.image.source="https://github.com/lemo-service/lemo"
RUN groupadd --system --gid 10001 lemo \
    && useradd --system --uid 10001 --gid lemo --home-dir /var/lib/lemo --create-home lemo
COPY --from=coordinator-build /opt/lemo /opt/lemo
ENV PATH=/opt/lemo/bin:$PATH LD_LIBRARY_PATH=/opt/lemo/lib
USER 10001:10001
WORKDIR /var/lib/lemo
VOLUME ["/var/lib/lemo"]
# 50051 gRPC (TLS when certificates are given), 50052 plaintext grpc.health.v1 only, 9090 /metrics.
EXPOSE 50051 50052 9090
# The gRPC health service, asked on the health-only port (plaintext, no token needed).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["lemoctl", "health", "--server", "127.0.0.1:50052", "--timeout", "4"]
# TLS and tokens by default, from mounted files (the Kubernetes manifests mount the same paths):
# the coordinator refuses plaintext on a non-loopback address unless given --insecure.
ENTRYPOINT ["lemo-coordinator"]
CMD ["--listen=0.0.0.0:50051", "--health-listen=0.0.0.0:50052", "--metrics-listen=0.0.0.0:9090", \
     "--data-dir=/var/lib/lemo", "--tls-cert=/etc/lemo/tls/tls.crt", "--tls-key=/etc/lemo/tls/tls.key", \
     "--token-file=/etc/lemo/tokens/tokens", \
     "--worker-token-file=/etc/lemo/tokens/worker-tokens"]

# --- worker: CUDA kernels (sm_90a), LibTorch and NCCL from the pinned torch wheel ------------
FROM nvidia/cuda:13.0.1-devel-ubuntu24.04 AS worker-build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Hopper (DESIGN.md "Build"); add architectures with --build-arg TORCH_CUDA_ARCH_LIST="8.0;9.0a".
ARG TORCH_CUDA_ARCH_LIST=9.0a
ARG LEMO_GIT_REVISION=""
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} LEMO_BOOTSTRAP_TEST_TOOLS=0 LEMO_JOBS=4 \
    LEMO_VENV=/opt/venv LEMO_CACHE=/tmp/lemo-cache \
    LEMO_CMAKE_FLAGS="-DLEMO_ENABLE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DLEMO_GIT_REVISION=${LEMO_GIT_REVISION}"
# cuDNN and the CUDA math libraries are dlopen()ed by the wheel's libraries: copy their whole
# directories, not just what ldd sees.
RUN scripts/bootstrap \
    && rm -rf /var/lib/apt/lists/* \
    && scripts/build --target lemo-worker lemo-train lemoctl \
    && LEMO_EXTRA_LIB_DIRS="$(echo /opt/venv/lib/python3*/site-packages/torch/lib \
         /opt/venv/lib/python3*/site-packages/nvidia/*/lib)" \
       deploy/docker/collect-runtime.sh /opt/lemo \
         build/bin/lemo-worker build/bin/lemo-train build/bin/lemoctl

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04 AS worker
LABEL org.opencontainers.image.title="lemo-worker" \
      org.opencontainers.image.description="LeMo fine-tuning service: GPU worker and lemo-train" \
      org.opencontainers.image.source="https://github.com/lemo-service/lemo"
RUN groupadd --system --gid 10001 lemo \
    && useradd --system --uid 10001 --gid lemo --home-dir /home/lemo --create-home lemo
COPY --from=worker-build /opt/lemo /opt/lemo
# The wheel's libraries first: LibTorch was built against them (cuDNN, cuBLAS, NCCL).
ENV PATH=/opt/lemo/bin:$PATH LD_LIBRARY_PATH=/opt/lemo/lib \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/lemo
# 9400 /metrics; 29500 the c10d TCPStore when this worker is rank 0 (NCCL picks its own ports).
EXPOSE 9400 29500
# A worker serves no gRPC: healthy while its stream to the coordinator's gRPC services is up,
# which its /metrics reports (lemo_worker_connected 1). Bash's /dev/tcp needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9400 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '^lemo_worker_connected 1' <&3"]
ENTRYPOINT ["lemo-worker"]
CMD ["--coordinator=lemo-coordinator:50051", "--device=cuda:0", "--metrics-listen=0.0.0.0:9400", \
     "--work-dir=/home/lemo/work", "--tls-ca=/etc/lemo/tls/ca.crt", "--token-file=/etc/lemo/token/token"]
