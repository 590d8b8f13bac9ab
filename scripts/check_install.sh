#!/usr/bin/env bash
# Installs the loom build in BUILD_DIR into a scratch prefix, then configures, builds and runs
# tests/install (a program using find_package(loom)) against it: README's "Using loom from
# another CMake project", checked. Run by the test suite (CTest label `install`).
#
#   scripts/check_install.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() {  # step NAME COMMAND...: runs it quietly, showing its output if it fails
  local name=$1
  shift
  "$@" > "$work/$name.log" 2>&1 || { echo "check_install: $name failed:"; cat "$work/$name.log"; exit 1; }
}
step install cmake --install "$build" --prefix "$work/prefix"
step configure cmake -S "$src/tests/install" -B "$work/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix"
step build cmake --build "$work/consumer"
"$work/consumer/consumer"
