#!/usr/bin/env python3
"""Generates the Flax parity goldens of loom's model zoo (tests/models/flax_models_test.cc):
tiny ResNets (both block kinds), a tiny decoder-only TransformerLM (plain, remat, scan, scan +
remat) and the WMT example's encoder-decoder Transformer, written with the same module names and
order as modules/models/{resnet,transformer}.cc and wmt_transformer.h.

Outputs (tests/golden/):
  flax_models_resnet_basic.msgpack, flax_models_resnet_bottleneck.msgpack, flax_models_lm.msgpack:
    flax.serialization.to_bytes of {"init": variables from init(key(0)), "input", "labels",
    "logits_train", "logits_eval" / "logits", "logits_dropout*", "batch_stats_after", "grads"}
    (read with train/io/flax_msgpack.h load_flax_msgpack).
  flax_models_wmt.msgpack: {"inputs", "targets", "separate" / "shared": {"init", "logits",
    "grads", "logits_dropout"}} for the WMT encoder-decoder with separate or shared embeddings.
  flax_models.json: versions, losses, the order of the variable paths, and summaries of the
    scanned LM's init (its params are stacked and drawn with split rngs).

The ResNet is flax/examples/imagenet/models.py (without axis_name, i.e. one replica), plus the
small-input stem loom adds. The ResNet forward uses perturbed variables so the zero-initialised
scales and the statistics matter: each leaf (flatten order) becomes float32(v + 0.1 sin(i + 1)) in
float64, running variances float32(1 + 0.5 |sin(i + 1)|), i the flat index (the test recomputes
them from "init" rather than storing them).

Pinned versions (recorded in the JSON): flax 0.12.8, jax 0.10.2, numpy 2.x, XLA CPU backend.
Usage: python3 scripts/golden/gen_flax_models.py
"""
from functools import partial
import json
import os
import dataclasses
import platform
from typing import Any, Callable, Optional, Sequence

import flax
import flax.linen as nn
from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

PINNED = {"flax": "0.12.8", "jax": "0.10.2"}
GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden")
ModuleDef = Any


# --- ResNet (flax/examples/imagenet/models.py) ---------------------------------------------------
class ResNetBlock(nn.Module):
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: tuple = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class BottleneckResNetBlock(nn.Module):
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: tuple = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (1, 1))(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3), self.strides)(y)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  num_filters: int = 64
  dtype: Any = jnp.float32
  act: Callable = nn.relu
  conv: ModuleDef = nn.Conv
  small_input_stem: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = partial(self.conv, use_bias=False, dtype=self.dtype)
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   dtype=self.dtype)
    if self.small_input_stem:
      x = conv(self.num_filters, (3, 3), (1, 1), name="conv_init")(x)
      x = nn.relu(norm(name="bn_init")(x))
    else:
      x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
      x = nn.relu(norm(name="bn_init")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = self.block_cls(self.num_filters * 2**i, strides=strides, conv=conv, norm=norm,
                           act=self.act)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    return jnp.asarray(x, self.dtype)


# --- TransformerLM (modules/models/transformer.cc) -----------------------------------------------
class TransformerBlock(nn.Module):
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  deterministic: bool = True
  scanned: bool = False  # nn.scan wants (carry, out)

  @nn.compact
  def __call__(self, x, mask):
    d = x.shape[-1]
    y = nn.LayerNorm(name="ln_1")(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout_rate,
                                        deterministic=self.deterministic, name="attn")(y, mask=mask)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=self.deterministic)
    h = x + y
    y = nn.LayerNorm(name="ln_2")(h)
    y = nn.Dense(self.mlp_dim, name="c_fc")(y)
    y = nn.gelu(y)
    y = nn.Dense(d, name="c_proj")(y)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=self.deterministic)
    out = h + y
    return (out, None) if self.scanned else out


class TransformerLM(nn.Module):
  vocab_size: int
  max_len: int
  num_layers: int
  num_heads: int
  d_model: int
  dropout_rate: float = 0.0
  deterministic: bool = True
  scan_layers: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, tokens):
    wte = nn.Embed(self.vocab_size, self.d_model, name="wte")
    wpe = nn.Embed(self.max_len, self.d_model, name="wpe")
    x = wte(tokens) + wpe(jnp.arange(tokens.shape[1])[None])
    x = nn.Dropout(self.dropout_rate)(x, deterministic=self.deterministic)
    mask = nn.make_causal_mask(tokens)
    kw = dict(num_heads=self.num_heads, mlp_dim=4 * self.d_model, dropout_rate=self.dropout_rate,
              deterministic=self.deterministic)
    block = nn.remat(TransformerBlock) if self.remat else TransformerBlock
    if self.scan_layers:
      stack = nn.scan(block, variable_axes={"params": 0},
                      split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast,),
                      length=self.num_layers)
      x, _ = stack(**kw, scanned=True, name="h")(x, mask)
    else:
      for i in range(self.num_layers):
        x = block(**kw, name=f"h_{i}")(x, mask)
    x = nn.LayerNorm(name="ln_f")(x)
    return wte.attend(x)


# --- WMT encoder-decoder (flax/examples/wmt/models.py, without the decode cache) ----------------
@dataclasses.dataclass(unsafe_hash=True)
class TransformerConfig:
  vocab_size: int
  output_vocab_size: int
  share_embeddings: bool = False
  logits_via_embedding: bool = False
  dtype: Any = jnp.float32
  emb_dim: int = 512
  num_heads: int = 8
  num_layers: int = 6
  qkv_dim: int = 512
  mlp_dim: int = 2048
  max_len: int = 2048
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  deterministic: bool = False
  kernel_init: Callable = nn.initializers.xavier_uniform()
  bias_init: Callable = nn.initializers.normal(stddev=1e-6)
  posemb_init: Optional[Callable] = None


def shift_right(x, axis=1):
  pad_widths = [(0, 0)] * len(x.shape)
  pad_widths[axis] = (1, 0)
  padded = jnp.pad(x, pad_widths, mode="constant", constant_values=x.dtype.type(0))
  return padded[:, :-1]


def sinusoidal_init(max_len=2048, min_scale=1.0, max_scale=10000.0):
  def init(key, shape, dtype=np.float32):
    d_feature = shape[-1]
    pe = np.zeros((max_len, d_feature), dtype=np.float32)
    position = np.arange(0, max_len)[:, np.newaxis]
    scale_factor = -np.log(max_scale / min_scale) / (d_feature // 2 - 1)
    div_term = min_scale * np.exp(np.arange(0, d_feature // 2) * scale_factor)
    pe[:, : d_feature // 2] = np.sin(position * div_term)
    pe[:, d_feature // 2: 2 * (d_feature // 2)] = np.cos(position * div_term)
    return jnp.array(pe[np.newaxis, :, :])
  return init


class AddPositionEmbs(nn.Module):
  config: TransformerConfig

  @nn.compact
  def __call__(self, inputs):
    config = self.config
    length = inputs.shape[1]
    pos_emb_shape = (1, config.max_len, inputs.shape[-1])
    if config.posemb_init is None:
      pos_embedding = sinusoidal_init(max_len=config.max_len)(None, pos_emb_shape, None)
    else:
      pos_embedding = self.param("pos_embedding", config.posemb_init, pos_emb_shape)
    return inputs + pos_embedding[:, :length, :]


class MlpBlock(nn.Module):
  config: TransformerConfig
  out_dim: Optional[int] = None

  @nn.compact
  def __call__(self, inputs):
    config = self.config
    actual_out_dim = inputs.shape[-1] if self.out_dim is None else self.out_dim
    x = nn.Dense(config.mlp_dim, dtype=config.dtype, kernel_init=config.kernel_init,
                 bias_init=config.bias_init)(inputs)
    x = nn.relu(x)
    x = nn.Dropout(rate=config.dropout_rate)(x, deterministic=config.deterministic)
    output = nn.Dense(actual_out_dim, dtype=config.dtype, kernel_init=config.kernel_init,
                      bias_init=config.bias_init)(x)
    return nn.Dropout(rate=config.dropout_rate)(output, deterministic=config.deterministic)


def wmt_attention(config):
  return nn.MultiHeadDotProductAttention(
      num_heads=config.num_heads, dtype=config.dtype, qkv_features=config.qkv_dim,
      kernel_init=config.kernel_init, bias_init=config.bias_init, use_bias=False,
      broadcast_dropout=False, dropout_rate=config.attention_dropout_rate,
      deterministic=config.deterministic)


class Encoder1DBlock(nn.Module):
  config: TransformerConfig

  @nn.compact
  def __call__(self, inputs, encoder_mask=None):
    config = self.config
    x = nn.LayerNorm(dtype=config.dtype)(inputs)
    x = wmt_attention(config)(x, mask=encoder_mask)
    x = nn.Dropout(rate=config.dropout_rate)(x, deterministic=config.deterministic)
    x = x + inputs
    z = nn.LayerNorm(dtype=config.dtype)(x)
    z = MlpBlock(config=config)(z)
    return x + z


class EncoderDecoder1DBlock(nn.Module):
  config: TransformerConfig

  @nn.compact
  def __call__(self, targets, encoded, decoder_mask=None, encoder_decoder_mask=None):
    config = self.config
    x = nn.LayerNorm(dtype=config.dtype)(targets)
    x = wmt_attention(config)(x, mask=decoder_mask)
    x = nn.Dropout(rate=config.dropout_rate)(x, deterministic=config.deterministic)
    x = x + targets
    y = nn.LayerNorm(dtype=config.dtype)(x)
    y = wmt_attention(config)(y, encoded, mask=encoder_decoder_mask)
    y = nn.Dropout(rate=config.dropout_rate)(y, deterministic=config.deterministic)
    y = y + x
    z = nn.LayerNorm(dtype=config.dtype)(y)
    z = MlpBlock(config=config)(z)
    return y + z


class Encoder(nn.Module):
  config: TransformerConfig
  shared_embedding: Any = None

  @nn.compact
  def __call__(self, inputs, encoder_mask=None):
    config = self.config
    if self.shared_embedding is None:
      input_embed = nn.Embed(num_embeddings=config.vocab_size, features=config.emb_dim,
                             embedding_init=nn.initializers.normal(stddev=1.0))
    else:
      input_embed = self.shared_embedding
    x = input_embed(inputs.astype("int32"))
    x = AddPositionEmbs(config=config, name="posembed_input")(x)
    x = nn.Dropout(rate=config.dropout_rate)(x, deterministic=config.deterministic)
    x = x.astype(config.dtype)
    for lyr in range(config.num_layers):
      x = Encoder1DBlock(config=config, name=f"encoderblock_{lyr}")(x, encoder_mask)
    return nn.LayerNorm(dtype=config.dtype, name="encoder_norm")(x)


class Decoder(nn.Module):
  config: TransformerConfig
  shared_embedding: Any = None

  @nn.compact
  def __call__(self, encoded, targets, decoder_mask=None, encoder_decoder_mask=None):
    config = self.config
    if self.shared_embedding is None:
      output_embed = nn.Embed(num_embeddings=config.output_vocab_size, features=config.emb_dim,
                              embedding_init=nn.initializers.normal(stddev=1.0))
    else:
      output_embed = self.shared_embedding
    y = shift_right(targets.astype("int32"))
    y = output_embed(y)
    y = AddPositionEmbs(config=config, name="posembed_output")(y)
    y = nn.Dropout(rate=config.dropout_rate)(y, deterministic=config.deterministic)
    y = y.astype(config.dtype)
    for lyr in range(config.num_layers):
      y = EncoderDecoder1DBlock(config=config, name=f"encoderdecoderblock_{lyr}")(
          y, encoded, decoder_mask=decoder_mask, encoder_decoder_mask=encoder_decoder_mask)
    y = nn.LayerNorm(dtype=config.dtype, name="encoderdecoder_norm")(y)
    if config.logits_via_embedding:
      logits = output_embed.attend(y.astype(jnp.float32))
      logits = logits / jnp.sqrt(y.shape[-1])
    else:
      logits = nn.Dense(config.output_vocab_size, dtype=config.dtype,
                        kernel_init=config.kernel_init, bias_init=config.bias_init,
                        name="logitdense")(y)
    return logits


class WmtTransformer(nn.Module):
  config: TransformerConfig

  def setup(self):
    config = self.config
    if config.share_embeddings:
      self.shared_embedding = nn.Embed(num_embeddings=config.vocab_size, features=config.emb_dim,
                                       embedding_init=nn.initializers.normal(stddev=1.0))
    else:
      self.shared_embedding = None
    self.encoder = Encoder(config=config, shared_embedding=self.shared_embedding)
    self.decoder = Decoder(config=config, shared_embedding=self.shared_embedding)

  def encode(self, inputs):
    encoder_mask = nn.make_attention_mask(inputs > 0, inputs > 0, dtype=self.config.dtype)
    return self.encoder(inputs, encoder_mask=encoder_mask)

  def decode(self, encoded, inputs, targets):
    config = self.config
    decoder_mask = nn.combine_masks(
        nn.make_attention_mask(targets > 0, targets > 0, dtype=config.dtype),
        nn.make_causal_mask(targets, dtype=config.dtype))
    encoder_decoder_mask = nn.make_attention_mask(targets > 0, inputs > 0, dtype=config.dtype)
    logits = self.decoder(encoded, targets, decoder_mask=decoder_mask,
                          encoder_decoder_mask=encoder_decoder_mask)
    return logits.astype(self.config.dtype)

  def __call__(self, inputs, targets):
    return self.decode(self.encode(inputs), inputs, targets)


# --- helpers -----------------------------------------------------------------------------------
def flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      out.update(flat(v, path))
    else:
      out[path] = np.asarray(v)
  return out


def summary(x):
  flat_x = np.asarray(x, np.float64).ravel()
  stride = max(1, flat_x.size // 64)
  return {"shape": list(np.shape(x)), "dtype": str(np.asarray(x).dtype),
          "summary": {"head": [float(v) for v in flat_x[:16]], "stride": stride,
                      "sample": [float(v) for v in flat_x[::stride][:64]],
                      "sum": float(flat_x.sum()), "sum_sq": float((flat_x * flat_x).sum())}}


def perturb(tree, kind):
  def f(path, v):
    v = np.asarray(v)
    s = np.sin(np.arange(v.size, dtype=np.float64) + 1).reshape(v.shape)
    name = jax.tree_util.keystr(path)
    if kind == "batch_stats" and name.endswith("'var']"):
      return (1.0 + 0.5 * np.abs(s)).astype(np.float32)
    return (v + 0.1 * s).astype(np.float32)
  return jax.tree_util.tree_map_with_path(f, tree)


def to_np(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def write_msgpack(name, tree):
  with open(os.path.join(GOLDEN, name), "wb") as fh:
    fh.write(serialization.to_bytes(to_np(tree)))


def ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def pattern(shape, offset=0):
  i = np.arange(int(np.prod(shape)), dtype=np.int64) + offset
  return (((i * 7919) % 1000).astype(np.float64) / 500.0 - 1.0).astype(np.float32).reshape(shape)


doc = {"generator": "scripts/golden/gen_flax_models.py",
       "versions": {"flax": flax.__version__, "jax": jax.__version__, "optax": optax.__version__,
                    "numpy": np.__version__, "machine": platform.machine()}}
for k, v in PINNED.items():
  if doc["versions"][k] != v:
    print(f"warning: {k} {doc['versions'][k]} differs from the pinned {v}")

# --- ResNet cases ------------------------------------------------------------------------------
resnet_cases = {
    "resnet_basic": dict(stage_sizes=[1, 1], block_cls=ResNetBlock, num_classes=10, num_filters=8),
    "resnet_bottleneck": dict(stage_sizes=[1, 1], block_cls=BottleneckResNetBlock, num_classes=10,
                              num_filters=8, small_input_stem=True),
}
x = pattern((2, 16, 16, 3))
labels = np.array([3, 7], np.int32)
for name, cfg in resnet_cases.items():
  model = ResNet(**cfg)
  init = model.init(jax.random.key(0), x)
  variables = {"params": perturb(init["params"], "params"),
               "batch_stats": perturb(init["batch_stats"], "batch_stats")}

  def loss_fn(p):
    logits, upd = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x,
                              train=True, mutable=["batch_stats"])
    return ce(logits, labels), (logits, upd)

  (loss, (logits, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
  logits_eval = model.apply(variables, x, train=False)
  write_msgpack(f"flax_models_{name}.msgpack",
                {"init": init, "input": x, "labels": labels,
                 "logits_train": logits, "logits_eval": logits_eval,
                 "batch_stats_after": upd["batch_stats"], "grads": grads})
  doc[name] = {"loss": float(loss), "init_paths": list(flat(init).keys()),
               "param_count": int(sum(v.size for v in flat(init["params"]).values()))}

# --- TransformerLM cases -------------------------------------------------------------------------
lm_cfg = dict(vocab_size=64, max_len=16, num_layers=2, num_heads=4, d_model=24)  # ~400 KB budget
tokens = ((np.arange(16) * 7 + 3) % 64).astype(np.int32).reshape(2, 8)
lm_labels = ((np.arange(16) * 13 + 5) % 64).astype(np.int32).reshape(2, 8)
lm = TransformerLM(**lm_cfg)
lm_init = lm.init(jax.random.key(0), tokens)
params = lm_init["params"]


def lm_loss(model, p):
  logits = model.apply({"params": p}, tokens)
  return ce(logits, lm_labels), logits


def stacked(p):
  out = {k: v for k, v in p.items() if not k.startswith("h_")}
  out["h"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[p[f"h_{i}"] for i in range(2)])
  return out


(loss, logits), grads = jax.value_and_grad(partial(lm_loss, lm), has_aux=True)(params)
lm_out = {"init": lm_init, "input": tokens, "labels": lm_labels, "logits": logits, "grads": grads}
doc["lm"] = {"loss": float(loss), "init_paths": list(flat(lm_init).keys()),
             "param_count": int(sum(v.size for v in flat(params).values())), "variants": {}}
# remat / scan / scan + remat with the same values (stacked for scan): Flax agrees with itself up
# to rounding; loom's variants are compared with the plain goldens. The differences are recorded.
for variant, kw in {"remat": dict(remat=True), "scan": dict(scan_layers=True),
                    "scan_remat": dict(scan_layers=True, remat=True)}.items():
  m = TransformerLM(**lm_cfg, **kw)
  p = stacked(params) if kw.get("scan_layers") else params
  (l2, lg2), g2 = jax.value_and_grad(partial(lm_loss, m), has_aux=True)(p)
  g_ref = stacked(grads) if kw.get("scan_layers") else grads
  gdiff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(g_ref)))
  doc["lm"]["variants"][variant] = {"loss": float(l2),
                                    "max_logit_diff": float(np.max(np.abs(lg2 - logits))),
                                    "max_grad_diff": gdiff}
  if kw.get("scan_layers") and not kw.get("remat"):
    scan_init = m.init(jax.random.key(0), tokens)
    doc["lm"]["scan_init_paths"] = list(flat(scan_init).keys())
    doc["lm"]["scan_init"] = {k: summary(v) for k, v in flat(scan_init).items()}
# Dropout on (rate 0.1, dropout key 1): the masks are bit-identical in loom.
for variant, kw in {"dropout": {}, "dropout_scan": dict(scan_layers=True)}.items():
  m = TransformerLM(**lm_cfg, dropout_rate=0.1, deterministic=False, **kw)
  p = stacked(params) if kw else params
  lm_out[f"logits_{variant}"] = m.apply({"params": p}, tokens, rngs={"dropout": jax.random.key(1)})
write_msgpack("flax_models_lm.msgpack", lm_out)


# --- WMT cases: tiny configs, separate and shared embeddings -------------------------------------
wmt_inputs = np.array([[5, 9, 2, 30, 0, 0], [7, 1, 1, 4, 12, 3]], np.int32)  # 0 = padding
wmt_targets = np.array([[3, 8, 21, 0, 0], [6, 6, 2, 17, 9]], np.int32)
wmt_out = {"inputs": wmt_inputs, "targets": wmt_targets}
doc["wmt"] = {}
for variant, kw in {"separate": {}, "shared": dict(share_embeddings=True,
                                                   logits_via_embedding=True)}.items():
  cfg = TransformerConfig(vocab_size=32, output_vocab_size=32, emb_dim=8, num_heads=2,
                          num_layers=2, qkv_dim=8, mlp_dim=16, max_len=16, deterministic=True,
                          **kw)
  model = WmtTransformer(cfg)
  init = model.init(jax.random.key(0), wmt_inputs, wmt_targets)

  def wmt_loss(p):
    logits = model.apply({"params": p}, wmt_inputs, wmt_targets)
    return ce(logits, wmt_targets), logits

  (loss, logits), grads = jax.value_and_grad(wmt_loss, has_aux=True)(init["params"])
  drop = WmtTransformer(dataclasses.replace(cfg, deterministic=False))
  logits_dropout = drop.apply(init, wmt_inputs, wmt_targets, rngs={"dropout": jax.random.key(1)})
  wmt_out[variant] = {"init": init, "logits": logits, "grads": grads,
                      "logits_dropout": logits_dropout}
  doc["wmt"][variant] = {"loss": float(loss), "init_paths": list(flat(init).keys())}
write_msgpack("flax_models_wmt.msgpack", wmt_out)

# GPT-2 small's count from Flax's shapes (no values: jax.eval_shape).
gpt2 = TransformerLM(vocab_size=50257, max_len=1024, num_layers=12, num_heads=12, d_model=768)
shapes = jax.eval_shape(gpt2.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
doc["gpt2_param_count"] = int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(shapes)))
r50 = ResNet(stage_sizes=[3, 4, 6, 3], block_cls=BottleneckResNetBlock, num_classes=1000)
shapes = jax.eval_shape(r50.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
doc["resnet50_param_count"] = int(sum(np.prod(v.shape)
                                      for v in jax.tree_util.tree_leaves(shapes["params"])))

# Reduced widths of the same structures, cheap enough for loom to init in the default tests.
small_lm = TransformerLM(vocab_size=512, max_len=1024, num_layers=12, num_heads=12, d_model=96)
shapes = jax.eval_shape(small_lm.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
doc["gpt2_d96_v512_param_count"] = int(sum(np.prod(v.shape)
                                           for v in jax.tree_util.tree_leaves(shapes)))
r50s = ResNet(stage_sizes=[3, 4, 6, 3], block_cls=BottleneckResNetBlock, num_classes=100,
              num_filters=8)
shapes = jax.eval_shape(r50s.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
doc["resnet50_f8_c100_param_count"] = int(sum(np.prod(v.shape)
                                              for v in jax.tree_util.tree_leaves(shapes["params"])))

with open(os.path.join(GOLDEN, "flax_models.json"), "w") as fh:
  json.dump(doc, fh, indent=1)
  fh.write("\n")
print(json.dumps({k: doc[k] for k in ("gpt2_param_count", "resnet50_param_count")}),
      doc["lm"]["variants"])
