#!/usr/bin/env python3
"""Generates tests/golden/conv.json: Flax nn.Conv / nn.ConvTranspose outputs (and a few jax.vjp
gradients) that loom::conv / loom::conv_transpose must reproduce.

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, flax 0.12.8,
numpy 2.4.6, XLA CPU backend. Everything runs in float64 (jax_enable_x64) so the goldens carry
no float32 rounding; loom compares in float64 tightly and in float32 at float32 precision.

The modules are Flax's own (use_bias=False, the kernel passed in as params), so the padding
modes are exactly Flax's: 'SAME' with the extra element high, 'CIRCULAR' / 'REFLECT' by jnp.pad
then VALID, 'CAUSAL' as a left pad, explicit pairs (negative ones crop) and ConvTranspose's
lax.conv_transpose padding rule.

Usage: python3 scripts/golden/gen_conv.py   (writes tests/golden/conv.json)
"""
import json
import os

import jax

jax.config.update("jax_enable_x64", True)

import flax  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "numpy": "2.4.6"}
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "conv.json")


def arr(x):
  x = np.asarray(x, dtype=np.float64)
  return {"shape": list(x.shape), "dtype": "float64", "data": [round(float(v), 17) for v in x.ravel()]}


def values(shape, seed):
  # few significant digits keep the JSON small; exact in float64
  return np.round(np.random.RandomState(seed).uniform(-1, 1, size=shape), 3)


def padding_json(p):
  return p if isinstance(p, str) else [list(pair) for pair in p]


def run(case, seed):
  op = case["op"]
  x = values(case["x"], seed)
  k = values(case["kernel"], seed + 1000)
  opts = case.get("options", {})
  ksize = tuple(case["kernel"][:-2])
  features = case["kernel"][-1] if not opts.get("transpose_kernel") else case["kernel"][-2]
  if op == "conv":
    mod = nn.Conv(features=features, kernel_size=ksize, use_bias=False,
                  strides=opts.get("strides", 1), padding=opts.get("padding", "SAME"),
                  input_dilation=opts.get("input_dilation", 1),
                  kernel_dilation=opts.get("kernel_dilation", 1),
                  feature_group_count=opts.get("feature_group_count", 1))
  else:
    mod = nn.ConvTranspose(features=features, kernel_size=ksize, use_bias=False,
                           strides=opts.get("strides"), padding=opts.get("padding", "SAME"),
                           kernel_dilation=opts.get("kernel_dilation"),
                           transpose_kernel=opts.get("transpose_kernel", False))
  f = lambda xx, kk: mod.apply({"params": {"kernel": kk}}, xx)
  y, vjp = jax.vjp(f, jnp.asarray(x), jnp.asarray(k))
  out = {"name": case["name"], "op": op,
         "options": {kk: (padding_json(v) if kk == "padding" else v) for kk, v in opts.items()},
         "x": arr(x), "kernel": arr(k), "y": arr(y)}
  if case.get("grads"):
    ct = values(y.shape, seed + 2000)
    dx, dk = vjp(jnp.asarray(ct))
    out.update({"cotangent": arr(ct), "dx": arr(dx), "dkernel": arr(dk)})
  return out


CASES = [
  # --- 1-D --------------------------------------------------------------------------------
  {"name": "1d_same", "op": "conv", "x": [2, 7, 3], "kernel": [3, 3, 4]},
  {"name": "1d_same_even_kernel_stride2", "op": "conv", "x": [2, 9, 2], "kernel": [4, 2, 3],
   "options": {"strides": [2]}, "grads": True},
  {"name": "1d_valid_stride2_dilation2", "op": "conv", "x": [1, 11, 2], "kernel": [3, 2, 2],
   "options": {"strides": [2], "padding": "VALID", "kernel_dilation": [2]}},
  {"name": "1d_causal_dilation2", "op": "conv", "x": [2, 6, 2], "kernel": [3, 2, 3],
   "options": {"padding": "CAUSAL", "kernel_dilation": [2]}, "grads": True},
  {"name": "1d_circular_even_kernel", "op": "conv", "x": [1, 5, 2], "kernel": [4, 2, 2],
   "options": {"padding": "CIRCULAR"}},
  {"name": "1d_reflect_dilation2", "op": "conv", "x": [1, 6, 1], "kernel": [3, 1, 2],
   "options": {"padding": "REFLECT", "kernel_dilation": [2]}},
  {"name": "1d_explicit_negative_input_dilation", "op": "conv", "x": [2, 5, 2], "kernel": [2, 2, 2],
   "options": {"padding": [[2, -1]], "input_dilation": [2]}, "grads": True},
  {"name": "1d_groups", "op": "conv", "x": [2, 6, 4], "kernel": [3, 2, 6],
   "options": {"feature_group_count": 2, "strides": [2]}},
  # --- 2-D --------------------------------------------------------------------------------
  {"name": "2d_same_stride_groups", "op": "conv", "x": [2, 7, 6, 4], "kernel": [3, 2, 2, 6],
   "options": {"strides": [2, 1], "feature_group_count": 2}, "grads": True},
  {"name": "2d_valid_kernel_dilation", "op": "conv", "x": [1, 7, 5, 3], "kernel": [2, 3, 3, 2],
   "options": {"padding": "VALID", "kernel_dilation": [2, 1]}},
  {"name": "2d_explicit_both_dilations", "op": "conv", "x": [2, 4, 5, 2], "kernel": [2, 3, 2, 3],
   "options": {"padding": [[1, 2], [0, 1]], "strides": [1, 2], "input_dilation": [2, 1],
               "kernel_dilation": [1, 2]}, "grads": True},
  {"name": "2d_circular_stride2", "op": "conv", "x": [1, 6, 5, 2], "kernel": [3, 3, 2, 2],
   "options": {"padding": "CIRCULAR", "strides": [2, 2]}, "grads": True},
  {"name": "2d_reflect_kernel_dilation", "op": "conv", "x": [1, 5, 6, 2], "kernel": [3, 2, 2, 3],
   "options": {"padding": "REFLECT", "kernel_dilation": [1, 2]}},
  {"name": "2d_depthwise_same", "op": "conv", "x": [1, 5, 5, 3], "kernel": [3, 3, 1, 6],
   "options": {"feature_group_count": 3}},
  {"name": "2d_same_stride_larger_than_kernel", "op": "conv", "x": [1, 8, 7, 2], "kernel": [2, 2, 2, 2],
   "options": {"strides": [3, 3]}},
  # --- 3-D --------------------------------------------------------------------------------
  {"name": "3d_same_stride", "op": "conv", "x": [1, 4, 3, 5, 2], "kernel": [2, 3, 2, 2, 3],
   "options": {"strides": [2, 1, 2]}},
  # --- transposed -------------------------------------------------------------------------
  {"name": "t2d_same_stride2", "op": "conv_transpose", "x": [2, 3, 4, 2], "kernel": [3, 3, 2, 3],
   "options": {"strides": [2, 2]}, "grads": True},
  {"name": "t1d_valid_stride2_dilation2", "op": "conv_transpose", "x": [1, 4, 2], "kernel": [3, 2, 2],
   "options": {"strides": [2], "padding": "VALID", "kernel_dilation": [2]}},
  {"name": "t2d_explicit", "op": "conv_transpose", "x": [1, 3, 3, 2], "kernel": [2, 3, 2, 2],
   "options": {"strides": [2, 3], "padding": [[1, 2], [0, 1]]}},
  {"name": "t2d_transpose_kernel", "op": "conv_transpose", "x": [1, 3, 4, 2], "kernel": [3, 2, 3, 2],
   "options": {"strides": [2, 2], "transpose_kernel": True}, "grads": True},
  {"name": "t1d_same_stride_larger_than_kernel", "op": "conv_transpose", "x": [2, 3, 1], "kernel": [2, 1, 2],
   "options": {"strides": [3]}},
]


def main():
  cases = [run(c, 10 * i + 1) for i, c in enumerate(CASES)]
  versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
              "numpy": np.__version__}
  if versions != PINNED:
    print(f"warning: running with {versions}, pinned {PINNED}")
  doc = {"generator": "scripts/golden/gen_conv.py", "versions": versions,
         "config": {"x64": True, "backend": "XLA CPU"}, "cases": cases}
  with open(OUT, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
  print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
  main()
