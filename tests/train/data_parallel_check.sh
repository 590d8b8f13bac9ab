#!/usr/bin/env bash
# `loom launch -n 2 -- loom train` equals one process on the full batch: the training losses of
# both runs agree to 1e-5 (relative). Usage: data_parallel_check.sh PATH/TO/loom
set -euo pipefail
loom=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(train --dataset synthetic:8x8x1:4:256 --batch-size 32 --steps 6 --log-every 1
      --optimizer momentum --schedule constant --lr 0.05 --device cpu)
"$loom" "${args[@]}" --run-dir "$dir/one" > /dev/null
"$loom" launch -n 2 --master-port 0 -- "$loom" "${args[@]}" --run-dir "$dir/two" > /dev/null
losses() { grep '"split":"train"' "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\).*/\1/'; }
paste <(losses "$dir/one") <(losses "$dir/two") | awk '
  { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1)) { bad++; print "step " n ": " $1 " vs " $2 } }
  END { if (n != 6) { print "expected 6 losses, got " n; exit 1 } if (bad) exit 1; print n " losses agree" }'
