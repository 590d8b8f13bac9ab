#!/usr/bin/env python3
"""Golden files for loom's Flax msgpack reader/writer (train/io/flax_msgpack.h).

Writes, from real Flax:
  tests/golden/flax_params.msgpack   flax.serialization.to_bytes of a small nested variables dict:
                                     a real nn.Module's params and batch_stats (f32), plus bf16,
                                     int32, f16, f64, int64, uint8, uint32 and bool arrays, a 0-d
                                     array, a NumPy scalar (ExtType 3), special floats and an
                                     empty dict.
  tests/golden/flax_chunked.msgpack  to_bytes of a tree with MAX_CHUNK_SIZE lowered to 64 bytes,
                                     so its larger leaves use Flax's chunked-array form.
  tests/golden/flax_params.json      the same values, leaf by leaf in to_bytes order, as
                                     {"path", "shape", "dtype", "data"} (empty dicts as
                                     {"path", "empty_dict": true}); the hex of to_bytes of the
                                     same tree with the NumPy scalar replaced by a 0-d array (what
                                     loom, which has no scalar type, writes); the versions used.

Run from the repository root:  python3 scripts/golden/gen_flax_msgpack.py
Pinned versions (the run that produced the committed files):
  python 3.11.7, flax 0.12.8, jax 0.10.2, msgpack 1.2.4, numpy 2.4.6, ml_dtypes 0.6.0
"""
import json
import math
import os
import sys

import flax
import flax.linen as nn
import flax.serialization as serialization
import jax
import jax.numpy as jnp
import ml_dtypes
import msgpack
import numpy as np

PINNED = {"flax": "0.12.8", "jax": "0.10.2", "msgpack": "1.2.4", "numpy": "2.4.6",
          "ml_dtypes": "0.6.0"}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(4)(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    return nn.Dense(2)(nn.relu(x))


def map_in_order(f, tree):
  """tree_map that keeps dict insertion order (jax.tree_util sorts keys; to_bytes does not)."""
  if isinstance(tree, dict) or hasattr(tree, "items"):
    return {k: map_in_order(f, v) for k, v in tree.items()}
  return f(tree)


def build_tree():
  variables = Tiny().init(jax.random.key(0), jnp.ones((2, 3), jnp.float32))
  variables = map_in_order(lambda x: x, variables)  # plain dicts, Flax's order
  variables["extras"] = {
      "embedding_bf16": jnp.array([[1.5, -0.0078125, 3.0], [65280.0, -2.0, 0.333984375]],
                                  jnp.bfloat16),
      "ids_int32": jnp.array([[0, -1, 7], [2147483647, -2147483648, 42]], jnp.int32),
      "step": jnp.array(7, jnp.int32),  # a 0-d array
      "scale": np.float32(0.25),  # a NumPy scalar: ExtType 3
      "special_f32": np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40, 3.4028235e38], np.float32),
      "half": np.array([0.5, -65504.0, 6.1035156e-05], np.float16),
      "double": np.array([[1.0 / 3.0], [-1e300]], np.float64),
      "count_i64": np.array([9007199254740993, -5], np.int64),
      "bytes_u8": np.array([0, 127, 255], np.uint8),
      "words_u32": np.array([4294967295, 1], np.uint32),
      "mask": np.array([True, False, True]),
      "empty": {},
      "zero_size": np.zeros((0, 3), np.float32),
  }
  return variables


def json_value(x, dtype):
  if dtype in ("float32", "float64", "float16", "bfloat16"):
    x = float(x)
    if math.isnan(x):
      return "nan"
    if math.isinf(x):
      return "inf" if x > 0 else "-inf"
    return x
  if dtype == "bool":
    return int(bool(x))
  return int(x)


def leaves(tree, prefix=""):
  out = []
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      if not v:
        out.append({"path": path, "empty_dict": True})
      out.extend(leaves(v, path))
    else:
      a = np.asarray(v)
      out.append({"path": path, "shape": list(a.shape), "dtype": a.dtype.name,
                  "data": [json_value(x, a.dtype.name) for x in a.reshape(-1)]})
  return out


def main():
  actual = {"python": sys.version.split()[0], "flax": flax.__version__, "jax": jax.__version__,
            "msgpack": ".".join(map(str, msgpack.version)), "numpy": np.__version__,
            "ml_dtypes": ml_dtypes.__version__}
  for k, v in PINNED.items():
    if actual[k] != v:
      print(f"warning: {k} {actual[k]} differs from the pinned {v}", file=sys.stderr)

  tree = build_tree()
  data = serialization.to_bytes(tree)
  # What loom writes for the same tree: it has no NumPy scalar type, so the scalar is a 0-d array.
  as_arrays = map_in_order(np.asarray, tree)
  loom_bytes = serialization.to_bytes(as_arrays)
  assert serialization.msgpack_restore(data)["extras"]["scale"] == np.float32(0.25)

  chunk_tree = {
      "big": np.arange(40, dtype=np.float32).reshape(5, 8) * 0.5,  # 160 bytes: chunks 16+16+8
      "small": np.array([1.0, 2.0, 3.0], np.float32),  # 12 bytes: not chunked
      "nested": {"bf": (np.arange(70, dtype=np.float32) - 35).astype(ml_dtypes.bfloat16),
                 "ids": np.arange(17, dtype=np.int32).reshape(1, 17)},  # 68 bytes: 16+1
  }
  saved = serialization.MAX_CHUNK_SIZE
  serialization.MAX_CHUNK_SIZE = 64
  try:
    chunked = serialization.to_bytes(chunk_tree)
  finally:
    serialization.MAX_CHUNK_SIZE = saved
  restored = serialization.msgpack_restore(chunked)
  assert np.array_equal(restored["big"], chunk_tree["big"])

  os.makedirs(OUT, exist_ok=True)
  with open(os.path.join(OUT, "flax_params.msgpack"), "wb") as f:
    f.write(data)
  with open(os.path.join(OUT, "flax_chunked.msgpack"), "wb") as f:
    f.write(chunked)
  golden = {
      "generator": "scripts/golden/gen_flax_msgpack.py",
      "versions": actual,
      "scalar_paths": ["extras/scale"],
      "leaves": leaves(tree),
      "loom_bytes_hex": loom_bytes.hex(),
      "chunked": {"max_chunk_bytes": 64, "leaves": leaves(chunk_tree)},
  }
  with open(os.path.join(OUT, "flax_params.json"), "w") as f:
    json.dump(golden, f, indent=1)
    f.write("\n")
  print(f"wrote flax_params.msgpack ({len(data)} bytes), flax_chunked.msgpack ({len(chunked)} "
        f"bytes), flax_params.json")


if __name__ == "__main__":
  main()
