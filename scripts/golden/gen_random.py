#!/usr/bin/env python3
"""Generates tests/golden/random.json: JAX PRNG outputs that loom::random must reproduce.

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, numpy 2.4.6, run on the
XLA CPU backend of an x86-64 machine with FMA (AVX-512). Default JAX config: x32 mode and
jax_threefry_partitionable=True (the default since JAX 0.5); x64 mode is switched on only for the
float64 cases at the end, whose keys are passed as raw key data so seeds mean the same thing.

Why the machine matters: XLA CPU contracts `a*b + c` into FMA when the host has it, so the float
outputs (uniform with a range, normal, truncated_normal) depend on it; keys, bits, bernoulli
masks and permutations do not.

Usage: python3 scripts/golden/gen_random.py   (writes tests/golden/random.json)
"""
import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "numpy": "2.4.6"}

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "random.json")


def arr(x):
  x = np.asarray(x)
  dt = str(x.dtype)
  if x.dtype == np.bool_:
    data = [int(v) for v in x.ravel()]
  elif np.issubdtype(x.dtype, np.integer):
    data = [int(v) for v in x.ravel()]
  else:  # float32/bfloat16/float16/float64 values are exactly representable as Python floats
    data = [float(v) for v in x.astype(np.float64).ravel()]
  return {"shape": list(x.shape), "dtype": dt, "data": data}


def raw_key(seed):
  return [int(v) for v in np.asarray(jax.random.key_data(jax.random.PRNGKey(seed)))]


def wrap(key):
  return jax.random.wrap_key_data(np.asarray(key, dtype=np.uint32))


def main():
  cases = []
  seeds = [0, 1, 42, 2**31 - 1, -1, -7, 2**32 + 5]

  # --- keys, split, fold_in ---------------------------------------------------------------
  for s in seeds:
    cases.append({"op": "key", "seed": s, "expected": raw_key(s)})
  for s, n in [(0, 2), (42, 3), (-7, 5), (1, 1)]:
    k = raw_key(s)
    out = np.asarray(jax.random.key_data(jax.random.split(wrap(k), n)))
    cases.append({"op": "split", "key": k, "n": n, "expected": out.tolist()})
  # a chain: split key(0), then split the second child again, then fold in 7
  k0 = raw_key(0)
  a, b = jax.random.split(wrap(k0))
  c = jax.random.split(b, 4)[3]
  d = jax.random.fold_in(c, 7)
  cases.append({"op": "chain", "key": k0,
                "expected": [int(v) for v in np.asarray(jax.random.key_data(d))]})
  for s, data in [(0, 0), (0, 1), (42, 123456), (-1, 2**32 - 1), (2**31 - 1, 7)]:
    k = raw_key(s)
    out = np.asarray(jax.random.key_data(jax.random.fold_in(wrap(k), np.uint32(data))))
    cases.append({"op": "fold_in", "key": k, "data": data, "expected": [int(v) for v in out]})

  # --- bits ----------------------------------------------------------------------------------
  for s, shape in [(0, ()), (0, (1,)), (1, (7,)), (42, (8,)), (-1, (3, 4)), (2**31 - 1, (2, 3, 5)),
                   (-7, (1001,))]:
    k = raw_key(s)
    cases.append({"op": "bits", "key": k, "shape": list(shape),
                  "expected": arr(jax.random.bits(wrap(k), shape))})

  # --- uniform -------------------------------------------------------------------------------
  for s, shape, lo, hi, dt in [(0, (5,), 0.0, 1.0, "float32"), (1, (4, 4), 0.0, 1.0, "float32"),
                               (42, (3, 7), -3.3, 7.1, "float32"), (-1, (100,), 2.0, 2.5, "float32"),
                               (-7, (2, 2, 3), -1.0, 0.0, "float32"),
                               (2**31 - 1, (257,), -1e-3, 1e3, "float32"),
                               (0, (9,), 0.0, 1.0, "bfloat16"), (3, (64,), -3.3, 7.1, "bfloat16"),
                               (5, (33,), 0.1, 0.35, "bfloat16"), (7, (40,), 0.0, 1.0, "float16"),
                               (8, (40,), -2.0, 3.0, "float16")]:
    k = raw_key(s)
    out = jax.random.uniform(wrap(k), shape, jnp.dtype(dt), lo, hi)
    cases.append({"op": "uniform", "key": k, "shape": list(shape), "dtype": dt, "minval": lo,
                  "maxval": hi, "expected": arr(out)})

  # --- normal --------------------------------------------------------------------------------
  for s, shape, dt in [(0, (7,), "float32"), (1, (16,), "float32"), (42, (3, 5), "float32"),
                       (-1, (1001,), "float32"), (2**31 - 1, (2, 2, 2), "float32"),
                       (-7, (64,), "float32"), (0, (33,), "bfloat16"), (9, (50,), "bfloat16"),
                       (11, (30,), "float16")]:
    k = raw_key(s)
    out = jax.random.normal(wrap(k), shape, jnp.dtype(dt))
    cases.append({"op": "normal", "key": k, "shape": list(shape), "dtype": dt,
                  "expected": arr(out)})

  # --- truncated_normal ---------------------------------------------------------------------
  for s, shape, lo, hi, dt in [(0, (9,), -2.0, 2.0, "float32"), (1, (300,), -2.0, 2.0, "float32"),
                               (42, (4, 5), -1.0, 3.0, "float32"), (3, (50,), 0.5, 1.5, "float32"),
                               (-1, (50,), -3.0, -1.0, "float32"), (-7, (50,), -10.0, 10.0, "float32"),
                               (5, (64,), 1.5, 4.0, "float32"), (6, (40,), -2.0, 2.0, "bfloat16")]:
    k = raw_key(s)
    out = jax.random.truncated_normal(wrap(k), lo, hi, shape, jnp.dtype(dt))
    cases.append({"op": "truncated_normal", "key": k, "shape": list(shape), "dtype": dt,
                  "lower": lo, "upper": hi, "expected": arr(out)})

  # --- bernoulli -----------------------------------------------------------------------------
  for s, shape, p in [(0, (10,), 0.5), (1, (64,), 0.1), (42, (3, 11), 0.9), (-1, (20,), 0.0),
                      (-7, (20,), 1.0), (2**31 - 1, (101,), 0.3)]:
    k = raw_key(s)
    cases.append({"op": "bernoulli", "key": k, "shape": list(shape), "p": p,
                  "expected": arr(jax.random.bernoulli(wrap(k), p, shape))})

  # --- permutation (1 round of sorting up to n=1625, 2 rounds above) --------------------------
  for s, n in [(0, 0), (0, 1), (1, 2), (42, 10), (-1, 100), (-7, 1000), (2**31 - 1, 1700),
               (3, 5000)]:
    k = raw_key(s)
    cases.append({"op": "permutation", "key": k, "n": n,
                  "expected": arr(jax.random.permutation(wrap(k), n))})

  # --- float64 (x64 mode; keys passed as raw data) ----------------------------------------------
  jax.config.update("jax_enable_x64", True)
  for s, shape, lo, hi in [(0, (9,), 0.0, 1.0), (42, (20,), -3.3, 7.1)]:
    k = raw_key(s)
    out = jax.random.uniform(wrap(k), shape, jnp.float64, lo, hi)
    cases.append({"op": "uniform", "key": k, "shape": list(shape), "dtype": "float64",
                  "minval": lo, "maxval": hi, "expected": arr(out)})
  for s, shape in [(0, (17,)), (-1, (200,))]:
    k = raw_key(s)
    cases.append({"op": "normal", "key": k, "shape": list(shape), "dtype": "float64",
                  "expected": arr(jax.random.normal(wrap(k), shape, jnp.float64))})
  k = raw_key(2)
  cases.append({"op": "truncated_normal", "key": k, "shape": [40], "dtype": "float64",
                "lower": -2.0, "upper": 2.0,
                "expected": arr(jax.random.truncated_normal(wrap(k), -2.0, 2.0, (40,), jnp.float64))})
  jax.config.update("jax_enable_x64", False)

  versions = {"jax": jax.__version__, "jaxlib": jax.lib.__version__, "numpy": np.__version__}
  for name, want in PINNED.items():
    if versions[name] != want:
      print(f"warning: {name} {versions[name]} differs from the pinned {want}")
  doc = {
      "generator": "scripts/golden/gen_random.py",
      "versions": versions,
      "machine": f"{platform.machine()} XLA CPU backend (FMA contraction)",
      "config": {"jax_threefry_partitionable": True, "x64": "only for float64 cases"},
      "cases": cases,
  }
  with open(OUT, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
  print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
  main()
