#!/usr/bin/env bash
# Builds (fuzz/build.sh) and runs every libFuzzer target for a fixed time under ASan+UBSan,
# starting from its committed seed corpus fuzz/corpus/<target>/ (new inputs go to a scratch copy,
# so the committed corpus stays small). A crash, leak-free sanitizer report or non-loom exception
# fails the run and leaves the input as <build>/crash-* for a regression test.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]     env: LOOM_FUZZ_BUILD_DIR (build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; shift || true
out=${LOOM_FUZZ_BUILD_DIR:-$PWD/build-fuzz}
fuzz/build.sh "$out"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/*_fuzz.cc; do targets+=("$(basename "$f" .cc)"); done
fi
# OpenMP / OpenBLAS pools live until exit; leak reports there are noise, not findings.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
status=0
for t in "${targets[@]}"; do
  work="$out/corpus_run/$t"; mkdir -p "$work"
  [ -d "fuzz/corpus/$t" ] && cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  echo "=== $t: ${secs}s"
  log="$out/$t.log"
  if (cd "$out" && "./$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "$work" >"$log" 2>&1); then
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$log" | tr '\n' ' '; echo
  else
    status=1; echo "FINDING in $t (log $log):"; grep -E "ERROR|SUMMARY|non-loom|Test unit written" "$log" | head
  fi
done
exit $status
