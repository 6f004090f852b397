"""Benchmarks the detection ops on this machine's default JAX device.

  python -m tools.bench_ops [--repeats 5]

Prints, per op, the jit compile time and the median wall time of several runs after a warm-up.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ops import nms as nms_lib
from ops import roi


def _time(fn, args, repeats):
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(*args))  # warm-up
  runs = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    runs.append(time.perf_counter() - t0)
  return compile_s, statistics.median(runs)


def _boxes(rng, n, size=800.0):
  yx = rng.uniform(0, size, (n, 2))
  hw = rng.uniform(10, 200, (n, 2))
  return jnp.asarray(np.concatenate([yx, yx + hw], 1), jnp.float32)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--roi_methods", default="einsum,gather")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  rows = []

  for n in (1000, 5000):
    boxes, scores = _boxes(rng, n), jnp.asarray(rng.uniform(size=n), jnp.float32)
    fn = lambda b, s: nms_lib.nms(b, s, 0.5, 1000)
    rows.append((f"nms N={n} thr=0.5 max_output=1000", *_time(fn, (boxes, scores),
                                                              args.repeats)))
    fn = lambda b, s, n=n: nms_lib.nms(b, s, 0.7, n)
    rows.append((f"nms N={n} thr=0.7 max_output=N", *_time(fn, (boxes, scores), args.repeats)))

  feats = jnp.asarray(rng.normal(size=(2, 64, 64, 256)), jnp.float32)
  k = 512
  b = _boxes(rng, k, size=400.0) * jnp.array([0.6, 0.6, 0.6, 0.6])  # inside a 512px image
  rois = jnp.concatenate([jnp.asarray(rng.integers(0, 2, (k, 1)), jnp.float32), b], 1)
  scale = 1 / 8
  for method in args.roi_methods.split(","):
    fwd = lambda f, r, m=method: roi.roi_align(f, r, (7, 7), scale, 2, True, method=m)
    bwd = jax.grad(lambda f, r, m=method: jnp.sum(jnp.sin(
        roi.roi_align(f, r, (7, 7), scale, 2, True, method=m))))
    rows.append((f"roi_align[{method}] fwd 512 RoIs 7x7", *_time(fwd, (feats, rois),
                                                                 args.repeats)))
    rows.append((f"roi_align[{method}] fwd+bwd", *_time(bwd, (feats, rois), args.repeats)))
  fwd = lambda f, r: roi.roi_pool(f, r, (7, 7), scale)
  bwd = jax.grad(lambda f, r: jnp.sum(jnp.sin(roi.roi_pool(f, r, (7, 7), scale))))
  rows.append(("roi_pool fwd 512 RoIs 7x7", *_time(fwd, (feats, rois), args.repeats)))
  rows.append(("roi_pool fwd+bwd", *_time(bwd, (feats, rois), args.repeats)))

  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"features [2, 64, 64, 256] f32, median of {args.repeats} runs")
  print(f"{'op':<40} {'compile s':>10} {'run ms':>10}")
  for name, compile_s, run_s in rows:
    print(f"{name:<40} {compile_s:>10.2f} {run_s * 1e3:>10.1f}")


if __name__ == "__main__":
  main()
