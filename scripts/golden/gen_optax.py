#!/usr/bin/env python3
"""Generates tests/golden/optax.json and tests/golden/optax_schedules.json: real Optax runs that
loom::optim must reproduce (tests/optim/*_test.cc).

optax.json: a small tree of mixed shapes {"w": [3, 4], "b": [4], "s": []} is updated for 100 steps
(each case records its "steps") with a fixed sequence of float32 gradients by every optimizer alias, the main wrappers
(clip_by_global_norm, masked, multi_transform, MultiSteps, apply_if_finite with injected inf/NaN
gradients, inject_hyperparams) and single transforms. For each case it stores the params after the
steps in `selected_steps`, the optimizer state after the last step as Flax's state dict
(flax.serialization.to_state_dict: leaf path -> array, plus the paths of empty dicts such as
EmptyState / MaskedNode) and, for inject_hyperparams, the learning rate logged after every step.

optax_schedules.json: every schedule evaluated at steps 0..N.

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, optax 0.2.8,
flax 0.12.8, numpy 2.4.6, XLA CPU backend, default x32 mode, float32 throughout.
NaN / inf are written as the strings "nan", "inf", "-inf".

Usage: python3 scripts/golden/gen_optax.py   (writes both files)
"""
import json
import os

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8", "flax": "0.12.8",
          "numpy": "2.4.6"}
HERE = os.path.dirname(__file__)
OUT = os.path.join(HERE, "..", "..", "tests", "golden", "optax.json")
OUT_SCHEDULES = os.path.join(HERE, "..", "..", "tests", "golden", "optax_schedules.json")

STEPS = 100
SELECTED = [1, 2, 3, 5, 10, 21, 22, 50, 100]
KEYS = ["w", "b", "s"]
SHAPES = {"w": (3, 4), "b": (4,), "s": ()}


def num(v, integer):
  if integer:
    return int(v)
  if np.isnan(v):
    return "nan"
  if np.isinf(v):
    return "inf" if v > 0 else "-inf"
  return float(str(np.float32(v)))  # shortest text that reads back as the same float32


def arr(x):
  x = np.asarray(x)
  if x.dtype == np.bool_:
    return {"shape": list(x.shape), "dtype": "bool", "data": [int(v) for v in x.ravel()]}
  integer = np.issubdtype(x.dtype, np.integer)
  dtype = "int32" if integer else "float32"
  x = x.astype(np.int32 if integer else np.float32)
  return {"shape": list(x.shape), "dtype": dtype, "data": [num(v, integer) for v in x.ravel()]}


def tree_json(t):
  return {k: arr(t[k]) for k in KEYS}


def flatten_state(sd, prefix=""):
  """(leaf path -> array, paths of empty dicts) of a Flax state dict."""
  leaves, empty = {}, []
  if isinstance(sd, dict):
    if not sd:
      empty.append(prefix)
    for k, v in sd.items():
      l, e = flatten_state(v, f"{prefix}/{k}" if prefix else str(k))
      leaves.update(l)
      empty.extend(e)
  else:
    leaves[prefix] = sd
  return leaves, empty


def make_data():
  rng = np.random.default_rng(20250105)
  params = {k: rng.normal(size=SHAPES[k]).astype(np.float32) for k in KEYS}
  grads = []
  for t in range(STEPS):
    scale = np.float32(0.5 + 0.3 * (t % 7))  # varying norms, so clipping sometimes triggers
    grads.append({k: (rng.normal(size=SHAPES[k]) * scale).astype(np.float32) for k in KEYS})
  return params, grads


def bad_grads(grads):
  """Gradients with an inf at step 10 and NaNs at steps 21 and 22 (1-based)."""
  out = [{k: v.copy() for k, v in g.items()} for g in grads]
  out[9]["w"][1, 2] = np.inf
  out[20]["b"][3] = np.nan
  out[21]["s"] = np.float32(np.nan)
  return out


def run(tx, params, grads, log_lr=False):
  """Runs len(grads) steps (stored as the case's "steps")."""
  params = {k: jnp.asarray(v) for k, v in params.items()}
  state = tx.init(params)
  update = tx.update  # eager: one XLA op at a time, no fusion (no FMA contraction)
  saved, lrs = {}, []
  for t, g in enumerate(grads, start=1):
    g = {k: jnp.asarray(v) for k, v in g.items()}
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    if t in SELECTED:
      saved[str(t)] = tree_json(params)
    if log_lr:
      lrs.append(np.asarray(state.hyperparams["learning_rate"]))
  leaves, empty = flatten_state(flax.serialization.to_state_dict(state))
  case = {"steps": len(grads), "params": saved, "state": {p: arr(v) for p, v in leaves.items()},
          "empty_state_paths": sorted(empty)}
  if log_lr:
    case["learning_rate"] = arr(np.stack(lrs))
  return case


def optimizer_cases():
  wsched = optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 100, end_value=0.001)
  mask = {"w": True, "b": False, "s": True}
  labels = {"w": "adam", "b": "sgd", "s": "frozen"}
  cases = {
      "sgd": optax.sgd(0.1),
      "sgd_momentum": optax.sgd(0.05, momentum=0.9),
      "sgd_nesterov": optax.sgd(0.05, momentum=0.9, nesterov=True),
      "sgd_schedule": optax.sgd(optax.exponential_decay(0.1, 10, 0.5), momentum=0.5),
      "adam": optax.adam(1e-2),
      "adam_schedule": optax.adam(wsched),
      "adam_eps_root": optax.adam(1e-2, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
      "nadam": optax.nadam(1e-2),
      "adamw": optax.adamw(1e-2),
      "adamw_mask": optax.adamw(1e-2, weight_decay=0.1, mask=mask),
      "adamw_schedule": optax.adamw(wsched, weight_decay=0.05),
      "nadamw": optax.nadamw(1e-2, weight_decay=0.01),
      "lamb": optax.lamb(1e-2),
      "lamb_wd": optax.lamb(1e-2, weight_decay=0.01),
      "lars": optax.lars(0.5),
      "lars_wd_nesterov": optax.lars(0.5, weight_decay=1e-2, nesterov=True),
      "rmsprop": optax.rmsprop(1e-2),
      "rmsprop_centered_momentum": optax.rmsprop(1e-2, centered=True, momentum=0.9),
      "rmsprop_eps_outside_bias": optax.rmsprop(1e-2, eps_in_sqrt=False, bias_correction=True,
                                                initial_scale=0.1),
      "adagrad": optax.adagrad(0.1),
      "lion": optax.lion(1e-3),
      "lion_mask": optax.lion(1e-3, b1=0.95, weight_decay=0.1, mask=mask),
      "adafactor": optax.adafactor(1e-2),
      "adafactor_factored": optax.adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9,
                                            weight_decay_rate=1e-3),
      # wrappers and single transforms
      "clip_global_norm_adam": optax.chain(optax.clip_by_global_norm(1.5), optax.adam(1e-2)),
      "clip_sgd": optax.chain(optax.clip(0.3), optax.sgd(0.1)),
      "clip_block_rms_sgd": optax.chain(optax.clip_by_block_rms(0.5), optax.sgd(0.1)),
      "masked_momentum": optax.masked(optax.sgd(0.1, momentum=0.9), mask),
      "multi_transform": optax.multi_transform(
          {"adam": optax.adam(1e-2), "sgd": optax.sgd(0.1, momentum=0.9),
           "frozen": optax.set_to_zero()}, labels),
      "multi_steps": optax.MultiSteps(optax.adam(1e-2), every_k_schedule=3).gradient_transformation(),
      "multi_steps_sum": optax.MultiSteps(optax.sgd(0.05, momentum=0.9), every_k_schedule=4,
                                          use_grad_mean=False).gradient_transformation(),
      "ema_trace": optax.chain(optax.ema(0.9), optax.trace(0.5, nesterov=True), optax.scale(-0.1)),
      "ema_no_debias": optax.chain(optax.ema(0.8, debias=False), optax.scale(-0.1)),
      "decay_schedule_trust": optax.chain(
          optax.add_decayed_weights(optax.linear_schedule(0.1, 0.0, 50)),
          optax.scale_by_trust_ratio(), optax.scale_by_learning_rate(0.02)),
  }
  return cases


def schedule_cases():
  return {
      "constant": optax.constant_schedule(0.3),
      "linear": optax.linear_schedule(1.0, 0.1, 50, transition_begin=10),
      "polynomial": optax.polynomial_schedule(0.5, 0.01, 2, 80, transition_begin=5),
      "polynomial_frac_power": optax.polynomial_schedule(0.5, 0.01, 1.5, 80),
      "cosine_decay": optax.cosine_decay_schedule(0.1, 60),
      "cosine_decay_alpha_exponent": optax.cosine_decay_schedule(0.1, 60, alpha=0.1, exponent=2.0),
      "warmup_cosine_decay": optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 100,
                                                                end_value=0.001),
      "exponential_decay": optax.exponential_decay(0.1, 10, 0.5),
      "exponential_decay_staircase_end": optax.exponential_decay(0.1, 7, 0.5, transition_begin=5,
                                                                 staircase=True, end_value=0.01),
      "exponential_growth_end": optax.exponential_decay(0.01, 10, 2.0, end_value=0.5),
      "piecewise_constant": optax.piecewise_constant_schedule(0.1, {30: 0.5, 60: 0.1, 90: 2.0}),
      "join_schedules": optax.join_schedules(
          [optax.constant_schedule(0.1), optax.linear_schedule(0.1, 0.0, 40),
           optax.constant_schedule(0.02)], [20, 70]),
      "cosine_onecycle": optax.cosine_onecycle_schedule(100, 0.2),
      "cosine_onecycle_custom": optax.cosine_onecycle_schedule(80, 1.0, pct_start=0.25,
                                                               div_factor=10.0,
                                                               final_div_factor=100.0),
      "warmup_exponential_decay": optax.warmup_exponential_decay_schedule(
          0.0, 0.1, 10, 20, 0.5, transition_begin=5, staircase=True, end_value=0.005),
  }


def main():
  assert jax.__version__ == PINNED["jax"] and optax.__version__ == PINNED["optax"], (
      jax.__version__, optax.__version__)
  versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__,
              "flax": flax.__version__, "numpy": np.__version__,
              "backend": jax.default_backend()}
  params, grads = make_data()
  data = {
      "versions": versions, "steps": STEPS, "selected_steps": SELECTED,
      "init_params": tree_json(params),
      "grads": {k: arr(np.stack([g[k] for g in grads])) for k in KEYS},
      "bad_grads": {
          "note": "grads with w[1,2]=inf at step 10, b[3]=nan at step 21, s=nan at step 22",
          "steps": [10, 21, 22]},
  }
  cases = {name: run(tx, params, grads) for name, tx in optimizer_cases().items()}
  cases["apply_if_finite"] = run(optax.apply_if_finite(optax.adam(1e-2), 2), params,
                                 bad_grads(grads))
  # Without a learning rate Adafactor's steps are as large as the params, which grow
  # exponentially: after 5 steps Optax itself differs by > 1e-6 between jit and eager, so only 5.
  cases["adafactor_no_lr"] = run(optax.adafactor(), params, grads[:5])
  # A mild momentum: Optax runs the inner update inside lax.cond, i.e. compiled by XLA (which may
  # fuse multiply-adds), and a strong momentum would amplify those last-bit differences.
  cases["apply_if_finite_zero_tolerance"] = run(
      optax.apply_if_finite(optax.sgd(0.05, momentum=0.5), 0), params,
      [bad_grads(grads)[i] if i < 15 else grads[i] for i in range(STEPS)])
  # The learning rate (a schedule) and the weight decay are injected; b1, b2, eps and eps_root
  # are static, so they stay Python floats as in a plain optax.adamw (injected, they would become
  # float32 arrays and `1 - b1` would round differently). loom injects the same two.
  inject = optax.inject_hyperparams(optax.adamw, static_args=("b1", "b2", "eps", "eps_root"))
  cases["inject_hyperparams"] = run(
      inject(learning_rate=optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 100),
             weight_decay=0.01),
      params, grads, log_lr=True)
  data["cases"] = cases
  with open(OUT, "w") as f:
    json.dump(data, f, separators=(",", ":"))

  n = 121
  sched = {"versions": versions, "steps": n,
           "values": {name: arr(np.stack([np.asarray(s(jnp.asarray(i, jnp.int32)))
                                          for i in range(n)]))
                      for name, s in schedule_cases().items()}}
  with open(OUT_SCHEDULES, "w") as f:
    json.dump(sched, f, separators=(",", ":"))
  print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes) and {OUT_SCHEDULES} "
        f"({os.path.getsize(OUT_SCHEDULES)} bytes)")


if __name__ == "__main__":
  main()
