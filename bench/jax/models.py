"""The benchmark models in Flax Linen, as loom's zoo defines them.

- CNN: the seed's CNN = Flax's examples/mnist model.
- ResNet50: Flax's examples/imagenet/models.py (ResNet v1.5, BatchNorm momentum 0.9, eps 1e-5,
  zero-initialised last BN scale per block), without the pmap axis_name (one device here).
- GPT2: GPT-2 small (12 layers, 768 channels, 12 heads, tied embeddings, tanh GELU, no dropout,
  as llm.c trains it); attention through jax.nn.dot_product_attention (cuDNN on the GPU). Flax's
  default initialisers and LayerNorm epsilon, as loom's TransformerLM (until 2026-11-27 the
  embeddings were normal(0.02) and epsilon 1e-5: the same work per step, a different loss curve);
  one fused q/k/v projection where loom has three.

`dtype` is the computation dtype (bf16 for mixed precision); params stay float32 (param_dtype),
which is Flax's way of keeping f32 master weights.
"""
from functools import partial
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class CNN(nn.Module):
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train
    x = nn.Conv(32, (3, 3), dtype=self.dtype)(x)
    x = nn.avg_pool(nn.relu(x), (2, 2), (2, 2))
    x = nn.Conv(64, (3, 3), dtype=self.dtype)(x)
    x = nn.avg_pool(nn.relu(x), (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(256, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


class BottleneckResNetBlock(nn.Module):
  filters: int
  conv: Callable
  norm: Callable
  act: Callable
  strides: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (1, 1))(x)
    y = self.act(self.norm()(y))
    y = self.conv(self.filters, (3, 3), self.strides)(y)
    y = self.act(self.norm()(y))
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name='conv_proj')(residual)
      residual = self.norm(name='norm_proj')(residual)
    return self.act(residual + y)


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  num_classes: int = 1000
  num_filters: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   dtype=self.dtype)
    x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name='conv_init')(x)
    x = nn.relu(norm(name='bn_init')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = BottleneckResNetBlock(self.num_filters * 2**i, strides=strides, conv=conv, norm=norm,
                                  act=nn.relu)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    return jnp.asarray(x, self.dtype)


ResNet50 = partial(ResNet, stage_sizes=[3, 4, 6, 3])


class CausalSelfAttention(nn.Module):
  num_heads: int
  dtype: Any
  implementation: Optional[str]

  @nn.compact
  def __call__(self, x):
    b, t, c = x.shape
    qkv = nn.Dense(3 * c, dtype=self.dtype, name='c_attn')(x)
    q, k, v = jnp.split(qkv, 3, axis=-1)
    shape = (b, t, self.num_heads, c // self.num_heads)  # BTNH, as dot_product_attention wants
    y = jax.nn.dot_product_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape),
                                     is_causal=True, implementation=self.implementation)
    return nn.Dense(c, dtype=self.dtype, name='c_proj')(y.reshape(b, t, c))


class Block(nn.Module):
  num_heads: int
  dtype: Any
  implementation: Optional[str]

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = x + CausalSelfAttention(self.num_heads, self.dtype, self.implementation, name='attn')(
        nn.LayerNorm(dtype=self.dtype, name='ln_1')(x))
    h = nn.LayerNorm(dtype=self.dtype, name='ln_2')(x)
    h = nn.Dense(4 * c, dtype=self.dtype, name='c_fc')(h)
    h = nn.Dense(c, dtype=self.dtype, name='c_proj')(nn.gelu(h, approximate=True))
    return x + h


class GPT2(nn.Module):
  vocab_size: int = 50257
  block_size: int = 1024
  num_layers: int = 12
  num_heads: int = 12
  channels: int = 768
  dtype: Any = jnp.float32
  implementation: Optional[str] = None  # dot_product_attention's: None (XLA) or 'cudnn'

  @nn.compact
  def __call__(self, tokens, train: bool = True):
    del train
    wte = nn.Embed(self.vocab_size, self.channels, dtype=self.dtype, name='wte')
    wpe = nn.Embed(self.block_size, self.channels, dtype=self.dtype, name='wpe')
    x = wte(tokens) + wpe(jnp.arange(tokens.shape[1])[None])
    for i in range(self.num_layers):
      x = Block(self.num_heads, self.dtype, self.implementation, name=f'h_{i}')(x)
    x = nn.LayerNorm(dtype=self.dtype, name='ln_f')(x)
    return wte.attend(x)  # tied output projection
