#!/usr/bin/env bash
# Installs everything loom needs to build and test on a Debian machine (run as root).
# Debian packages only; the CUDA toolkit (nvcc, cuBLAS, cuDNN, NCCL) is used when present.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libopenblas-dev libopenblas-openmp-dev libomp-dev zlib1g-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libfmt-dev
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist fortunes-min
  python3
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cudnn_frontend's headers (cuDNN's fused attention, kernels/cuda/cudnn_attention.cc) come from
# pip, only where CUDA is built. 1.18 is the last release whose headers do not need NVRTC.
# Without them (offline) the build goes on and AttentionImplementation::CuDnn says it is absent.
frontend=1.18.0
if command -v nvcc > /dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  have=$(python3 -c "import importlib.metadata as m; print(m.version('nvidia-cudnn-frontend'))" 2>/dev/null || true)
  if [[ $have != "$frontend" ]]; then
    echo "install_deps: pip install nvidia-cudnn-frontend==$frontend"
    python3 -m pip install -q --no-deps "nvidia-cudnn-frontend==$frontend" ||
      echo "install_deps: WARNING: cudnn_frontend not installed; cuDNN attention will not be built" >&2
  fi
fi
