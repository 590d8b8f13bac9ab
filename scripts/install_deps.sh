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
