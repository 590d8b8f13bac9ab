#!/usr/bin/env bash
# Data-parallel `loom train` equals one process on the full batch: the training losses of
# `loom launch -n 2 -- loom train` and of `loom train --nproc 2` agree with one process's to 1e-5
# (relative), for the CNN and for a ResNet, whose BatchNorm is then synchronised across the ranks
# (global batch statistics). Bad --nproc values fail with a message naming the flag.
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
