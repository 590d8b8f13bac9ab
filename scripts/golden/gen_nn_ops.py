#!/usr/bin/env python3
"""Generates tests/golden/nn_ops.json: Flax/Optax/JAX outputs and input gradients (jax.vjp) of
the neural-network ops (softmax family, gelu, layer/RMS/group/batch norm, losses, attention,
dropout) that loom's core/ops/{softmax,norm,loss,attention,dropout} must reproduce.

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, flax 0.12.8,
optax 0.2.8, numpy 2.4.6, on the XLA CPU backend, default config (x32 mode, float32 math,
jax_threefry_partitionable=True). Inputs come from numpy's legacy RandomState with fixed seeds and
are stored in the JSON, so the C++ tests never regenerate them.

Each case has "inputs" (name -> array), "outputs" (name -> array) and, where differentiable,
"cotangent" and "grads" (name -> array): the vjp of the main output with that cotangent.

Usage: python3 scripts/golden/gen_nn_ops.py   (writes tests/golden/nn_ops.json)
"""
import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8", "numpy": "2.4.6"}

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "nn_ops.json")


def arr(x):
  x = np.asarray(x)
  if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
    data = [int(v) for v in x.ravel()]
  else:
    # float32 values are written with the shortest decimal that rounds back to the same float32
    data = []
    for v in x.astype(np.float32).ravel():
      data.append("nan" if np.isnan(v) else "inf" if v == np.inf else "-inf" if v == -np.inf
                  else float(np.format_float_positional(v, unique=True, trim="-")))
  return {"shape": list(x.shape), "dtype": str(x.dtype), "data": data}


def rand(seed, shape, lo=-2.0, hi=2.0):
  return np.random.RandomState(seed).uniform(lo, hi, size=shape).astype(np.float32)


def case(name, inputs, outputs, cotangent=None, grads=None, **attrs):
  c = {"name": name, "inputs": {k: arr(v) for k, v in inputs.items()},
       "outputs": {k: arr(v) for k, v in outputs.items()}}
  if cotangent is not None:
    c["cotangent"] = arr(cotangent)
    c["grads"] = {k: arr(v) for k, v in grads.items()}
  c.update(attrs)
  return c


def with_vjp(name, f, inputs, seed, **attrs):
  """Output of f(*inputs.values()) and the vjp of a random cotangent w.r.t. every input."""
  names = list(inputs)
  y, pullback = jax.vjp(f, *[jnp.asarray(inputs[k]) for k in names])
  ct = rand(seed, y.shape, -1.0, 1.0)
  gs = pullback(jnp.asarray(ct))
  return case(name, inputs, {"y": y}, ct, dict(zip(names, gs)), **attrs)


def softmax_cases():
  out = []
  x = rand(1, (3, 5))
  x[1, 2] = 40.0  # a large logit: the stable form matters
  out.append(with_vjp("softmax_last", lambda x: jax.nn.softmax(x, axis=-1), {"x": x}, 101, axis=-1))
  out.append(with_vjp("log_softmax_last", lambda x: jax.nn.log_softmax(x, axis=-1), {"x": x}, 102, axis=-1))
  x3 = rand(2, (2, 4, 3))
  out.append(with_vjp("softmax_axis1", lambda x: jax.nn.softmax(x, axis=1), {"x": x3}, 103, axis=1))
  out.append(with_vjp("log_softmax_axis0", lambda x: jax.nn.log_softmax(x, axis=0), {"x": x3}, 104, axis=0))
  g = np.linspace(-4, 4, 11).astype(np.float32)
  out.append(with_vjp("gelu_tanh", lambda x: nn.gelu(x), {"x": g}, 105))
  out.append(with_vjp("gelu_exact", lambda x: nn.gelu(x, approximate=False), {"x": g}, 106))
  return out


def apply_module(module, params, x, **kw):
  return module.apply({"params": params}, x, **kw)


def norm_cases():
  out = []
  # LayerNorm over the last axis, with scale and bias.
  x = rand(10, (4, 6)) + 3.0
  s, b = rand(11, (6,), 0.5, 1.5), rand(12, (6,), -0.5, 0.5)
  ln = nn.LayerNorm()
  out.append(with_vjp("layer_norm", lambda x, s, b: apply_module(ln, {"scale": s, "bias": b}, x),
                      {"x": x, "scale": s, "bias": b}, 110, epsilon=1e-6, axes=[-1]))
  # over two trailing axes (scale shaped like them), epsilon 1e-3
  x2 = rand(13, (2, 3, 4))
  s2, b2 = rand(14, (3, 4), 0.5, 1.5), rand(15, (3, 4), -0.5, 0.5)
  ln2 = nn.LayerNorm(epsilon=1e-3, reduction_axes=(1, 2), feature_axes=(1, 2))
  out.append(with_vjp("layer_norm_2axes", lambda x, s, b: apply_module(ln2, {"scale": s, "bias": b}, x),
                      {"x": x2, "scale": s2, "bias": b2}, 111, epsilon=1e-3, axes=[1, 2]))
  # over a middle axis (not fused in loom)
  x3 = rand(16, (3, 4, 2))
  s3, b3 = rand(17, (4,), 0.5, 1.5), rand(18, (4,), -0.5, 0.5)
  ln3 = nn.LayerNorm(reduction_axes=1, feature_axes=1)
  out.append(with_vjp("layer_norm_middle", lambda x, s, b: apply_module(ln3, {"scale": s, "bias": b}, x),
                      {"x": x3, "scale": s3, "bias": b3}, 112, epsilon=1e-6, axes=[1]))
  # RMSNorm
  rn = nn.RMSNorm()
  out.append(with_vjp("rms_norm", lambda x, s: apply_module(rn, {"scale": s}, x),
                      {"x": x, "scale": s}, 113, epsilon=1e-6, axes=[-1]))
  # GroupNorm, NHWC with 4 groups of 2 channels
  xg = rand(19, (2, 3, 3, 8))
  sg, bg = rand(20, (8,), 0.5, 1.5), rand(21, (8,), -0.5, 0.5)
  gn = nn.GroupNorm(num_groups=4)
  out.append(with_vjp("group_norm", lambda x, s, b: apply_module(gn, {"scale": s, "bias": b}, x),
                      {"x": xg, "scale": sg, "bias": bg}, 114, epsilon=1e-6, num_groups=4))
  # BatchNorm with batch statistics (momentum 0, so the updated running stats are the batch stats)
  xb = rand(22, (4, 3, 3, 5)) * 2.0 + 1.0
  sb, bb = rand(23, (5,), 0.5, 1.5), rand(24, (5,), -0.5, 0.5)
  bn = nn.BatchNorm(use_running_average=False, momentum=0.0)
  variables = {"params": {"scale": sb, "bias": bb},
               "batch_stats": {"mean": np.zeros(5, np.float32), "var": np.ones(5, np.float32)}}
  y, updated = bn.apply(variables, xb, mutable=["batch_stats"])
  c = with_vjp("batch_norm_train",
               lambda x, s, b: bn.apply({"params": {"scale": s, "bias": b},
                                         "batch_stats": variables["batch_stats"]}, x,
                                        mutable=["batch_stats"])[0],
               {"x": xb, "scale": sb, "bias": bb}, 115, epsilon=1e-5)
  c["outputs"]["mean"] = arr(updated["batch_stats"]["mean"])
  c["outputs"]["var"] = arr(updated["batch_stats"]["var"])
  out.append(c)
  # BatchNorm with running statistics
  rm, rv = rand(25, (5,), -0.5, 0.5), rand(26, (5,), 0.5, 2.0)
  bni = nn.BatchNorm(use_running_average=True)
  yi = bni.apply({"params": {"scale": sb, "bias": bb}, "batch_stats": {"mean": rm, "var": rv}}, xb)
  out.append(case("batch_norm_inference", {"x": xb, "mean": rm, "var": rv, "scale": sb, "bias": bb},
                  {"y": yi}, epsilon=1e-5))
  return out


def loss_cases():
  out = []
  logits = rand(30, (4, 5), -3, 3)
  p = np.random.RandomState(31).uniform(0, 1, size=(4, 5)).astype(np.float32)
  p /= p.sum(-1, keepdims=True)
  out.append(with_vjp("softmax_cross_entropy", optax.softmax_cross_entropy,
                      {"logits": logits, "labels": p}, 130))
  labels = np.array([0, 4, -1, 2], np.int32)
  y, pullback = jax.vjp(lambda l: optax.softmax_cross_entropy_with_integer_labels(l, labels), jnp.asarray(logits))
  ct = rand(132, y.shape, -1, 1)
  out.append(case("softmax_cross_entropy_with_integer_labels", {"logits": logits, "labels": labels},
                  {"y": y}, ct, {"logits": pullback(jnp.asarray(ct))[0]}))
  bad = np.array([1, 5, -6, 3], np.int32)  # 5 and -6 are out of range: NaN loss, no gradient
  y, pullback = jax.vjp(lambda l: optax.softmax_cross_entropy_with_integer_labels(l, bad), jnp.asarray(logits))
  ct = np.ones(y.shape, np.float32)
  out.append(case("integer_labels_out_of_range", {"logits": logits, "labels": bad}, {"y": y}, ct,
                  {"logits": pullback(jnp.asarray(ct))[0]}))
  z = rand(33, (3, 4), -4, 4)
  t = np.random.RandomState(34).uniform(0, 1, size=(3, 4)).astype(np.float32)
  out.append(with_vjp("sigmoid_binary_cross_entropy", optax.sigmoid_binary_cross_entropy,
                      {"logits": z, "labels": t}, 135))
  pr, tg = rand(36, (2, 5), -3, 3), rand(37, (2, 5), -3, 3)
  out.append(with_vjp("l2_loss", optax.l2_loss, {"predictions": pr, "targets": tg}, 136))
  out.append(with_vjp("squared_error", optax.squared_error, {"predictions": pr, "targets": tg}, 137))
  out.append(with_vjp("huber_loss", lambda p, t: optax.huber_loss(p, t, delta=1.0),
                      {"predictions": pr, "targets": tg}, 138, delta=1.0))
  out.append(with_vjp("huber_loss_delta", lambda p, t: optax.huber_loss(p, t, delta=0.5),
                      {"predictions": pr, "targets": tg}, 139, delta=0.5))
  return out


def attention_cases():
  out = []
  q, k, v = rand(40, (2, 5, 3, 4)), rand(41, (2, 5, 3, 4)), rand(42, (2, 5, 3, 4))
  causal = nn.make_causal_mask(jnp.ones((2, 5)))  # [2, 1, 5, 5]
  out.append(with_vjp("attention_causal",
                      lambda q, k, v: nn.dot_product_attention(q, k, v, mask=causal),
                      {"q": q, "k": k, "v": v}, 140))
  # cross attention (q_len 3, kv_len 5, v depth 2) with a padding mask and a bias
  q2, k2, v2 = rand(43, (2, 3, 2, 4)), rand(44, (2, 5, 2, 4)), rand(45, (2, 5, 2, 2))
  pad = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[:, None, None, :]  # [2, 1, 1, 5]
  bias = rand(46, (2, 3, 5), -1, 1)  # broadcasts to [2, heads, 3, 5]
  c = with_vjp("attention_mask_bias",
               lambda q, k, v: nn.dot_product_attention(q, k, v, bias=bias, mask=pad),
               {"q": q2, "k": k2, "v": v2}, 141)
  c["inputs"]["mask"] = arr(pad)
  c["inputs"]["bias"] = arr(bias)
  out.append(c)
  # dropout on the weights (broadcast over batch and heads, as Flax's default)
  key = jax.random.PRNGKey(7)
  for bcast in (True, False):
    c = with_vjp("attention_dropout" + ("" if bcast else "_full"),
                 lambda q, k, v: nn.dot_product_attention(q, k, v, mask=causal, dropout_rng=key,
                                                          dropout_rate=0.4, deterministic=False,
                                                          broadcast_dropout=bcast),
                 {"q": q, "k": k, "v": v}, 142, dropout_rate=0.4,
                 key=[int(a) for a in np.asarray(jax.random.key_data(key))], broadcast_dropout=bcast)
    out.append(c)
  return out


def dropout_cases():
  """loom's dropout(x, rate, key) takes the key as Flax's Dropout takes rng=key. Through
  rngs={'dropout': key} Flax first derives make_rng('dropout') = fold_in(key, hash): that case
  records the derived key ("module_key") so the test can show the two agree."""
  out = []
  for seed, rate, shape, bdims in [(0, 0.5, (3, 7), ()), (1, 0.1, (4, 5), ()), (42, 0.3, (2, 3, 4), (0,)),
                                   (123, 0.75, (2, 3, 4), (1, 2))]:
    key = jax.random.PRNGKey(seed)
    x = rand(50 + seed, shape)
    layer = nn.Dropout(rate=rate, broadcast_dims=bdims)
    c = with_vjp("dropout", lambda x: layer.apply({}, x, deterministic=False, rng=key),
                 {"x": x}, 150 + seed, rate=rate, broadcast_dims=list(bdims),
                 key=[int(a) for a in np.asarray(jax.random.key_data(key))])
    out.append(c)
  # the module path: a root-level Dropout's first make_rng('dropout') folds in
  # sha1(b"\x01")[:4] (flax/core/scope.py _fold_in_static, no separator bytes)
  import hashlib
  key = jax.random.PRNGKey(1)
  x = rand(60, (2, 8))
  h = int.from_bytes(hashlib.sha1(b"\x01").digest()[:4], "big")
  derived = jax.random.fold_in(key, np.uint32(h))
  y = nn.Dropout(rate=0.5).apply({}, x, deterministic=False, rngs={"dropout": key})
  assert np.array_equal(np.asarray(y), np.asarray(nn.Dropout(rate=0.5).apply({}, x, deterministic=False, rng=derived)))
  out.append(case("dropout_module_rngs", {"x": x}, {"y": y}, rate=0.5,
                  key=[int(a) for a in np.asarray(jax.random.key_data(key))],
                  module_key=[int(a) for a in np.asarray(jax.random.key_data(derived))], fold_in=h))
  return out


def main():
  versions = {"jax": jax.__version__, "jaxlib": jax.lib.__version__, "flax": flax.__version__,
              "optax": optax.__version__, "numpy": np.__version__}
  for k, v in PINNED.items():
    if versions[k] != v:
      print(f"warning: {k} {versions[k]} differs from the pinned {v}")
  cases = softmax_cases() + norm_cases() + loss_cases() + attention_cases() + dropout_cases()
  doc = {"generator": "scripts/golden/gen_nn_ops.py", "versions": versions, "backend": jax.default_backend(),
         "cases": cases}
  with open(OUT, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
    f.write("\n")
  print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
  main()
