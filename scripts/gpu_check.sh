#!/usr/bin/env bash
# The GPU check: one command, run from the repository root on a GPU machine (one H100/H200,
# CUDA 13, no network, nothing installable). It finds what the machine has (nvcc, cuDNN and NCCL
# also inside Python wheels, GoogleTest/OpenBLAS/nlohmann-json/zlib also from the .deb prefix
# made by scripts/fetch_gpu_debs.sh), builds loom with CUDA for sm_90, runs every test labelled
# `gpu` and then the CPU tests, and ends with a table. Budget: 8 minutes including the build.
#
# Usage: scripts/gpu_check.sh [--record] [--allow-no-gpu] [--no-cpu-tests] [--use-debs]
#                             [--build-dir DIR] [--jobs N]
#   --record        append the result to docs/GPU_STATUS.md (only when a GPU was found)
#   --allow-no-gpu  exit 0 (not 3) on a machine without a GPU when nothing failed
#   --no-cpu-tests  run the gpu-labelled tests only
#   --use-debs      take GoogleTest/OpenBLAS/nlohmann-json/zlib from the .deb prefix even when
#                   the system has them (how this script is tested on a machine with them)
# Exit status: 0 all passed; 1 a test failed; 2 configure/build failed or a tool is missing;
# 3 nothing failed but no GPU was found, so the gpu tests only skipped.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD

record=0 allow_no_gpu=0 cpu_tests=1 use_debs=0 build=build-gpu jobs=$(nproc 2>/dev/null || echo 4)
while (($#)); do
  case "$1" in
    --record) record=1 ;;
    --allow-no-gpu) allow_no_gpu=1 ;;
    --no-cpu-tests) cpu_tests=0 ;;
    --use-debs) use_debs=1 ;;
    --build-dir) build=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$build" == /* ]] || build="$REPO/$build"
mkdir -p "$build" || exit 2
LOGS=$build/gpu_check_logs
mkdir -p "$LOGS"

T0=$(date +%s)
phase_start=$T0
declare -a PHASES=()
log() { printf '[gpu_check %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { log "ERROR: $*"; finish 2; }
end_phase() {  # records how long the phase that just ended took
  local now
  now=$(date +%s)
  PHASES+=("$1:$((now - phase_start))")
  phase_start=$now
}

# --- results, the table and the record --------------------------------------------------------
declare -A PASSED FAILED SKIPPED DURATION
SUITES=()
gpu_name="" gpu_info=""

commit_id() {
  local c
  c=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null) || { echo "unknown"; return; }
  [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]] && c="$c+dirty"
  echo "$c"
}

finish() {
  local code=$1 s total_failed=0
  echo
  echo "=== gpu_check summary ==="
  echo "GPU: ${gpu_info:-none found (gpu tests skip)}"
  printf '%-8s %8s %8s %8s %8s\n' suite passed failed skipped seconds
  for s in "${SUITES[@]}"; do
    printf '%-8s %8d %8d %8d %8d\n' "$s" "${PASSED[$s]}" "${FAILED[$s]}" "${SKIPPED[$s]}" \
      "${DURATION[$s]}"
    total_failed=$((total_failed + FAILED[$s]))
  done
  ((${#SUITES[@]})) || echo "(no tests ran)"
  local timing="" p
  for p in "${PHASES[@]}"; do timing+="${p%%:*} ${p##*:}s, "; done
  local elapsed=$(($(date +%s) - T0))
  echo "time: ${timing}total ${elapsed}s (budget 480s)"
  ((elapsed > 480)) && echo "WARNING: over the 8-minute budget"
  if ((code == 0 && total_failed > 0)); then code=1; fi
  if ((code == 0)) && [[ -n "$gpu_name" && -n "${PASSED[gpu]:-}" ]] && ((PASSED[gpu] == 0)); then
    echo "ERROR: nvidia-smi shows a GPU but every gpu test skipped: loom cannot use it" \
         "(see $LOGS/gpu-tests.log)"
    code=1
  fi
  if ((code == 0)) && [[ -z "$gpu_name" ]] && ((allow_no_gpu == 0)); then
    echo "NOTE: no GPU was found, so nothing ran on a GPU (exit 3; --allow-no-gpu makes it 0)"
    code=3
  fi
  local verdict
  if ((code == 1 || code == 2)); then
    verdict=FAIL
  elif [[ -z "$gpu_name" ]]; then
    verdict="PASS without a GPU (the gpu tests only skipped)"
  else
    verdict=PASS
  fi
  echo "result: $verdict"
  if ((record)); then
    if [[ -z "$gpu_name" ]]; then
      echo "not recorded: --record needs a GPU"
    else
      local row
      row="| $(date -u +%F) | $gpu_name | $(commit_id)"
      for s in gpu cpu; do
        if [[ -n "${PASSED[$s]:-}" ]]; then
          row+=" | ${PASSED[$s]} passed, ${FAILED[$s]} failed, ${SKIPPED[$s]} skipped"
        else
          row+=" | not run"
        fi
      done
      row+=" | ${elapsed}s | $verdict |"
      echo "$row" >>"$REPO/docs/GPU_STATUS.md"
      echo "recorded in docs/GPU_STATUS.md: $row"
    fi
  fi
  exit "$code"
}

# --- 1. the GPU and the tools ---------------------------------------------------------------------
log "repository $REPO, build directory $build, $jobs jobs"
if command -v nvidia-smi >/dev/null 2>&1 &&
   q=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null) &&
   [[ -n "$q" ]]; then
  gpu_name=$(head -1 <<<"$q" | cut -d, -f1 | sed 's/^ *//;s/ *$//')
  gpu_info="$(head -1 <<<"$q" | sed 's/, */, driver /')"
  (($(wc -l <<<"$q") > 1)) && gpu_info+=" (+$(($(wc -l <<<"$q") - 1)) more)"
  log "GPU: $gpu_info"
else
  log "no GPU found (nvidia-smi absent or lists none): the gpu tests will skip"
fi

nvcc=$(command -v nvcc 2>/dev/null)
for cand in /usr/local/cuda/bin/nvcc $(ls -d /usr/local/cuda-*/bin/nvcc 2>/dev/null | sort -rV); do
  [[ -n "$nvcc" ]] && break
  [[ -x "$cand" ]] && nvcc=$cand
done
[[ -n "$nvcc" ]] || die "nvcc not found (PATH, /usr/local/cuda/bin, /usr/local/cuda-*/bin)"
log "nvcc: $nvcc ($("$nvcc" --version | grep -o 'release [0-9.]*'))"
command -v cmake >/dev/null || die "cmake not found"
cmake_version=$(cmake --version | head -1 | grep -o '[0-9][0-9.]*')
log "cmake $cmake_version"
generator="Unix Makefiles"
command -v ninja >/dev/null && generator=Ninja

# --- 2. cuDNN and NCCL: the system, the CUDA toolkit, or Python wheels -------------------------
PYTHONS=()
for py in python3 /opt/torch/.venv/bin/python3 /opt/conda/bin/python3 /usr/bin/python3; do
  command -v "$py" >/dev/null 2>&1 && PYTHONS+=("$(command -v "$py")")
done
wheel_dirs() {  # directories of Python module $1 (e.g. nvidia.cudnn), and of the nvidia namespace
  local py
  for py in "${PYTHONS[@]}"; do
    "$py" -c 'import importlib, sys
for name in sys.argv[1:]:
    try:
        print("\n".join(importlib.import_module(name).__path__))
    except Exception:
        pass' "$1" nvidia 2>/dev/null
  done | awk '!seen[$0]++'
}
# find_dep HEADER LIBNAME MODULE: prints "include_dir|library" or nothing.
find_dep() {
  local header=$1 lib=$2 module=$3 dirs=() d inc="" so=""
  dirs=(/usr/include /usr/include/x86_64-linux-gnu /usr/local/cuda/include
        /usr/local/cuda/targets/x86_64-linux/include)
  for d in "${dirs[@]}"; do [[ -f "$d/$header" ]] && { inc=$d; break; }; done
  for d in /usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64 /usr/local/cuda/lib \
           /usr/local/cuda/targets/x86_64-linux/lib; do
    so=$(ls "$d/$lib.so" "$d/$lib".so.[0-9]* 2>/dev/null | head -1)
    [[ -n "$so" ]] && break
  done
  if [[ -z "$inc" || -z "$so" ]]; then
    inc="" so=""
    while IFS= read -r d; do
      [[ -d "$d" ]] || continue
      local h l
      h=$(find "$d" -maxdepth 4 -name "$header" 2>/dev/null | head -1)
      l=$(find "$d" -maxdepth 4 \( -name "$lib.so" -o -name "$lib.so.[0-9]*" \) 2>/dev/null |
          sort | head -1)
      if [[ -n "$h" && -n "$l" ]]; then inc=$(dirname "$h"); so=$l; break; fi
    done < <(wheel_dirs "$module")
  fi
  [[ -n "$inc" && -n "$so" ]] && echo "$inc|$so"
}
CMAKE_ARGS=()
LIBDIRS=()
for dep in "cuDNN cudnn.h libcudnn nvidia.cudnn CUDNN" "NCCL nccl.h libnccl nvidia.nccl NCCL"; do
  read -r name header lib module var <<<"$dep"
  found=$(find_dep "$header" "$lib" "$module")
  if [[ -n "$found" ]]; then
    log "$name: ${found%%|*} , ${found##*|}"
    CMAKE_ARGS+=("-DLOOM_${var}_INCLUDE=${found%%|*}" "-DLOOM_${var}_LIB=${found##*|}")
    LIBDIRS+=("$(dirname "${found##*|}")")
  else
    log "$name: not found here or in Python wheels; leaving it to CMake's search"
  fi
done

# --- 3. GoogleTest, OpenBLAS, nlohmann-json, zlib: the system or the .deb prefix ---------------
have() { local f; for f in "$@"; do [[ -e "$f" ]] && return 0; done; return 1; }
missing=()
have /usr/include/gtest/gtest.h /usr/local/include/gtest/gtest.h || missing+=(GoogleTest)
have /usr/include/nlohmann/json.hpp /usr/local/include/nlohmann/json.hpp || missing+=(nlohmann-json)
have /usr/include/zlib.h /usr/local/include/zlib.h || missing+=(zlib)
have /usr/include/cblas.h /usr/include/x86_64-linux-gnu/cblas.h /usr/include/openblas/cblas.h \
     /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h || missing+=(OpenBLAS)
if ((${#missing[@]} || use_debs)); then
  ((${#missing[@]})) && log "the system lacks ${missing[*]}: using the .deb prefix"
  prefix=""
  if [[ -f third_party/debs/root/MANIFEST ]]; then
    prefix=$REPO/third_party/debs/root
  elif compgen -G "third_party/debs/pkgs/*.deb" >/dev/null; then
    prefix=$build/debs-root
    if [[ ! -f "$prefix/MANIFEST" ]]; then
      log "unpacking third_party/debs/pkgs into $prefix"
      bash scripts/fetch_gpu_debs.sh --unpack-only "$prefix" >/dev/null ||
        die "could not unpack third_party/debs/pkgs"
    fi
  else
    die "no .deb prefix: run scripts/fetch_gpu_debs.sh on a machine with network and bring" \
        "third_party/debs/pkgs (or third_party/debs/root) here"
  fi
  log "dependency prefix: $prefix ($(grep -c '\.deb$' "$prefix/MANIFEST") packages)"
  CMAKE_ARGS+=("-DLOOM_DEPS_PREFIX=$prefix/usr")
  arch_lib=$prefix/usr/lib/x86_64-linux-gnu
  LIBDIRS+=("$arch_lib/openblas-pthread")
  # libopenblas needs libgfortran.so.5; lend the prefix's only where the system has none, so that
  # nothing else on the machine picks up these older copies (libz, for one, stays the system's).
  if ! { /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep -q 'libgfortran\.so\.5 '; then
    mkdir -p "$build/deps-runtime"
    ln -sf "$arch_lib/libgfortran.so.5" "$arch_lib/libquadmath.so.0" "$build/deps-runtime/"
    LIBDIRS+=("$build/deps-runtime")
    log "libgfortran.so.5 comes from the prefix"
  fi
fi
if ((${#LIBDIRS[@]})); then
  # The linker follows libopenblas -> libgfortran and libcudnn -> its sub-libraries through
  # LD_LIBRARY_PATH, and so do the test programs at run time.
  LD_LIBRARY_PATH=$(IFS=:; echo "${LIBDIRS[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LD_LIBRARY_PATH
fi
[[ "${cmake_version%%.*}" -ge 4 ]] && CMAKE_ARGS+=(-DCMAKE_POLICY_VERSION_MINIMUM=3.5)
end_phase locate

# --- 4. configure and build ---------------------------------------------------------------------
# Found paths are cached: when the dependency prefix changed since the last run, start afresh.
if [[ -f "$build/CMakeCache.txt" ]]; then
  old=$(sed -n 's/^LOOM_DEPS_PREFIX:PATH=//p' "$build/CMakeCache.txt")
  new=""
  for a in "${CMAKE_ARGS[@]}"; do [[ "$a" == -DLOOM_DEPS_PREFIX=* ]] && new=${a#*=}; done
  if [[ "$old" != "$new" ]]; then
    log "dependency prefix changed ('$old' -> '$new'): clearing the CMake cache"
    rm -f "$build/CMakeCache.txt"
  fi
fi
log "configuring (CUDA on, sm_90, $generator)"
if ! cmake -S "$REPO" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$nvcc" -DLOOM_BUILD_TESTS=ON \
     "${CMAKE_ARGS[@]}" >"$LOGS/configure.log" 2>&1; then
  tail -40 "$LOGS/configure.log"
  end_phase configure
  die "configure failed (log: $LOGS/configure.log)"
fi
grep -E '^-- loom:' "$LOGS/configure.log" | sed 's/^/    /'
end_phase configure

log "building the library and the gpu tests"
if ! cmake --build "$build" -j "$jobs" --target loom_gpu_tests >"$LOGS/build.log" 2>&1; then
  grep -E 'error|Error' "$LOGS/build.log" | head -30
  end_phase build
  die "build failed (log: $LOGS/build.log)"
fi
end_phase build-gpu

# --- 5. tests ---------------------------------------------------------------------------------------
# run_suite NAME LABEL JOBS: runs the tests labelled LABEL and fills the table row NAME.
run_suite() {
  local name=$1 label=$2 j=$3 out="$LOGS/$1-tests.log" t
  t=$(date +%s)
  log "running the $name tests (ctest -L '^$label\$' -j $j)"
  ctest --test-dir "$build" -L "^$label\$" -j "$j" --timeout 600 --output-on-failure \
    --no-tests=error >"$out" 2>&1
  local total passed skipped
  total=$(grep -cE 'Test +#[0-9]+: ' "$out")
  passed=$(grep -cE 'Test +#[0-9]+: .* Passed +[0-9.]+ sec' "$out")
  # GTEST_SKIP (no GPU) and tests disabled on purpose count as skipped; anything else that did
  # not pass (Failed, Not Run for a missing program, Timeout, Exception) as failed.
  skipped=$(grep -cE 'Test +#[0-9]+: .*(\*\*\*Skipped|Not Run \(Disabled\))' "$out")
  SUITES+=("$name")
  PASSED[$name]=$passed
  SKIPPED[$name]=$skipped
  FAILED[$name]=$((total - passed - skipped))
  ((total == 0)) && FAILED[$name]=1  # no tests found is a failure of the check
  DURATION[$name]=$(($(date +%s) - t))
  if ((FAILED[$name])); then
    { grep -E 'No tests were found' "$out"; sed -n '/The following tests FAILED:/,$p' "$out"; } |
      grep -vE '^(Errors while|Output from|Use ")' | head -40
    log "the $name tests: ${FAILED[$name]} failed (log: $out)"
  else
    log "the $name tests: $passed passed, $skipped skipped"
  fi
}
run_suite gpu gpu 4
end_phase test-gpu

if ((cpu_tests)); then
  log "building the rest (CPU tests, programs)"
  if cmake --build "$build" -j "$jobs" >>"$LOGS/build.log" 2>&1; then
    end_phase build-rest
    run_suite cpu cpu "$jobs"
    end_phase test-cpu
  else
    grep -E 'error|Error' "$LOGS/build.log" | head -30
    log "building the CPU tests failed (log: $LOGS/build.log)"
    SUITES+=(cpu) PASSED[cpu]=0 SKIPPED[cpu]=0 FAILED[cpu]=1 DURATION[cpu]=0
    end_phase build-rest
  fi
fi
finish 0
