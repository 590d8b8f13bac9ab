#!/usr/bin/env python3
"""The open choices in loom_kernel_bench's output (a JSON line per row): each way loom runs a
kernel against the alternative the bench times beside it, as a ratio of times, so a GPU session
reads its decisions off one table (scripts/gpu_prebuilt.sh --profile-only prints it).

Usage: scripts/kernel_bench_choices.py kernel_bandwidth.jsonl
"""
import json
import re
import sys

# (loom's row, the alternative's row, what is chosen)
PAIRS = [
    (r'batch_norm_forward_pair_(.+)', r'batch_norm_forward_pair_alone_\1', 'L2 order (forward pair vs alone)'),
    (r'batch_norm_backward_pair_(?!alone|mask)(.+)', r'batch_norm_backward_pair_alone_\1', 'L2 order (backward pair vs alone)'),
    (r'batch_norm_backward_pair_mask_from_x_(.+)', r'batch_norm_backward_pair_\1', 'mask_from_x (vs reading the output)'),
    (r'layer_norm_forward_cached', r'layer_norm_forward_streaming', 'LayerNorm forward cached (vs streamed)'),
    (r'layer_norm_backward', r'layer_norm_backward_streaming', 'LayerNorm input gradient cached (vs streamed)'),
    (r'layer_norm_backward_into', r'layer_norm_backward_into_streaming', 'LayerNorm input gradient into, cached (vs streamed)'),
    (r'dense_weight_bias_grads_bgrada_(.+)', r'dense_weight_grad_then_column_sum_\1', 'BGRADA (vs product + column sum)'),
    (r'dense_gelu_keeping_input_epilogue', r'dense_bias_epilogue_then_gelu', 'GELU_AUX_BIAS (vs bias epilogue + GELU)'),
    (r'dense_input_grad_dgelu_epilogue', r'dense_input_grad_then_gelu_derivative', 'DGELU (vs product + derivative)'),
    (r'cross_entropy_forward_writing_gradient_blocks_(\d+)', r'cross_entropy_forward_then_backward', r'CE gradient in the forward, cap \1 (vs two passes)'),
]


def main(path):
    rows = {}
    for line in open(path):
        if line.startswith('{'):
            d = json.loads(line)
            if 'kernel' in d:
                rows[(d['kernel'], d.get('dtype'))] = d
    print("  choice: time of the way loom runs / the alternative (< 1: loom's way is faster)")
    for (name, dt), d in sorted(rows.items()):
        for pattern, alternative, what in PAIRS:
            m = re.fullmatch(pattern, name)
            other = rows.get((m.expand(alternative), dt)) if m else None
            if other and 'us' in d and 'us' in other:
                print(f"  {m.expand(what):55s} {dt:8s} {d['us']:9.1f} / {other['us']:9.1f} us"
                      f" = {d['us'] / other['us']:.3f}  [{name}]")
    for (name, dt), d in sorted(rows.items()):
        if d.get('available') is False:
            print(f"  {name} {dt}: cuBLASLt offers no algorithm (loom runs the separate ops)")


if __name__ == '__main__':
    main(sys.argv[1])
