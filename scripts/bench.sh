#!/usr/bin/env bash
# loom vs JAX, side by side in one run: each benchmark runs bench/<build>/loom_bench and
# bench/jax/train_step_bench.py with the same model, batch, steps and precision on the same device,
# alternating loom and JAX, then prints a table and writes every JSON line to a results file.
#
# Usage: scripts/bench.sh --cpu|--gpu [--build-dir DIR] [--rounds N] [--steps N] [--warmup N]
#                         [--cores LIST] [--models LIST] [--batch N] [--seq N] [--no-eager]
#                         [--out DIR] [--loom-flags "FLAGS"]
#   --cpu        the seed CNN (128x28x28x1, SGD momentum, f32) and the small transformer LM
#                (transformer-lm: loom's zoo model, GPT-2's architecture with 4 layers of 128
#                channels and a vocabulary of 256, AdamW, f32, 8 x 128 tokens) on the CPU, loom
#                and JAX pinned to the same cores (--cores, default 0,1) with taskset; --rounds
#                (default 3) rounds of loom then JAX, each a median over --steps (default 20)
#                after --warmup (5); the table shows the median of the rounds' medians.
#   --gpu        on one GPU: cnn f32 (b128), resnet50 bf16 (b256, 224x224), gpt2 bf16 (16x1024),
#                10 warm-up and 50 timed steps, one round. loom's step runs under loom::jit (a
#                CUDA graph, as JAX's under jax.jit), and again eagerly ("loom-eager"); gpt2
#                with cuDNN's attention (JAX's implementation), and again under jit with loom's
#                composed attention ("loom-composed"). Each run
#                has a time limit; a model that fails or times out shows its error in the table
#                and the rest go on. Add resnet50-f32 to --models for the f32 reference.
#   --build-dir  where loom_bench was built (default: build-bench for --cpu, build-gpu for --gpu;
#                for --gpu run scripts/gpu_check.sh --no-cpu-tests first: it configures
#                build-gpu with CUDA and its dependencies, and this script then builds loom_bench
#                there)
#   --models     comma list of MODEL[-PRECISION] (cnn, resnet50, gpt2, gpt2-medium,
#                transformer-lm; -f32/-bf16); gpt2-medium-bf16 measures issue 9's MFU goal
#                (about 2 more minutes)
#   --batch, --seq  the batch (and the language models' sequence length) of every run, in place
#                of each model's default (transformer-lm on the CPU: 8 and 128)
#   --no-eager   with --gpu: skip the eager "loom-eager" runs (a short device lease)
#   --bin DIR    use the loom_bench (and loom_input_bench, loom_kernel_bench) already built in DIR
#                instead of building them (scripts/gpu_prebuilt.sh: binaries built on another machine)
#   --extras     with --gpu: after the models, loom-only diagnostics (about 4 more minutes):
#                resnet50 and gpt2 bf16 with the step replayed as a CUDA graph (--graph on),
#                the input pipeline (loom_input_bench) and memory-bound kernels against the copy
#                bandwidth (loom_kernel_bench)
#   --out        results folder (default: $OUT when set, else bench/results)
#   --loom-flags extra loom_bench flags for every loom run, e.g. "--gemm-autotune on
#                --graph-launch device", split at spaces (so no value may contain one); each run's
#                JSON line records the options it ran with
# Exit status: 0 when every benchmark printed a result, 1 when one failed, 2 on a setup error.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD

mode="" build="" bindir="" rounds="" steps="" warmup="" batch="" seq="" cores=0,1 models="" extras=0 eager=1 out="${OUT:-$REPO/bench/results}"
loom_flags=()
while (($#)); do
  case "$1" in
    --cpu) mode=cpu ;;
    --gpu) mode=gpu ;;
    --build-dir) build=$2; shift ;;
    --bin) bindir=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --steps) steps=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --cores) cores=$2; shift ;;
    --models) models=$2; shift ;;
    --batch) batch=$2; shift ;;
    --seq) seq=$2; shift ;;
    --out) out=$2; shift ;;
    --loom-flags) read -ra loom_flags <<< "$2"; shift ;;
    --extras) extras=1 ;;
    --no-eager) eager=0 ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$mode" ]] || { echo "bench.sh: give --cpu or --gpu" >&2; exit 2; }

if [[ $mode == cpu ]]; then
  build=${build:-build-bench} rounds=${rounds:-3} steps=${steps:-20} warmup=${warmup:-5}
  models=${models:-cnn-f32,transformer-lm-f32} device=cpu
else
  build=${build:-build-gpu} rounds=${rounds:-1} steps=${steps:-50} warmup=${warmup:-10}
  models=${models:-cnn-f32,resnet50-bf16,gpt2-bf16} device=cuda
fi
[[ "$build" == /* ]] || build="$REPO/$build"
BIN=$build/bench/loom_bench

log() { printf '[bench %4ds] %s\n' "$SECONDS" "$*" >&2; }

# bench_tool NAME: the path of a loom benchmark program, built first unless --bin named a folder.
bench_tool() {
  if [[ -n $bindir ]]; then echo "$bindir/$1"; return; fi
  cmake --build "$build" --target "$1" -j "$( [[ $mode == gpu ]] && nproc || echo 2)" \
    >> "$build/bench_build.log" 2>&1 ||
    log "WARNING: building $1 failed (see $build/bench_build.log); using the existing one"
  echo "$build/bench/$1"
}

if [[ -n $bindir ]]; then
  BIN=$bindir/loom_bench
  log "using the prebuilt programs in $bindir"
elif [[ -f $build/CMakeCache.txt ]]; then
  # For the GPU the build folder must already be configured with CUDA.
  log "building loom_bench in $build"
  : > "$build/bench_build.log"
  BIN=$(bench_tool loom_bench)
  if [[ $mode == gpu ]] && ! grep -q 'LOOM_WITH_CUDA:INTERNAL=ON\|LOOM_CUDA:STRING=ON' "$build/CMakeCache.txt"; then
    log "WARNING: $build may not have the CUDA backend; loom runs will report the error"
  fi
elif [[ $mode == cpu ]]; then
  log "configuring $build (LOOM_CUDA=OFF)"
  { cmake -S "$REPO" -B "$build" -G Ninja -DLOOM_CUDA=OFF &&
    cmake --build "$build" --target loom_bench -j 2; } > /tmp/bench_build.$$.log 2>&1 ||
    { tail -30 /tmp/bench_build.$$.log >&2; exit 2; }
  BIN=$build/bench/loom_bench
else
  echo "bench.sh: $build is not configured; run scripts/gpu_check.sh --no-cpu-tests first" >&2
  exit 2
fi
[[ -x $BIN ]] || { echo "bench.sh: $BIN missing" >&2; exit 2; }

# Pinning: the same cores for both frameworks (CPU mode only; the GPU runs are not CPU-bound).
PIN=()
if [[ $mode == cpu ]] && command -v taskset >/dev/null; then PIN=(taskset -c "$cores"); fi
# Per-run limits keep --gpu under 6 minutes even when something hangs or compiles slowly.
limit_for() {  # FRAMEWORK MODEL; JAX's first step includes XLA's compilation
  if [[ $mode == cpu ]]; then echo 300; return; fi
  case $1-$2 in *-cnn) echo 40 ;; jax-gpt2-medium) echo 180 ;; jax-*|*-gpt2-medium) echo 120 ;; *) echo 90 ;; esac
}

mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$out/bench_${mode}_${stamp}.jsonl
: > "$RESULTS"

# run FRAMEWORK MODEL PRECISION ROUND: appends one JSON line (a timeout or crash becomes an error).
run_one() {
  local fw=$1 model=$2 prec=$3 round=$4 limit line rc args
  limit=$(limit_for "$fw" "$model")
  args=(--model "$model" --device "$device" --precision "$prec" --steps "$steps" --warmup "$warmup")
  local b=$batch s=$seq
  # The LM's own default (4 x 32 tokens) measures the per-op cost; on the CPU a batch that trains.
  [[ $mode == cpu && $model == transformer-lm ]] && b=${b:-8} s=${s:-128}
  [[ -n $b ]] && args+=(--batch "$b")
  [[ -n $s ]] && args+=(--seq "$s")
  log "round $round: $fw $model $prec on $device"
  if [[ $fw == loom* ]]; then
    # On the GPU, "loom" is the step under loom::jit (replayed as a CUDA graph), as JAX's is
    # under jax.jit, with cuDNN's fused attention for GPT-2 as JAX's; "loom-eager" the same step
    # launched op by op; "loom-composed" the jitted step with loom's composed attention.
    [[ $fw != loom-eager && $mode == gpu ]] && args+=(--graph on)
    [[ $fw != loom-composed && $mode == gpu && $model == gpt2* ]] && args+=(--attention cudnn)
    args+=("${loom_flags[@]}")
    line=$(timeout "$limit" "${PIN[@]}" "$BIN" "${args[@]}" 2>"$out/.stderr")
  else
    line=$(timeout "$limit" "${PIN[@]}" python3 bench/jax/train_step_bench.py "${args[@]}" \
             2>"$out/.stderr")
  fi
  rc=$?
  line=$(printf '%s\n' "$line" | grep '^{' | tail -1)
  if [[ -z $line ]]; then
    local why="exit $rc"
    ((rc == 124)) && why="timed out after ${limit}s"
    why="$why: $(tail -c 300 "$out/.stderr" | tr '\n"\\' '   ')"
    line="{\"framework\":\"$fw\",\"model\":\"$model\",\"device\":\"$device\",\"precision\":\"$prec\",\"error\":\"$why\"}"
  fi
  printf '%s\n' "$line" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["round"]=int(sys.argv[1]); d["framework"]=sys.argv[2]; print(json.dumps(d))' "$round" "$fw" >> "$RESULTS"
}

IFS=, read -ra MODELS <<< "$models"
for ((r = 1; r <= rounds; ++r)); do
  for spec in "${MODELS[@]}"; do
    model=$spec prec=f32
    [[ $spec == *-f32 || $spec == *-bf16 ]] && model=${spec%-*} prec=${spec##*-}
    # Alternate which framework goes first so that slow drift (other jobs on the machine, heat)
    # does not always favour the same one.
    if ((r % 2)); then order=(loom jax); else order=(jax loom); fi
    [[ $mode == gpu ]] && ((eager)) && order+=(loom-eager)
    [[ $mode == gpu && $model == gpt2* ]] && order+=(loom-composed)
    for fw in "${order[@]}"; do run_one "$fw" "$model" "$prec" "$r"; done
  done
done
rm -f "$out/.stderr"

# Loom-only GPU diagnostics (--extras): graph replay, input pipeline, memory-bound kernels.
if [[ $mode == gpu ]] && ((extras)); then
  log "loom with the step replayed as a CUDA graph (--graph on)"
  for spec in resnet50-bf16 gpt2-bf16; do
    timeout 120 "$BIN" --model "${spec%%-*}" --device cuda --precision "${spec#*-}" \
      --steps "$steps" --warmup "$warmup" --graph on 2>&1 | grep '^{' >> "$out/graph_${stamp}.jsonl" ||
      log "WARNING: loom_bench --graph on $spec printed no result"
  done
  cat "$out/graph_${stamp}.jsonl" >&2
  log "input pipeline: resident vs pinned vs pageable batches"
  timeout 120 "$(bench_tool loom_input_bench)" --device cuda | grep '^{' \
    > "$out/input_pipeline_${stamp}.json" || log "WARNING: loom_input_bench failed"
  cat "$out/input_pipeline_${stamp}.json" >&2
  log "memory-bound kernels vs device copy bandwidth"
  timeout 120 "$(bench_tool loom_kernel_bench)" --device cuda | grep '^{' \
    > "$out/kernel_bandwidth_${stamp}.jsonl" || log "WARNING: loom_kernel_bench failed"
  cat "$out/kernel_bandwidth_${stamp}.jsonl" >&2
fi

# The table and the summary JSON: median over rounds of each run's median step time.
machine="$(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs)"
gpu=$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit="$commit+dirty"
python3 - "$RESULTS" "$out/bench_${mode}_${stamp}.json" "$mode" "$machine" "${gpu:-}" "$commit" \
  "$cores" <<'PY'
import json, statistics, sys, datetime
src, dst, mode, machine, gpu, commit, cores = sys.argv[1:8]
rows = [json.loads(l) for l in open(src) if l.strip()]
keys = []
for r in rows:
  k = (r['model'], r.get('precision', 'f32'))
  if k not in keys: keys.append(k)

def agg(fw, k):
  rs = [r for r in rows if r['framework'] == fw and (r['model'], r.get('precision', 'f32')) == k]
  ok = [r for r in rs if 'error' not in r and r.get('median_ms') is not None]
  if not ok:
    return {'error': rs[-1].get('error', 'no result') if rs else 'not run'}
  med = statistics.median(r['median_ms'] for r in ok)
  a = {'median_ms': med, 'round_medians_ms': [r['median_ms'] for r in ok],
       'throughput': ok[0]['throughput'] * ok[0]['median_ms'] / med,
       'unit': ok[0]['throughput_unit'], 'peak_mem_mb': ok[-1].get('peak_mem_mb'),
       'host_max_rss_mb': ok[-1].get('host_max_rss_mb'), 'mfu': None, 'batch': ok[0]['batch'],
       'host_enqueue_ms': ok[-1].get('host_enqueue_ms'), 'jit_call_ms': ok[-1].get('jit_call_ms'),
       'graph_launch_ms': ok[-1].get('graph_launch_ms'), 'graph_nodes': ok[-1].get('graph_nodes'),
       'cpu_blas': ok[-1].get('cpu_blas')}
  if ok[0].get('mfu') is not None:
    a['mfu'] = ok[0]['mfu'] * ok[0]['median_ms'] / med
  if len(ok) < len(rs): a['failed_rounds'] = len(rs) - len(ok)
  return a

def fmt_mem(a):
  if a.get('peak_mem_mb') is not None: return f"{a['peak_mem_mb']:.0f} MiB"
  if a.get('host_max_rss_mb') is not None: return f"rss {a['host_max_rss_mb']:.0f} MiB"
  return '-'

summary = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'mode': mode, 'machine': machine, 'gpu': gpu or None, 'commit': commit,
           'cores': cores if mode == 'cpu' else None, 'results': []}
versions = next((r['versions'] for r in rows if 'versions' in r), None)
summary['jax_versions'] = versions
hdr = f"{'model':<14} {'prec':<5} {'device':<6} {'loom ms':>9} {'JAX ms':>9} {'loom/JAX':>8} " \
      f"{'loom thr':>13} {'JAX thr':>13} {'loom mem':>14} {'JAX mem':>14} {'MFU l/J':>11}"
print(hdr); print('-' * len(hdr))
failed = False
for k in keys:
  L, J = agg('loom', k), agg('jax', k)
  dev = 'cpu' if mode == 'cpu' else 'cuda'
  ratio = L['median_ms'] / J['median_ms'] if 'median_ms' in L and 'median_ms' in J else None
  ran = lambda fw: any(r['framework'] == fw and r['model'] == k[0] for r in rows)
  E = agg('loom-eager', k) if ran('loom-eager') else None
  C = agg('loom-composed', k) if ran('loom-composed') else None
  summary['results'].append({'model': k[0], 'precision': k[1], 'device': dev, 'loom': L,
                             'jax': J, 'ratio_loom_over_jax': ratio, 'loom_eager': E,
                             'loom_composed_attention': C})
  def ms(a): return f"{a['median_ms']:9.2f}" if 'median_ms' in a else f"{'ERROR':>9}"
  def thr(a): return f"{a['throughput']:8.0f} {a['unit']}" if 'median_ms' in a else '-'
  mfu = '-'
  if L.get('mfu') is not None or J.get('mfu') is not None:
    f = lambda a: f"{100*a['mfu']:.1f}%" if a.get('mfu') is not None else '-'
    mfu = f"{f(L)}/{f(J)}"
  print(f"{k[0]:<14} {k[1]:<5} {dev:<6} {ms(L)} {ms(J)} "
        f"{(f'{ratio:8.3f}' if ratio else '       -')} {thr(L):>13} {thr(J):>13} "
        f"{fmt_mem(L):>14} {fmt_mem(J):>14} {mfu:>11}")
  for fw, a in (('loom', L), ('JAX', J)):
    if 'error' in a:
      failed = True
      print(f"    {fw} error: {a['error'][:300]}")
    elif mode == 'cpu':
      print(f"    {fw} round medians (ms): " + ', '.join(f'{m:.1f}' for m in a['round_medians_ms']))
    elif a.get('host_enqueue_ms') is not None:
      print(f"    {fw} host enqueue {a['host_enqueue_ms']:.2f} ms of a {a['median_ms']:.2f} ms step")
      if a.get('graph_launch_ms') is not None:
        n = a['graph_nodes']
        print(f"      in the jit {a['jit_call_ms']:.3f} ms, of which the graph launch "
              f"{a['graph_launch_ms']:.3f} ms for {n['kernels']} kernel, {n['copies']} copy, "
              f"{n['memsets']} memset and {n['other']} other nodes")
  if E is not None:
    if 'median_ms' in E:
      print(f"    loom eager (no loom::jit) {E['median_ms']:.2f} ms, host enqueue "
            f"{E.get('host_enqueue_ms') or 0:.2f} ms, peak {fmt_mem(E)}")
    else:
      print(f"    loom eager error: {E['error'][:300]}")
  if C is not None:
    if 'median_ms' in C:
      r = f", loom/JAX {C['median_ms'] / J['median_ms']:.3f}" if 'median_ms' in J else ''
      print(f"    loom with composed attention (loom::jit) {C['median_ms']:.2f} ms{r}, peak {fmt_mem(C)}")
    else:
      print(f"    loom with composed attention error: {C['error'][:300]}")
json.dump(summary, open(dst, 'w'), indent=1)
print(f"\n{machine}; {gpu or 'no GPU'}; commit {commit}; JAX {versions}")
blas = next((r['cpu_blas'] for r in rows if r.get('cpu_blas')), None)
if mode == 'cpu' and blas: print(f"loom's CPU products: {blas}")
print(f"results: {dst} (every run: {src})")
sys.exit(1 if failed else 0)
PY
