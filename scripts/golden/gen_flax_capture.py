#!/usr/bin/env python3
"""Generates tests/golden/flax_capture.json: what Flax's apply(..., capture_intermediates=...)
returns for a small model, for tests/modules/capture_intermediates_test.cc.

Pinned versions (recorded in the JSON as well): flax 0.12.8, jax 0.10.2, jaxlib 0.10.2, numpy
2.4.6, on the XLA CPU backend. The params are stored with the case, so the test needs no
initializer parity.

Usage: python3 scripts/golden/gen_flax_capture.py   (writes tests/golden/flax_capture.json)
"""
import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PINNED = {"flax": "0.12.8", "jax": "0.10.2", "jaxlib": "0.10.2", "numpy": "2.4.6"}
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "flax_capture.json")


def arr(x):
  x = np.asarray(x)
  return {"shape": list(x.shape), "dtype": str(x.dtype),
          "data": [float(v) for v in x.astype(np.float64).ravel()]}


def flat(tree):
  """{"a/b/0": array}: tuples become their positions, as loom's trees hold sown values."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    out["/".join(keys)] = arr(leaf)
  return out


class TwiceMlp(nn.Module):
  """One Dense called twice (its outputs form a tuple of two), then another Dense."""

  @nn.compact
  def __call__(self, x):
    d = nn.Dense(4)
    h = nn.relu(d(x))
    h = d(h)
    return nn.Dense(2)(h)


class Block(nn.Module):
  @nn.compact
  def __call__(self, c, _):
    return nn.relu(nn.Dense(4)(c)), None


class ScanMlp(nn.Module):
  """Three steps of Block, params and intermediates stacked on axis 0."""

  @nn.compact
  def __call__(self, x):
    scan = nn.scan(Block, variable_axes={"params": 0, "intermediates": 0},
                   split_rngs={"params": True}, length=3)
    c, _ = scan()(x, None)
    return c


def main():
  versions = {"flax": flax.__version__, "jax": jax.__version__,
              "jaxlib": jax.lib.__version__, "numpy": np.__version__}
  if versions != PINNED:
    print(f"warning: versions {versions} differ from the pinned {PINNED}")
  x = (jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4) - 5.0) / 4.0
  model = TwiceMlp()
  variables = model.init(jax.random.key(0), x)
  cases = []
  filters = {
      "all": True,
      "last_dense": lambda mdl, method: isinstance(mdl, nn.Dense) and mdl.name == "Dense_1",
  }
  for name, capture in filters.items():
    y, state = model.apply(variables, x, capture_intermediates=capture)
    cases.append({"name": name, "x": arr(x), "y": arr(y),
                  "params": flat(variables["params"]),
                  "intermediates": {"intermediates/" + k: v
                                    for k, v in flat(state["intermediates"]).items()}})
  scan_model = ScanMlp()
  scan_vars = scan_model.init(jax.random.key(1), x)
  y, state = scan_model.apply(scan_vars, x, capture_intermediates=True)
  cases.append({"name": "scan", "x": arr(x), "y": arr(y), "params": flat(scan_vars["params"]),
                "intermediates": {"intermediates/" + k: v
                                  for k, v in flat(state["intermediates"]).items()}})
  with open(OUT, "w") as f:
    json.dump({"versions": versions, "cases": cases}, f, indent=1)
  print(f"wrote {OUT}")


if __name__ == "__main__":
  main()
