#!/usr/bin/env bash
# Packs loom's GPU programs, built here with CUDA for sm_90, into one archive that a GPU machine
# without GoogleTest, OpenBLAS or OpenMPI can run (scripts/gpu_prebuilt.sh unpacks and runs it).
# Building on the GPU machine costs minutes of a short device lease; this machine has the same
# CUDA 13 toolkit, so the programs are built here and only the CUDA libraries (cudart, cuBLASLt,
# cuDNN, NCCL) are taken from the GPU machine. The archive also holds every other shared library
# the programs need that is not part of the C/C++ runtime.
#
# Usage: scripts/gpu_bundle.sh [--build-dir DIR]     (default: build, configured by scripts/run.sh)
# Writes build-bundle/loom-gpu.tar.xz (ignored by git; carry build-bundle to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
case "${1:-}" in
  --build-dir) build=$2 ;;
  "") ;;
  *) echo "usage: $0 [--build-dir DIR]" >&2; exit 2 ;;
esac
grep -q '^CMAKE_CUDA_FLAGS:' "$build/CMakeCache.txt" 2>/dev/null ||
  { echo "gpu_bundle: $build is not configured with CUDA (bash scripts/run.sh configures build)" >&2; exit 2; }

PROGRAMS=(tests/loom_gpu_tests bench/loom_bench bench/loom_kernel_bench bench/loom_input_bench
          bench/loom_allocator_replay bench/loom_fusion_probe bench/loom_graph_launch_bench)
targets=()
for p in "${PROGRAMS[@]}"; do targets+=("$(basename "$p")"); done
cmake --build "$build" --target "${targets[@]}" -j "$(nproc)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for p in "${PROGRAMS[@]}"; do strip -o "$stage/bin/$(basename "$p")" "$build/$p"; done
# The CUDA libraries and the C/C++ runtime come from the GPU machine (newer there, never older).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcudart|libcublas|libcudnn|libnccl|libcuda\.)'
ldd "$stage"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ $name =~ $skip ]] && continue
    cp -L "$path" "$stage/lib/$name"
  done
{
  echo "built $(date -u +%FT%TZ) from $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo +dirty)"
  echo "nvcc $(nvcc --version | grep -o 'release [0-9.]*'), sm_90 (CMakeLists default unless the cache says otherwise)"
  (cd "$stage" && ls bin lib)
} > "$stage/MANIFEST"
mkdir -p build-bundle
tar -C "$stage" -cf - . | xz -T0 -6 > build-bundle/loom-gpu.tar.xz
echo "gpu_bundle: build-bundle/loom-gpu.tar.xz ($(du -h build-bundle/loom-gpu.tar.xz | cut -f1));" \
     "libraries: $(ls "$stage/lib" | tr '\n' ' ')"
