#!/usr/bin/env bash
# Runs scripts/gpu_prebuilt.sh's modes on this machine, without a GPU, to find mistakes in the
# scripts before a short device lease does: a bundle of a CPU build's programs stands in for
# scripts/gpu_bundle.sh's, loom_bench and the JAX script are wrapped to run each model at a
# tiny size on the CPU (`--device cuda` becomes cpu), nvidia-smi is faked, and the GPU-only
# programs are stubs. The numbers mean nothing; what is checked is that every path of the
# scripts runs, parses the results and prints its tables. The gpu tests all skip here.
#
# Usage: scripts/gpu_dry_run.sh [--build-dir DIR] [MODE ...]
#   DIR    a CPU build with loom_bench, loom_gpu_tests and the other bench programs
#          (default build-cpu)
#   MODE   gpu_prebuilt.sh's arguments for one run, quoted; default: the four modes
# Exit status: 0 when no run printed a shell or Python error, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
build=build-cpu
if [[ ${1:-} == --build-dir ]]; then build=$2; shift 2; fi
modes=("$@")
((${#modes[@]})) || modes=("--jobs 2 --no-eager --models resnet50-bf16,gpt2-bf16"
                           "--fusions-ab --models resnet50-bf16,gpt2-bf16"
                           "--profile-only --models resnet50-bf16,gpt2-bf16"
                           "--fusion-probe")
for p in bench/loom_bench bench/loom_kernel_bench bench/loom_input_bench \
         bench/loom_allocator_replay tests/loom_gpu_tests; do
  [[ -x $build/$p ]] || { echo "gpu_dry_run: $build/$p missing (build $build first)" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The repository as committed, with this working tree's scripts and JAX benchmark.
git clone -q --shared "$REPO" "$work/repo"
cp -r "$REPO/scripts/." "$work/repo/scripts/"
cp -r "$REPO/bench/jax/." "$work/repo/bench/jax/"

# Arguments of one benchmark run, rewritten for a tiny CPU run (sourced; sets `out`).
cat > "$work/shrink.sh" <<'EOF'
out=() model="" prev="" skip=0
for a in "$@"; do [[ $prev == --model ]] && model=$a; prev=$a; done
for a in "$@"; do
  if ((skip)); then skip=0; continue; fi
  case $a in
    cuda) out+=(cpu) ;;
    --steps|--warmup|--batch|--seq|--image|--peak-tflops) skip=1 ;;
    *) out+=("$a") ;;
  esac
done
case $model in
  resnet50) out+=(--batch 2 --image 32) ;;
  gpt2*) out+=(--batch 1 --seq 32) ;;
  *) out+=(--batch 8) ;;
esac
out+=(--steps 2 --warmup 1)
EOF
stage=$work/stage
mkdir -p "$stage/bin" "$stage/lib" "$work/path"
for p in bench/loom_kernel_bench bench/loom_input_bench bench/loom_allocator_replay \
         tests/loom_gpu_tests; do
  cp "$build/$p" "$stage/bin/"
done
cp "$build/bench/loom_bench" "$stage/bin/loom_bench.cpu"
printf '#!/usr/bin/env bash\nsource %q\nexec "$(dirname "$0")/loom_bench.cpu" "${out[@]}"\n' \
  "$work/shrink.sh" > "$stage/bin/loom_bench"
for p in loom_fusion_probe loom_graph_launch_bench; do
  printf '#!/bin/sh\necho "{\\"dry_run_stub\\": \\"%s\\"}"\n' "$p" > "$stage/bin/$p"
done
echo "gpu_dry_run: programs of $build (a CPU build), not a GPU bundle" > "$stage/MANIFEST"
chmod +x "$stage/bin/"*
mkdir -p "$work/repo/build-bundle"
tar -C "$stage" -cJf "$work/repo/build-bundle/loom-gpu.tar.xz" .
python=$(command -v python3)
printf '#!/usr/bin/env bash\nif [[ ${1:-} == bench/jax/train_step_bench.py ]]; then\n  shift; source %q\n  exec %q bench/jax/train_step_bench.py "${out[@]}"\nfi\nexec %q "$@"\n' \
  "$work/shrink.sh" "$python" "$python" > "$work/path/python3"
printf '#!/bin/sh\necho "dry run (no GPU), -, -, -"\n' > "$work/path/nvidia-smi"
chmod +x "$work/path/"*

status=0
for mode in "${modes[@]}"; do
  log=$work/run.log
  echo "=== gpu_prebuilt.sh $mode"
  # shellcheck disable=SC2086  # a mode is several arguments
  PATH=$work/path:$PATH OUT=$work/out TMPDIR=$work timeout 1200 \
    bash "$work/repo/scripts/gpu_prebuilt.sh" $mode > "$log" 2>&1
  echo "    exit $?"
  # What a mistake in the scripts looks like: bash's "line N:" errors, Python tracebacks.
  if grep -E "(\.sh|bash): line [0-9]+:|^Traceback|SyntaxError|command not found|unbound variable" "$log"; then
    status=1
  fi
  grep -E "^\[gpu_prebuilt|^\[bench|^    [a-z]|^model|^[a-z0-9-]+ +(bf16|f32)" "$log" | cut -c1-160 | tail -25
  rm -rf "$work/out"
done
echo "gpu_dry_run: $( ((status)) && echo "errors in the scripts (above)" || echo "no script errors")"
exit $status
