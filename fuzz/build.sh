#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*_fuzz.cc) with clang++ -fsanitize=fuzzer,address,undefined,
# compiling the library sources they need directly (no CMake: the fuzz build is separate from the
# main build and needs clang, which the main build does not).
#
#   fuzz/build.sh [OUT_DIR]          (default: build-fuzz)      env JOBS=2
#
# Needs clang++ and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev); when they are missing
# and we are root, they are installed with apt-get.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build-fuzz}"
JOBS="${JOBS:-2}"
CXX="${CXX_FUZZ:-clang++}"

have_fuzzer() {
  command -v "$CXX" >/dev/null 2>&1 &&
    echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long){return 0;}' |
      "$CXX" -x c++ -fsanitize=fuzzer - -o /dev/null >/dev/null 2>&1
}
if ! have_fuzzer; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update && apt-get install -y --no-install-recommends clang libclang-rt-14-dev
  fi
  have_fuzzer || { echo "fuzz/build.sh: $CXX with -fsanitize=fuzzer is not available" >&2; exit 2; }
fi

CBLAS_INC=""
for d in /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas; do
  [ -f "$d/cblas.h" ] && { CBLAS_INC="-I$d"; break; }
done
FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fopenmp -DLOOM_CUDA=0 -I"$ROOT" $CBLAS_INC
       -fsanitize=address,undefined -fno-sanitize-recover=undefined -Wall -Wextra)
# The library part the readers reach: core (tensor, tree, storage, ...), the CPU kernels that
# tensor copies and tree helpers call, core ops (tree_allclose etc.), and train/io + checkpoint.
mapfile -t SRCS < <(cd "$ROOT" && ls core/*.cc core/ops/*.cc kernels/cpu/*.cc train/io/*.cc train/checkpoint.cc)

mkdir -p "$OUT/obj"
export OUT ROOT CXX; export FLAGS_STR="${FLAGS[*]}"
printf '%s\n' "${SRCS[@]}" | xargs -P "$JOBS" -I{} bash -c '
  src={}; obj="$OUT/obj/${src//\//_}.o"
  if [ ! -f "$obj" ] || [ "$ROOT/$src" -nt "$obj" ]; then
    echo "  CXX $src"; $CXX $FLAGS_STR -fsanitize=fuzzer-no-link -c "$ROOT/$src" -o "$obj"
  fi'
rm -f "$OUT/libloom_fuzz.a"
ar qc "$OUT/libloom_fuzz.a" "$OUT"/obj/*.o

LIBS=(-lopenblas -lz -fopenmp)
for t in "$ROOT"/fuzz/*_fuzz.cc; do
  name="$(basename "$t" .cc)"
  echo "  LINK $name"
  "$CXX" "${FLAGS[@]}" -fsanitize=fuzzer "$t" "$OUT/libloom_fuzz.a" "${LIBS[@]}" -o "$OUT/$name"
done
echo "fuzz targets in $OUT"
