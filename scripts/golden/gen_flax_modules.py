#!/usr/bin/env python3
"""Generates tests/golden/flax_modules.json: Flax Linen params, names and outputs that loom::nn
must reproduce (tests/modules/flax_parity_test.cc and tests/seed/).

Pinned versions (recorded in the JSON as well): flax 0.12.8, jax 0.10.2, jaxlib 0.10.2, numpy
2.4.6, run on the XLA CPU backend of an x86-64 host with FMA (normal-family initializers are
bit-exact on such a host, within an ulp or two elsewhere; see core/random.h). Default JAX config
(x32, jax_threefry_partitionable=True).

Large leaves (over 256 elements) other than inputs are stored as summaries: the first 16 values, every k-th value
(64 of them) and the float64 sum and sum of squares; everything else is stored in full.

Usage: python3 scripts/golden/gen_flax_modules.py   (writes tests/golden/flax_modules.json)
"""
import functools
import json
import os
import platform
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PINNED = {"flax": "0.12.8", "jax": "0.10.2", "jaxlib": "0.10.2", "numpy": "2.4.6"}
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "flax_modules.json")
BIG = 256


def arr(x, full=False):
  x = np.asarray(x)
  dt = str(x.dtype)
  if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
    data = [int(v) for v in x.ravel()]
  else:
    data = []
    for v in x.astype(np.float64).ravel():
      if np.isnan(v):
        data.append("nan")
      elif np.isinf(v):
        data.append("inf" if v > 0 else "-inf")
      else:
        data.append(float(v))
  out = {"shape": list(x.shape), "dtype": dt}
  if x.size > BIG and not full:
    flat = x.astype(np.float64).ravel()
    stride = max(1, x.size // 64)
    out["summary"] = {"head": [float(v) for v in flat[:16]], "stride": stride,
                      "sample": [float(v) for v in flat[::stride][:64]],
                      "sum": float(flat.sum()), "sum_sq": float((flat * flat).sum())}
  else:
    out["data"] = data
  return out


def inp(x):
  """Inputs are always stored in full."""
  return arr(x, full=True)


def flat_tree(tree, prefix=""):
  """Leaves with '/'-joined paths, in insertion order (Flax returns plain dicts)."""
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      out.update(flat_tree(v, path))
    elif isinstance(v, tuple):
      for i, e in enumerate(v):
        out[f"{path}/{i}"] = arr(e)
    else:
      out[path] = arr(v)
  return out


def pattern(shape, offset=0, scale=1.0):
  """Deterministic test input: ((i + offset) * 7919 % 1000) / 500 - 1, times scale, float32."""
  n = int(np.prod(shape)) if shape else 1
  i = np.arange(n, dtype=np.int64) + offset
  v = ((i * 7919) % 1000).astype(np.float64) / 500.0 - 1.0
  return (v * scale).astype(np.float32).reshape(shape)


def key(seed):
  return jax.random.key(seed)


cases = []


def add(name, **fields):
  # json objects lose their order in C++ (nlohmann::json sorts keys): keep Flax's order of the
  # variables (creation order, the order of the checkpoint) as a list.
  if "variables" in fields:
    fields["variable_paths"] = list(fields["variables"].keys())
  cases.append({"name": name, **fields})


def layer_case(name, module, x, seed=0, mutable=None, rngs=None, apply_kwargs=None, **extra):
  variables = module.init(key(seed), x)
  if mutable:
    y, updates = module.apply(variables, x, mutable=mutable, rngs=rngs, **(apply_kwargs or {}))
    add(name, seed=seed, input=inp(x), variables=flat_tree(variables), output=arr(y),
        updates=flat_tree(updates), **extra)
  else:
    y = module.apply(variables, x, rngs=rngs, **(apply_kwargs or {}))
    add(name, seed=seed, input=inp(x), variables=flat_tree(variables), output=arr(y), **extra)


# --- initializers ---------------------------------------------------------------------------
init_cases = []
I = jax.nn.initializers
for iname, init in [
    ("zeros", I.zeros), ("ones", I.ones), ("constant_m7", I.constant(-7.0)),
    ("normal", I.normal()), ("normal_2", I.normal(2.0)), ("uniform", I.uniform()),
    ("uniform_3", I.uniform(3.0)), ("truncated_normal", I.truncated_normal()),
    ("truncated_normal_1_m1_3", I.truncated_normal(1.0, lower=-1.0, upper=3.0)),
    ("lecun_normal", I.lecun_normal()), ("lecun_uniform", I.lecun_uniform()),
    ("glorot_normal", I.glorot_normal()), ("glorot_uniform", I.glorot_uniform()),
    ("he_normal", I.he_normal()), ("he_uniform", I.he_uniform()),
    ("vs_fan_out_normal", I.variance_scaling(0.5, "fan_out", "normal")),
    ("vs_fan_avg_uniform", I.variance_scaling(3.0, "fan_avg", "uniform")),
    ("vs_fan_geo_avg_tn", I.variance_scaling(1.0, "fan_geo_avg", "truncated_normal")),
    ("vs_embed", I.variance_scaling(1.0, "fan_in", "normal", out_axis=0)),
    ("orthogonal", I.orthogonal()), ("orthogonal_2_axis0", I.orthogonal(2.0, column_axis=0)),
]:
  for shape in [(4, 5), (3, 3, 2, 4), (6, 3)]:
    init_cases.append({"init": iname, "seed": 3, "shape": list(shape),
                       "expected": arr(init(key(3), shape, jnp.float32))})

# --- layers ---------------------------------------------------------------------------------
layer_case("dense", nn.Dense(4), pattern((2, 3)))
layer_case("dense_no_bias_3d", nn.Dense(5, use_bias=False), pattern((2, 2, 3), 5), seed=7)
layer_case("dense_general_axes", nn.DenseGeneral(features=(2, 3), axis=(-2, -1)),
           pattern((2, 4, 5)), seed=1)
layer_case("dense_general_heads", nn.DenseGeneral(features=(2, 4)), pattern((2, 3, 6)), seed=2)
layer_case("dense_general_batch", nn.DenseGeneral(features=3, axis=-1, batch_dims=(0,)),
           pattern((2, 4, 5)), seed=4)
layer_case("conv_same", nn.Conv(4, (3, 3)), pattern((2, 5, 5, 3)))
layer_case("conv_valid_strided", nn.Conv(3, (3, 2), strides=(2, 1), padding="VALID"),
           pattern((1, 7, 6, 2), 3), seed=5)
layer_case("conv_dilated_groups", nn.Conv(4, (3, 3), kernel_dilation=2, feature_group_count=2),
           pattern((1, 6, 6, 4), 11), seed=6)
layer_case("conv_circular", nn.Conv(2, (3,), padding="CIRCULAR"), pattern((2, 5, 3), 1), seed=8)
layer_case("conv_explicit_no_batch", nn.Conv(2, (2, 2), padding=[(1, 0), (0, 1)], use_bias=False),
           pattern((4, 4, 1), 2), seed=9)
layer_case("conv_transpose_same", nn.ConvTranspose(3, (3, 3), strides=(2, 2)),
           pattern((1, 3, 3, 2), 4), seed=10)
layer_case("conv_transpose_valid", nn.ConvTranspose(2, (3,), padding="VALID"),
           pattern((2, 4, 3), 5), seed=11)
layer_case("conv_transpose_circular", nn.ConvTranspose(2, (3,), strides=(2,), padding="CIRCULAR"),
           pattern((1, 4, 2), 6), seed=12)

ids = np.array([[0, 4, 2], [1, 1, 3]], dtype=np.int32)
emb = nn.Embed(5, 3)
ev = emb.init(key(0), ids)
q = pattern((2, 3), 1)
add("embed", seed=0, input=inp(ids), variables=flat_tree(ev), output=arr(emb.apply(ev, ids)),
    attend_input=inp(q), attend_output=arr(emb.apply(ev, q, method=emb.attend)))

layer_case("layer_norm", nn.LayerNorm(), pattern((2, 3, 6), 2) * 3, seed=1)
layer_case("layer_norm_no_bias_axes", nn.LayerNorm(use_bias=False, reduction_axes=(1, 2),
                                                   feature_axes=-1),
           pattern((2, 3, 4), 3), seed=1)
layer_case("rms_norm", nn.RMSNorm(), pattern((3, 5), 4) * 2, seed=1)
layer_case("group_norm", nn.GroupNorm(num_groups=2), pattern((2, 3, 3, 4), 5), seed=1)
layer_case("group_norm_size", nn.GroupNorm(num_groups=None, group_size=1),
           pattern((2, 4, 3), 6), seed=1)

bn_x = pattern((4, 3, 3, 2), 7) * 2 + 0.5
layer_case("batch_norm_train", nn.BatchNorm(use_running_average=False), bn_x, seed=0,
           mutable=["batch_stats"])
layer_case("batch_norm_train_m09", nn.BatchNorm(use_running_average=False, momentum=0.9,
                                                epsilon=1e-3), bn_x, seed=0,
           mutable=["batch_stats"])
bn_eval = nn.BatchNorm(use_running_average=True)
bv = bn_eval.init(key(0), bn_x)
bv = {"params": {"scale": jnp.array([1.5, 0.5]), "bias": jnp.array([0.1, -0.2])},
      "batch_stats": {"mean": jnp.array([0.3, -0.1]), "var": jnp.array([2.0, 0.5])}}
add("batch_norm_eval", input=inp(bn_x), variables=flat_tree(bv), output=arr(bn_eval.apply(bv, bn_x)))


# Dense(4) + Dropout(0.5): the Dropout docstring example, plus broadcast dims.
class DenseDropout(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    x = nn.Dense(4)(x)
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dropout(0.25, broadcast_dims=(0,), deterministic=not train)(x)


dd_x = jnp.ones((3, 3))
ddv = DenseDropout().init({"params": key(0)}, dd_x, train=False)
add("dense_dropout", input=inp(dd_x), variables=flat_tree(ddv),
    output_eval=arr(DenseDropout().apply(ddv, dd_x, train=False)),
    output_train=arr(DenseDropout().apply(ddv, dd_x, train=True, rngs={"dropout": key(1)})),
    dropout_seed=1)

mha = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)
mx = pattern((2, 3, 4), 8)
mask = nn.make_causal_mask(jnp.ones((2, 3)))
mv = mha.init(key(0), mx)
add("mha_causal", seed=0, input=inp(mx), variables=flat_tree(mv),
    output=arr(mha.apply(mv, mx, mask=mask)))
mha_d = nn.MultiHeadDotProductAttention(num_heads=2, dropout_rate=0.5, out_features=3,
                                        deterministic=False)
kv = pattern((2, 5, 6), 9)
mdv = mha_d.init({"params": key(1), "dropout": key(2)}, mx, kv)
add("mha_cross_dropout", seed=1, input=inp(mx), kv=inp(kv), variables=flat_tree(mdv),
    output=arr(mha_d.apply(mdv, mx, kv, rngs={"dropout": key(3)})), dropout_seed=3)
sa = nn.SelfAttention(num_heads=1, normalize_qk=True)
sv = sa.init(key(4), mx)
add("self_attention_qk_norm", seed=4, input=inp(mx), variables=flat_tree(sv),
    output=arr(sa.apply(sv, mx)))

# decode: init with the full-length input, then feed one position at a time
dec = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=4, decode=True)
dx = pattern((1, 4, 4), 10)
dvars = dec.init(key(5), dx)
params = dvars["params"]
cache = dvars["cache"]
steps = []
for t in range(3):
  out, upd = dec.apply({"params": params, "cache": cache}, dx[:, t:t + 1], mutable=["cache"])
  cache = upd["cache"]
  steps.append(arr(out))
add("mha_decode", seed=5, input=inp(dx), variables=flat_tree(dvars), step_outputs=steps,
    final_cache=flat_tree({"cache": cache}))

# --- naming ----------------------------------------------------------------------------------
class Encoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(5)(x)
    x = nn.relu(x)
    z = nn.Dense(3, name="latents")(x)
    return nn.Dense(2)(z)


class Order(nn.Module):
  @nn.compact
  def __call__(self, x):
    a = nn.Dense(4)
    b = nn.Dense(3)
    y = a(b(x))
    return nn.Dense(2)(nn.Dense(5)(y))


def names(tree):
  return list(flat_tree(tree).keys())


nx = pattern((1, 3))
naming = {
    "encoder": names(Encoder().init(key(0), nx)),
    "order": names(Order().init(key(0), nx)),
    "sequential_top": names(nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)]).init(key(0), nx)),
}
ev = Encoder().init(key(0), nx)
add("encoder", seed=0, input=inp(nx), variables=flat_tree(ev), output=arr(Encoder().apply(ev, nx)))


# --- the seed's AutoEncoder (setup-style children, a second method) ---------------------------
class AEEncoder(nn.Module):
  latents: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(5)(x))
    return nn.Dense(self.latents, name="latents")(x)


class AEDecoder(nn.Module):
  @nn.compact
  def __call__(self, z):
    return nn.Dense(6)(nn.relu(nn.Dense(5)(z)))


class AutoEncoder(nn.Module):
  latents: int = 3

  def setup(self):
    self.encoder = AEEncoder(self.latents)
    self.decoder = AEDecoder()

  def __call__(self, x):
    return self.decoder(self.encoder(x))

  def generate(self, z):
    return nn.sigmoid(self.decoder(z))


ae_x = pattern((2, 6), 16)
ae_z = pattern((2, 3), 17)
ae_vars = AutoEncoder().init(key(0), ae_x)
add("autoencoder", seed=0, input=inp(ae_x), variables=flat_tree(ae_vars),
    output=arr(AutoEncoder().apply(ae_vars, ae_x)), z=inp(ae_z),
    generated=arr(AutoEncoder().apply(ae_vars, ae_z, method=AutoEncoder.generate)))


# --- the seed's CNN -----------------------------------------------------------------------------
class CNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Conv(features=32, kernel_size=(3, 3))(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nn.Conv(features=64, kernel_size=(3, 3))(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(features=256)(x)
    x = nn.relu(x)
    x = nn.Dense(features=10)(x)
    return x


cnn_vars = CNN().init(key(0), jnp.ones([1, 28, 28, 1]))
cnn_x = pattern((2, 28, 28, 1), 12)
cnn_out = CNN().apply(cnn_vars, cnn_x)
labels = np.array([3, 7], dtype=np.int32)


def cnn_loss(params):
  logits = CNN().apply({"params": params}, cnn_x)
  one_hot = jax.nn.one_hot(labels, 10)
  import optax
  return jnp.mean(optax.softmax_cross_entropy(logits=logits, labels=one_hot)), logits


(loss, _), grads = jax.value_and_grad(cnn_loss, has_aux=True)(cnn_vars["params"])
add("cnn", seed=0, init_input_shape=[1, 28, 28, 1], input=inp(cnn_x), variables=flat_tree(cnn_vars),
    output=arr(cnn_out), labels=arr(labels), loss=float(loss),
    grads=flat_tree({"params": grads}))


# --- a ResNet built from partial-style configs (the seed's ResNet section) ----------------------
class ResNetBlock(nn.Module):
  filters: int
  conv: Any
  norm: Any
  strides: tuple = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.norm()(y)
    y = nn.relu(y)
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  num_filters: int = 8
  num_classes: int = 10
  train: bool = True

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=False)
    norm = functools.partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9,
                             epsilon=1e-5)
    x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
    x = norm(name="bn_init")(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = ResNetBlock(self.num_filters * 2**i, conv=conv, norm=norm, strides=strides)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes)(x)
    return x


rn_x = pattern((2, 16, 16, 3), 13)
rn_vars = ResNet(stage_sizes=[1, 1]).init(key(0), rn_x)
rn_out, rn_upd = ResNet(stage_sizes=[1, 1], train=True).apply(rn_vars, rn_x, mutable=["batch_stats"])
rn_eval = ResNet(stage_sizes=[1, 1], train=False).apply(
    {"params": rn_vars["params"], "batch_stats": rn_upd["batch_stats"]}, rn_x)
add("resnet", seed=0, input=inp(rn_x), variables=flat_tree(rn_vars), output_train=arr(rn_out),
    updates=flat_tree(rn_upd), output_eval=arr(rn_eval))


# --- a Transformer block --------------------------------------------------------------------------
class TransformerBlock(nn.Module):
  num_heads: int = 2

  @nn.compact
  def __call__(self, x, mask):
    h = nn.LayerNorm()(x)
    h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, mask=mask)
    x = x + h
    h = nn.LayerNorm()(x)
    h = nn.Dense(4 * x.shape[-1])(h)
    h = nn.gelu(h)
    h = nn.Dense(x.shape[-1])(h)
    return x + h


tb_x = pattern((2, 5, 8), 14)
tb_mask = nn.make_causal_mask(jnp.ones((2, 5)))
tb_vars = TransformerBlock().init(key(0), tb_x, tb_mask)
add("transformer_block", seed=0, input=inp(tb_x), variables=flat_tree(tb_vars),
    output=arr(TransformerBlock().apply(tb_vars, tb_x, tb_mask)))


# --- scan over layers --------------------------------------------------------------------------
class Block(nn.Module):
  @nn.compact
  def __call__(self, c, _):
    return nn.relu(nn.Dense(4)(c)), None


class Stack(nn.Module):
  @nn.compact
  def __call__(self, x):
    scan_block = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
    y, _ = scan_block()(x, None)
    return y


sx = pattern((2, 4), 15)
st_vars = Stack().init(key(0), sx)
add("scan_stack", seed=0, input=inp(sx), variables=flat_tree(st_vars),
    output=arr(Stack().apply(st_vars, sx)))


class DropBlock(nn.Module):
  @nn.compact
  def __call__(self, c, _):
    return nn.Dropout(0.5, deterministic=False)(nn.Dense(4)(c)), None


class DropStack(nn.Module):
  @nn.compact
  def __call__(self, x):
    scan_block = nn.scan(DropBlock, variable_axes={"params": 0},
                         split_rngs={"params": True, "dropout": True}, length=2)
    y, _ = scan_block()(x, None)
    return y


ds_vars = DropStack().init({"params": key(1)}, sx)
add("scan_dropout", seed=1, input=inp(sx), variables=flat_tree(ds_vars),
    output=arr(DropStack().apply(ds_vars, sx, rngs={"dropout": key(2)})), dropout_seed=2)

class MLPBlock(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x + nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(8)(x)))


class RematStack(nn.Module):
  @nn.compact
  def __call__(self, x):
    block = nn.remat(MLPBlock)
    return block()(block()(x))


class ScanRemat(nn.Module):
  @nn.compact
  def __call__(self, x):
    def body(module, c, _):
      return module(c), None
    scan_block = nn.scan(nn.remat(Block), variable_axes={"params": 0},
                         split_rngs={"params": True}, length=2)
    y, _ = scan_block()(x, None)
    return y


rm_vars = RematStack().init(key(0), sx)
rm_grads = jax.grad(lambda p: jnp.sum(RematStack().apply({"params": p}, sx) ** 2))(rm_vars["params"])
add("remat_stack", seed=0, input=inp(sx), variables=flat_tree(rm_vars),
    output=arr(RematStack().apply(rm_vars, sx)), grads=flat_tree({"params": rm_grads}))
sr_vars = ScanRemat().init(key(0), sx)
add("scan_remat", seed=0, input=inp(sx), variables=flat_tree(sr_vars),
    output=arr(ScanRemat().apply(sr_vars, sx)))

# --- pre-Linen renaming --------------------------------------------------------------------------
# Pre-Linen numbered submodules with one counter for all classes; Linen counts per class.
pre_linen = ["Conv_0", "Conv_1", "BatchNorm_2", "Dense_3", "Dense_4", "Block_5"]

# --- write ------------------------------------------------------------------------------------
versions = {"flax": flax.__version__, "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
            "numpy": np.__version__, "machine": platform.machine()}
for k, v in PINNED.items():
  if versions.get(k) and versions[k] != v:
    print(f"warning: {k} {versions[k]} differs from the pinned {v}")
doc = {"generator": "scripts/golden/gen_flax_modules.py", "versions": versions,
       "pattern": "((i + offset) * 7919 % 1000) / 500 - 1 (float64, then float32)",
       "initializers": init_cases, "naming": naming, "pre_linen": pre_linen, "cases": cases}
with open(OUT, "w") as f:
  json.dump(doc, f, separators=(",", ":"))
print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(cases)} cases, "
      f"{len(init_cases)} initializer cases")
