#!/usr/bin/env bash
# Builds loom and the CPU test suite with AddressSanitizer + UndefinedBehaviorSanitizer (GCC is
# enough) in a separate build directory and runs the CPU tests (label `cpu`). Any sanitizer report
# fails the run: UBSan is made fatal (-fno-sanitize-recover) and ASan aborts on its first error.
#
#   scripts/sanitize.sh                 env: LOOM_SAN_BUILD_DIR (default build-asan), JOBS,
#                                            CTEST_ARGS (e.g. "-R Mistakes" to run a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LOOM_SAN_BUILD_DIR:-build-asan}
jobs=${JOBS:-$(nproc)}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# GCC's -Wmaybe-uninitialized misfires on ASan-instrumented std::variant/std::function code at
# -O1 (tests/optim/schedules_test.cc); every other warning stays an error.
nowarn="-Wno-maybe-uninitialized"
start=$(date +%s)
# RelWithDebInfo-like -O1 -g: readable reports, and fast enough for the whole CPU suite.
cmake -S . -B "$build" -G Ninja -DLOOM_CUDA=OFF -DLOOM_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DCMAKE_CXX_FLAGS="$san $nowarn" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san"
cmake --build "$build" -j "$jobs" --target loom_tests loom_cli loom_dp_test loom_launch_test
built=$(date +%s)
# OpenMP's and OpenBLAS's thread pools are never freed at exit: leak checking would only report
# them, so it is off; everything else (overflows, use-after-free, UB) is fatal.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" -L cpu -j "$jobs" --output-on-failure --timeout 1800 ${CTEST_ARGS:-}
end=$(date +%s)
echo "sanitize.sh: build $((built - start)) s, tests $((end - built)) s"
