#!/usr/bin/env bash
# Installs dependencies, builds loom and runs its main job (`loom train` with no arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
build=${LOOM_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=AUTO > /dev/null
cmake --build "$build" -j "$(nproc)" --target loom_cli
exec "$build/apps/loom" "$@"
