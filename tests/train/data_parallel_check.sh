#!/usr/bin/env bash
# Data-parallel `loom train` equals one process on the full batch: the training losses of
# `loom launch -n 2 -- loom train` and of `loom train --nproc 2` agree with one process's to 1e-5
# (relative), for the CNN and for a ResNet, whose BatchNorm is then synchronised across the ranks
# (global batch statistics). With --zero (ZeRO-1, sharded optimizer state) the losses are the same,
# and its checkpoints resume with or without --zero. Bad --nproc values fail with a message naming
# the flag.
# Usage: data_parallel_check.sh PATH/TO/loom
set -euo pipefail
loom=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
losses() { grep '"split":"train"' "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\).*/\1/'; }
# agree STEPS RUN_A RUN_B: the runs' train losses agree step by step.
agree() {
  paste <(losses "$2") <(losses "$3") | awk -v steps="$1" -v what="$3" '
    { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1)) { bad++; print what " step " n ": " $1 " vs " $2 } }
    END { if (n != steps) { print what ": expected " steps " losses, got " n; exit 1 } if (bad) exit 1; print what ": " n " losses agree" }'
}

args=(train --dataset synthetic:8x8x1:4:256 --batch-size 32 --steps 6 --log-every 1
      --optimizer momentum --schedule constant --lr 0.05 --device cpu)
"$loom" "${args[@]}" --run-dir "$dir/one" > /dev/null
"$loom" launch -n 2 --master-port 0 -- "$loom" "${args[@]}" --run-dir "$dir/launch" > /dev/null
"$loom" "${args[@]}" --nproc 2 --run-dir "$dir/nproc" > /dev/null
agree 6 "$dir/one" "$dir/launch"
agree 6 "$dir/one" "$dir/nproc"

resnet=(train --model resnet18 --dataset synthetic:8x8x3:4:64 --batch-size 8 --steps 3 --log-every 1
        --optimizer momentum --schedule constant --lr 0.05 --device cpu --max-eval-examples 8)
"$loom" "${resnet[@]}" --run-dir "$dir/resnet_one" > /dev/null
"$loom" "${resnet[@]}" --nproc 2 --run-dir "$dir/resnet_nproc" > /dev/null
agree 3 "$dir/resnet_one" "$dir/resnet_nproc"

# ZeRO-1 (--zero): the sharded optimizer state gives the same losses, for adamw and momentum.
"$loom" "${args[@]}" --nproc 2 --zero --run-dir "$dir/zero_momentum" > /dev/null
agree 6 "$dir/one" "$dir/zero_momentum"
adamw=(train --dataset synthetic:8x8x1:4:256 --batch-size 32 --log-every 1
       --optimizer adamw --schedule constant --lr 0.01 --device cpu)
"$loom" "${adamw[@]}" --steps 6 --run-dir "$dir/adamw_one" > /dev/null
"$loom" "${adamw[@]}" --steps 6 --nproc 2 --run-dir "$dir/adamw_nproc" > /dev/null
"$loom" "${adamw[@]}" --steps 6 --nproc 2 --zero --run-dir "$dir/adamw_zero" > /dev/null
agree 6 "$dir/adamw_one" "$dir/adamw_nproc"
agree 6 "$dir/adamw_one" "$dir/adamw_zero"
# Its checkpoints hold the full optimizer state: 4 steps then a resume to 6 equal 6 steps in one
# go, whether the resume shards again, runs unsharded, or shards a checkpoint written unsharded.
# resumed RUN FIRST... -- SECOND...: 4 steps with the first flags, then resumed to 6.
resumed() {
  local run=$dir/$1 first=() second=()
  shift
  while [[ $1 != -- ]]; do first+=("$1"); shift; done
  shift
  second=("$@")
  "$loom" "${adamw[@]}" --steps 4 "${first[@]}" --run-dir "$run" > /dev/null
  "$loom" "${adamw[@]}" --steps 6 "${second[@]}" --run-dir "$run" > /dev/null
  agree 6 "$dir/adamw_one" "$run"
}
resumed resume_zero --nproc 2 --zero -- --nproc 2 --zero
resumed resume_zero_then_one --nproc 2 --zero --
resumed resume_nproc_then_zero --nproc 2 -- --nproc 2 --zero
# Loss scaling skips steps on all ranks together (its finite check spans the shards).
"$loom" "${adamw[@]}" --steps 6 --precision f16 --nproc 2 --run-dir "$dir/f16_nproc" > /dev/null
"$loom" "${adamw[@]}" --steps 6 --precision f16 --nproc 2 --zero --run-dir "$dir/f16_zero" > /dev/null
agree 6 "$dir/f16_nproc" "$dir/f16_zero"

# expect_error MESSAGE ARGS...: loom fails and says MESSAGE.
expect_error() {
  local want=$1
  shift
  if out=$("$loom" "$@" 2>&1); then echo "no error for: $*"; exit 1; fi
  if [[ $out != *"$want"* ]]; then echo "for: $*"; echo "want: $want"; echo "got: $out"; exit 1; fi
}
expect_error "--nproc must be at least 1" "${args[@]}" --nproc 0 --run-dir "$dir/bad"
expect_error "--batch-size 32 must be a multiple of --nproc 3" "${args[@]}" --nproc 3 --run-dir "$dir/bad"
echo "bad --nproc values rejected"
