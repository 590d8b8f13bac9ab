#!/usr/bin/env bash
# The GPU check with programs built on another machine (scripts/gpu_bundle.sh): run from the
# repository root on a GPU machine, it unpacks build-bundle/loom-gpu.tar.xz, takes the CUDA
# libraries from the machine (the CUDA toolkit, else the nvidia-* Python wheels), runs every gpu
# test in its own process (a crash or a poisoned CUDA context fails one test, not the rest),
# then scripts/bench.sh --gpu against JAX, and prints a short table. Logs go to $OUT.
#
# Usage: scripts/gpu_prebuilt.sh [--tests-only|--bench-only|--profile-only|--fusions-ab|
#                                 --fusion-probe]
#                                [--with-fusion-probe] [--extras]
#                                [--filter GLOB] [--models LIST] [--jobs N] [--no-eager]
#                                [--loom-flags "FLAGS"]
#   --filter   only the gpu tests whose Suite.Name matches GLOB (bash pattern)
#   --extras   also run bench.sh's --extras (graph replay, input pipeline, kernel bandwidth)
#   --no-eager bench.sh without its eager loom runs
#   --loom-flags  extra loom_bench flags for bench.sh's loom runs (the options --fusions-ab
#              found faster, e.g. "--gemm-autotune on --graph-launch device")
#   --profile-only  loom alone, per model of --models (default resnet50-bf16,gpt2-bf16): where
#              the host waits for the GPU (LOOM_SYNC_DEBUG backtraces, symbolise them with
#              addr2line -C -f -e build/bench/loom_bench), device time per kernel (--kernel-trace)
#              and the step as a CUDA graph (--graph on); for gpt2 also with --attention fused
#              and --attention cudnn; the allocations of one eager step (after one),
#              replayed through the allocator's policies (bench/allocator_replay.cc); the
#              memory-bound kernels' bandwidth; a graph launch's host time against its nodes
#   --fusions-ab  loom alone, per model of --models: the graph step (10 steps after 2) with
#              every fused route on, then with each of the model's fusions off
#              (core/fusions.h, loom_bench --fusions-off), then all off: what each saves; then
#              with the products' algorithms timed (--gemm-autotune on), and for resnet50 the
#              convolutions' too (--conv-autotune on); then with the graph launched from the
#              device (--graph-launch device): the host's share of a step
#   --fusion-probe  only bench/cudnn_fusion_probe.cc: whether cuDNN's conv + BatchNorm fusion
#              graphs build on this GPU and what they cost (ResNet-50 layers, batch 256);
#              --with-fusion-probe runs it after the tests (one device call for both)
# Exit status: 0 every test passed and every benchmark printed a result, 1 otherwise, 2 setup.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
OUT=${OUT:-$REPO/out}
mkdir -p "$OUT"

tests=1 bench=1 profile=0 fusions_ab=0 probe=0 extras=0 eager=1 filter='*' models="" jobs=4
loom_flags=""
while (($#)); do
  case "$1" in
    --tests-only) bench=0 ;;
    --bench-only) tests=0 ;;
    --profile-only) tests=0 bench=0 profile=1 ;;
    --fusions-ab) tests=0 bench=0 fusions_ab=1 ;;
    --fusion-probe) tests=0 bench=0 probe=1 ;;
    --with-fusion-probe) probe=1 ;;
    --extras) extras=1 ;;
    --no-eager) eager=0 ;;
    --filter) filter=$2; shift ;;
    --models) models=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --loom-flags) loom_flags=$2; shift ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "gpu_prebuilt: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '[gpu_prebuilt %4ds] %s\n' "$SECONDS" "$*"; }
# A --models entry as $model and $prec: resnet50-bf16 -> resnet50 bf16, cnn -> cnn f32.
split_spec() {
  model=$1 prec=f32
  if [[ $1 == *-f32 || $1 == *-bf16 ]]; then model=${1%-*} prec=${1##*-}; fi
}

# --- the programs and the libraries they load ---------------------------------------------------
B=${TMPDIR:-/tmp}/loom-bundle
rm -rf "$B" && mkdir -p "$B"
tar -xJf build-bundle/loom-gpu.tar.xz -C "$B" || { log "no build-bundle/loom-gpu.tar.xz"; exit 2; }
head -2 "$B/MANIFEST" | sed 's/^/    /'
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader ||
  log "nvidia-smi failed"
libdirs=("$B/lib")
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         /usr/local/cuda/extras/CUPTI/lib64; do
  [[ -d $d ]] && libdirs+=("$d")
done
# cuDNN and NCCL (and cuBLAS where the toolkit lacks it) from Python wheels: every nvidia/*/lib.
while IFS= read -r d; do libdirs+=("$d"); done < <(python3 - <<'PY'
import glob, importlib, os
try:
  roots = list(importlib.import_module('nvidia').__path__)
except Exception:
  roots = []
for r in roots:
  for d in sorted(glob.glob(os.path.join(r, '*', 'lib')) + glob.glob(os.path.join(r, 'cu*', 'lib'))):
    print(d)
PY
)
LD_LIBRARY_PATH=$(IFS=:; echo "${libdirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
missing=$(ldd "$B"/bin/* | grep 'not found' | sort -u)
[[ -z $missing ]] || { log "libraries not found:"; echo "$missing"; exit 2; }
ldd "$B/bin/loom_gpu_tests" | grep -E 'cudnn|cublas|nccl|cudart' | sed 's/^/    /'
# The tests read goldens from the source path compiled into them (this repository's path there).
compiled_root=$(strings "$B/bin/loom_gpu_tests" | grep -m1 -o '/[^ ]*/tests/golden' | sed 's#/tests/golden$##')
if [[ -n $compiled_root && ! -e $compiled_root ]]; then
  mkdir -p "$(dirname "$compiled_root")" && ln -s "$REPO" "$compiled_root"
fi

status=0
# The models that --profile-only and --fusions-ab run loom alone on.
IFS=, read -ra loom_specs <<< "${models:-resnet50-bf16,gpt2-bf16}"
# --- the gpu tests, one process each --------------------------------------------------------------
if ((tests)); then
  T=$OUT/gpu_tests
  mkdir -p "$T"
  "$B/bin/loom_gpu_tests" --gtest_list_tests | awk '/^[^ ]/{s=$1} /^  /{print s $1}' |
    while read -r t; do [[ $t == $filter ]] && echo "$t"; done > "$T/list"
  log "running $(wc -l < "$T/list") gpu tests, $jobs at a time"
  export B T
  xargs -P "$jobs" -I{} bash -c '
    timeout 90 "$B/bin/loom_gpu_tests" --gtest_filter="$1" > "$T/$1.log" 2>&1
    rc=$?
    if grep -q "^\[  SKIPPED \]" "$T/$1.log"; then r=SKIP
    elif ((rc == 0)) && grep -q "^\[       OK \]" "$T/$1.log"; then r=PASS
    elif ((rc == 124)); then r=TIMEOUT
    else r="FAIL(rc=$rc)"; fi
    echo "$r $1 $(grep -o "([0-9]* ms)" "$T/$1.log" | tail -1)" >> "$T/results"
  ' _ {} < "$T/list"
  sort -k2 "$T/results" -o "$T/results"
  pass=$(grep -c '^PASS' "$T/results") skip=$(grep -c '^SKIP' "$T/results")
  fail=$(grep -vc '^PASS\|^SKIP' "$T/results")
  log "gpu tests: $pass passed, $fail failed, $skip skipped"
  ((skip)) && echo "skipped: $(grep '^SKIP' "$T/results" | cut -d' ' -f2 | tr '\n' ' ')"
  grep -v '^PASS\|^SKIP' "$T/results" | while read -r r name _; do
    echo "--- $r $name"
    grep -E -A4 'Failure|error|Error|what\(\)|terminate|Segmentation|SKIPPED' "$T/$name.log" |
      grep -v '^\[ RUN\|^Note: Google' | head -12
  done
  ((fail)) && status=1
  tar -czf "$OUT/gpu_tests.tgz" -C "$OUT" gpu_tests && rm -rf "$T"  # one file comes back
fi

# --- where loom's step spends its time ----------------------------------------------------------
if ((profile)); then
  P=$OUT/profile
  mkdir -p "$P"
  for spec in "${loom_specs[@]}"; do
    split_spec "$spec"
    run=("$B/bin/loom_bench" --model "$model" --device cuda --precision "$prec")
    log "$spec: host waits (LOOM_SYNC_DEBUG=1, 2 steps after 3)"
    LOOM_SYNC_DEBUG=1 timeout 120 "${run[@]}" --warmup 3 --steps 2 > "$P/$spec.waits.json" \
      2> "$P/$spec.waits.txt" || log "WARNING: $spec waits run failed"
    grep -c 'host waits for the GPU' "$P/$spec.waits.txt" | sed 's/^/    backtraces: /'
    log "$spec: device time per kernel (10 steps)"
    timeout 120 "${run[@]}" --warmup 3 --steps 10 --kernel-trace on > "$P/$spec.kernels.json" \
      2> "$P/$spec.kernels.err" || log "WARNING: $spec kernel trace failed"
    python3 - "$P/$spec.kernels.json" <<'PY' || true
import json, sys
d = json.loads([l for l in open(sys.argv[1]) if l.startswith('{')][-1])
print(f"    step {d.get('median_ms', 0):.2f} ms, kernels {d.get('kernel_ms_per_step', 0):.2f} ms"
      f" ({d.get('kernels_per_step', 0):.0f} launches),"
      f" host enqueue {d.get('host_enqueue_ms', 0):.2f} ms, host waits/step {d.get('host_waits_per_step')},"
      f" {d.get('kernel_trace_error', '')}{d.get('error', '')}")
for k in d.get('kernels', [])[:12]:
  print(f"    {k['ms_per_step']:8.3f} ms {k['calls_per_step']:6.1f}x  {k['name'][:90]}")
PY
    log "$spec: allocations of 1 warm-up + 1 step, replayed through the allocator policies"
    timeout 120 "${run[@]}" --warmup 1 --steps 1 --allocation-trace "$P/$spec.allocations" \
      > "$P/$spec.allocations.json" 2>&1 || log "WARNING: $spec allocation trace failed"
    "$B/bin/loom_allocator_replay" "$P/$spec.allocations" | tee "$P/$spec.replay.json" |
      cut -c1-400 || log "WARNING: $spec replay failed"
    log "$spec: the step as a CUDA graph (20 steps)"
    timeout 120 "${run[@]}" --warmup 3 --steps 20 --graph on > "$P/$spec.graph.json" \
      2> "$P/$spec.graph.err" || log "WARNING: $spec graph run failed"
    tail -c 600 "$P/$spec.graph.json" "$P/$spec.graph.err"; echo
    python3 - "$P/$spec.graph.json" <<'PY' || true
import json, sys
for f in sys.argv[1:]:
  d = json.loads([l for l in open(f) if l.startswith('{')][-1])
  v = lambda k: d.get(k) or 0
  print(f"    {f.split('/')[-1]}: step {v('median_ms'):.2f} ms, host enqueue"
        f" {v('host_enqueue_ms'):.3f} ms, in the jit {v('jit_call_ms'):.3f} ms,"
        f" graph launch {v('graph_launch_ms'):.3f} ms, nodes {d.get('graph_nodes')},"
        f" peak {v('peak_mem_mb'):.0f} MiB {d.get('error', '')}")
PY
    if [[ $model == gpt2* ]]; then
      for impl in fused cudnn; do
        log "$spec: --attention $impl, kernels then graph"
        timeout 120 "${run[@]}" --warmup 3 --steps 10 --kernel-trace on --attention $impl \
          > "$P/$spec.$impl.kernels.json" 2>&1 || log "WARNING: $spec $impl kernel trace failed"
        timeout 120 "${run[@]}" --warmup 3 --steps 20 --graph on --attention $impl \
          > "$P/$spec.$impl.graph.json" 2>&1 || log "WARNING: $spec $impl graph run failed"
        tail -c 900 "$P/$spec.$impl.kernels.json" "$P/$spec.$impl.graph.json"; echo
      done
    fi
  done
  log "memory-bound kernels against the copy bandwidth"
  timeout 120 "$B/bin/loom_kernel_bench" --device cuda > "$P/kernel_bandwidth.jsonl" 2>&1 ||
    log "WARNING: loom_kernel_bench failed"
  cut -c1-160 "$P/kernel_bandwidth.jsonl" | head -80
  log "the open choices: loom's way against the alternative, by time"
  python3 scripts/kernel_bench_choices.py "$P/kernel_bandwidth.jsonl" || true
  log "host time of a graph launch against its nodes"
  timeout 60 "$B/bin/loom_graph_launch_bench" > "$P/graph_launch.jsonl" 2>&1 ||
    log "WARNING: loom_graph_launch_bench failed"
  cut -c1-200 "$P/graph_launch.jsonl"
  tar -czf "$OUT/profile.tgz" -C "$OUT" profile && rm -rf "$P"
fi

# --- what each fused route saves: the step with it off ------------------------------------------
if ((fusions_ab)); then
  F=$OUT/fusions_ab
  mkdir -p "$F"
  for spec in "${loom_specs[@]}"; do
    split_spec "$spec"
    # Two warm-up calls: the eager step (where autotuning times its choices), the capture.
    run=("$B/bin/loom_bench" --model "$model" --device cuda --precision "$prec" --graph on
         --warmup 2 --steps 10)
    [[ $model == gpt2* ]] && run+=(--attention cudnn)
    # The fusions this model's step takes (core/fusions.h).
    case $model in
      resnet50) own=(pointwise_conv_as_product batch_norm_relu_mask_from_x
                     batch_norm_running_stats_in_kernel) ;;
      cnn) own=() ;;
      *) own=(gelu_epilogue dgelu_epilogue residual_epilogue input_grad_accumulate
              norm_rows_in_registers cross_entropy_grad_in_forward) ;;
    esac
    runs=()
    # One graph step run: $1 names it, the rest are loom_bench's extra flags.
    ab_run() {
      local name=$1
      shift
      log "$spec: graph step, $name"
      timeout 120 "${run[@]}" "$@" > "$F/$spec.$name.json" 2> "$F/$spec.$name.err" ||
        log "WARNING: $spec run $name failed"
      tail -2 "$F/$spec.$name.err"
      runs+=("$F/$spec.$name.json")
    }
    ab_run none
    for off in "${own[@]}" all; do ab_run "$off" --fusions-off "$off"; done
    ab_run gemm_autotune --gemm-autotune on
    ab_run device_launch --graph-launch device
    [[ $model == resnet50 ]] && ab_run conv_gemm_autotune --conv-autotune on --gemm-autotune on
    python3 - "${runs[@]}" <<'PY' || true
import json, sys
rows = []
for f in sys.argv[1:]:
  lines = [l for l in open(f) if l.startswith('{')]
  d = json.loads(lines[-1]) if lines else {'error': 'no result'}
  rows.append((f.split('.')[-2], d))
base = rows[0][1].get('median_ms')
print(f"    {'fusions off (or the option on)':36s} {'step ms':>8s} {'/ all on':>8s} {'host ms':>8s}"
      f" {'launch':>7s} {'nodes':>6s} {'line':>5s} {'final loss':>11s} {'timed':>5s}")
for off, d in rows:
  ms = d.get('median_ms')
  g = d.get('graph_nodes') or {}
  nodes = sum(v for k, v in g.items() if k in ('kernels', 'copies', 'memsets', 'other'))
  ratio = f"{ms / base:8.3f}" if ms and base else f"{'-':>8s}"
  loss = float('nan') if d.get('final_loss') is None else d['final_loss']
  line = '-' if 'straight_line' not in g else ('yes' if g['straight_line'] else 'no')
  where = ' (device)' if d.get('graph_device_launch') else ''
  # shapes whose algorithms autotuning timed (conv + GEMM), where it was on
  timed = d.get('conv_timings', 0) + d.get('gemm_timings', 0)
  timed = f"{timed:5d}" if 'conv_timings' in d or 'gemm_timings' in d else f"{'-':>5s}"
  print(f"    {off:36s} {ms or 0:8.2f} {ratio} {d.get('host_enqueue_ms') or 0:8.3f}"
        f" {d.get('graph_launch_ms') or 0:7.3f} {nodes:6d} {line:>5s} {loss:11.6g} {timed}{where}"
        f" {d.get('error', '')}")
PY
  done
  tar -czf "$OUT/fusions_ab.tgz" -C "$OUT" fusions_ab && rm -rf "$F"
fi

# --- cuDNN's convolution + BatchNorm fusion graphs ----------------------------------------------
if ((probe)); then
  log "cuDNN conv + BatchNorm fusion probe (ResNet-50 layers, batch 256)"
  timeout 120 "$B/bin/loom_fusion_probe" > "$OUT/fusion_probe.jsonl" 2> "$OUT/fusion_probe.err" ||
    { log "WARNING: loom_fusion_probe failed"; status=1; }
  cut -c1-600 "$OUT/fusion_probe.jsonl"; tail -5 "$OUT/fusion_probe.err"
fi

# --- loom vs JAX ------------------------------------------------------------------------------------
if ((bench)); then
  args=(--gpu --bin "$B/bin" --out "$OUT")
  [[ -n $models ]] && args+=(--models "$models")
  ((extras)) && args+=(--extras)
  ((eager)) || args+=(--no-eager)
  [[ -n $loom_flags ]] && args+=(--loom-flags "$loom_flags")
  log "scripts/bench.sh ${args[*]}"
  bash scripts/bench.sh "${args[@]}" || status=1
fi
log "done (exit $status)"
exit $status
