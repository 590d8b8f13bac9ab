#!/usr/bin/env python3
"""JAX/Flax/Optax twin of loom_bench: times one jitted training step and prints the same JSON line.

  python3 bench/jax/train_step_bench.py --model cnn|resnet50|gpt2|gpt2-medium|transformer-lm
      [--batch N] [--steps N]
      [--warmup N] [--device cpu|cuda] [--precision f32|bf16] [--seq N] [--image N]

The step is jax.jit(value_and_grad(loss) + TrainState.apply_gradients), with the state donated on
the GPU. The batch is synthetic and already on the device. Each timed step ends with
jax.block_until_ready on the new state and the loss. Optimizers: CNN and ResNet-50 optax.sgd(0.1,
momentum=0.9) (Flax's MNIST/ImageNet examples), the language models optax.adamw(3e-4, b1=0.9,
b2=0.95, weight_decay=0.1). transformer-lm is loom's zoo model of that name: the GPT-2 architecture
with 4 layers of 128 channels and 4 heads, a vocabulary of 256, batch 4 x 32 tokens by default. bf16: the model computes in bf16 (Flax dtype=bfloat16) with f32 params.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse():
  p = argparse.ArgumentParser()
  p.add_argument('--model', choices=['cnn', 'resnet50', 'gpt2', 'gpt2-medium', 'transformer-lm'], default='cnn')
  p.add_argument('--batch', type=int, default=0)
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
  p.add_argument('--precision', choices=['f32', 'bf16'], default='f32')
  p.add_argument('--seq', type=int, default=0)  # 0: gpt2 1024, transformer-lm 32
  p.add_argument('--image', type=int, default=224)
  p.add_argument('--peak-tflops', type=float, default=989.0)
  a = p.parse_args()
  if a.batch == 0:
    a.batch = {'cnn': 128, 'resnet50': 256, 'gpt2': 16, 'gpt2-medium': 16, 'transformer-lm': 4}[a.model]
  if a.seq == 0:
    a.seq = 32 if a.model == 'transformer-lm' else 1024
  return a


def run(a, line):
  # The platform must be chosen before JAX initialises its backends.
  os.environ.setdefault('JAX_PLATFORMS', 'cuda' if a.device == 'cuda' else 'cpu')
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax.training import train_state
  import models

  line['versions'] = {'jax': jax.__version__, 'jaxlib': jax.lib.__version__,
                      'flax': __import__('flax').__version__, 'optax': optax.__version__}
  try:
    dev = jax.devices()[0]
  except Exception as e:  # JAX says only 'AssertionError' when its CUDA plugin is missing
    raise RuntimeError(f'JAX has no {a.device} backend here (for cuda: is the jax CUDA plugin '
                       f'installed?): {type(e).__name__} {e}') from e
  line['device_name'] = getattr(dev, 'device_kind', str(dev))
  dtype = jnp.bfloat16 if a.precision == 'bf16' else jnp.float32
  rng = np.random.default_rng(0)
  if a.model == 'cnn':
    model = models.CNN(num_classes=10, dtype=dtype)
    x = rng.standard_normal((a.batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, (a.batch,), dtype=np.int32)
    tx = optax.sgd(0.1, momentum=0.9)
    items, unit = a.batch, 'img/s'
  elif a.model == 'resnet50':
    model = models.ResNet50(num_classes=1000, dtype=dtype)
    x = rng.standard_normal((a.batch, a.image, a.image, 3), dtype=np.float32)
    y = rng.integers(0, 1000, (a.batch,), dtype=np.int32)
    tx = optax.sgd(0.1, momentum=0.9)
    items, unit = a.batch, 'img/s'
  else:
    # cuDNN's fused attention needs a GPU and bf16/f16; elsewhere XLA's attention.
    impl = 'cudnn' if a.device == 'cuda' and a.precision == 'bf16' else None
    line['attention'] = impl or 'xla'
    size = {'gpt2': {}, 'gpt2-medium': dict(num_layers=24, num_heads=16, channels=1024),
            'transformer-lm': dict(num_layers=4, num_heads=4, channels=128)}[a.model]
    vocab = 256 if a.model == 'transformer-lm' else 50257
    model = models.GPT2(vocab_size=vocab, block_size=a.seq, dtype=dtype, implementation=impl, **size)
    x = rng.integers(0, vocab, (a.batch, a.seq), dtype=np.int32)
    y = rng.integers(0, vocab, (a.batch, a.seq), dtype=np.int32)
    tx = optax.adamw(3e-4, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1)
    items, unit = a.batch * a.seq, 'tok/s'
  x, y = jax.device_put(x, dev), jax.device_put(y, dev)

  variables = jax.jit(lambda k, s: model.init(k, s, train=False))(jax.random.key(42), x)
  params = variables['params']
  batch_stats = variables.get('batch_stats')

  class State(train_state.TrainState):
    batch_stats: object = None

  state = State.create(apply_fn=model.apply, params=params, tx=tx, batch_stats=batch_stats)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))

  def train_step(state, x, y):
    def loss_fn(params):
      v = {'params': params}
      if state.batch_stats is not None:
        v['batch_stats'] = state.batch_stats
        logits, upd = state.apply_fn(v, x, train=True, mutable=['batch_stats'])
      else:
        logits, upd = state.apply_fn(v, x, train=True), None
      logits = logits.astype(jnp.float32).reshape(-1, logits.shape[-1])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y.reshape(-1)).mean()
      return loss, upd
    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    if upd is not None:
      state = state.replace(batch_stats=upd['batch_stats'])
    return state, loss

  # Donation lets XLA update the state in place (what a real training loop does); the CPU
  # backend would only warn about it.
  step = jax.jit(train_step, donate_argnums=(0,) if a.device == 'cuda' else ())

  t0 = time.perf_counter()
  state, loss = step(state, x, y)
  jax.block_until_ready((state, loss))
  line['first_step_ms'] = 1e3 * (time.perf_counter() - t0)  # includes compilation
  for _ in range(max(a.warmup - 1, 0)):
    state, loss = step(state, x, y)
    jax.block_until_ready((state, loss))
  ms = []
  for _ in range(a.steps):
    t0 = time.perf_counter()
    state, loss = step(state, x, y)
    jax.block_until_ready((state, loss))
    ms.append(1e3 * (time.perf_counter() - t0))

  med = statistics.median(ms)
  line.update(median_ms=med, mean_ms=statistics.fmean(ms), min_ms=min(ms), max_ms=max(ms),
              throughput=items / (med / 1e3), throughput_unit=unit, params=n_params)
  lv = float(loss)
  line['final_loss'] = lv if np.isfinite(lv) else None
  stats = dev.memory_stats() if a.device == 'cuda' else None
  line['peak_mem_mb'] = stats['peak_bytes_in_use'] / 2**20 if stats else None
  if a.model != 'cnn' and a.model != 'resnet50' and a.device == 'cuda':  # against a GPU's peak
    # llm.c's gpt2_estimate_mfu: 6N + 6·L·C·T FLOPs per token.
    fpt = 6 * n_params + 6 * model.num_layers * model.channels * a.seq
    line['mfu'] = fpt * items / (med / 1e3) / (a.peak_tflops * 1e12)
  else:
    line['mfu'] = None


def main():
  a = parse()
  line = {'framework': 'jax', 'model': a.model, 'device': a.device, 'precision': a.precision,
          'batch': a.batch, 'steps': a.steps, 'warmup': a.warmup}
  if a.model.startswith('gpt2') or a.model == 'transformer-lm':
    line['seq'] = a.seq
  if a.model == 'resnet50':
    line['image'] = a.image
  rc = 0
  try:
    run(a, line)
  except Exception as e:  # one failing model must not stop scripts/bench.sh
    where = traceback.extract_tb(e.__traceback__)[-1]
    msg = str(e).splitlines()[0] if str(e) else f'at {os.path.basename(where.filename)}:{where.lineno}'
    line['error'] = f'{type(e).__name__}: {msg}'[:500]
    rc = 1
  line['host_max_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(json.dumps(line), flush=True)
  return rc


if __name__ == '__main__':
  sys.exit(main())
