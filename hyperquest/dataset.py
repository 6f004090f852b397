"""Seeded procedural "random datasets": 10 classes of 3x32x32 images, difficulty set by the seed.

Each class is a smooth random colour field (its prototype). An example is its class prototype,
randomly shifted and contrast-jittered, blended with a random smooth distractor field and another
class's prototype, plus pixel noise. The seed fixes the prototypes and also the noise level, the
shift range and the blend strengths, so some datasets are much harder than others.
Images are uint8 NHWC (the train step scales them to [0, 1]).
"""
import functools

import jax
import numpy as np

IMAGE_SHAPE = (32, 32, 3)


def difficulty(seed):
  """The seed's difficulty knobs (deterministic; also shown on the leaderboard)."""
  r = np.random.default_rng([seed, 7])
  return {
    "noise": float(r.uniform(0.08, 0.35)),
    "shift": int(r.integers(1, 7)),
    "distractor": float(r.uniform(0.3, 1.0)),
    "confuse": float(r.uniform(0.0, 0.45)),
  }


def _smooth(rng, n, low):
  """n smooth random RGB fields in [-1, 1]: `low`x`low` noise bilinearly resized to 32x32."""
  coarse = rng.uniform(-1.0, 1.0, size=(n, low, low, 3)).astype(np.float32)
  return np.array(jax.image.resize(coarse, (n, *IMAGE_SHAPE), "bilinear"))


def _make_split(rng, protos, n, knobs, num_classes):
  labels = rng.integers(0, num_classes, size=n).astype(np.int32)
  s = knobs["shift"]
  dy = rng.integers(-s, s + 1, size=n)
  dx = rng.integers(-s, s + 1, size=n)
  # Shifting by rolling each example's prototype; grouped by (dy, dx) to stay vectorised.
  base = protos[labels]
  shifted = np.empty_like(base)
  for sy in range(-s, s + 1):
    for sx in range(-s, s + 1):
      idx = np.nonzero((dy == sy) & (dx == sx))[0]
      if idx.size:
        shifted[idx] = np.roll(base[idx], (sy, sx), axis=(1, 2))
  other = protos[(labels + rng.integers(1, num_classes, size=n)) % num_classes]
  contrast = rng.uniform(0.6, 1.2, size=(n, 1, 1, 1)).astype(np.float32)
  distract = _smooth(rng, n, 6) * knobs["distractor"]
  noise = rng.normal(0.0, knobs["noise"], size=base.shape).astype(np.float32)
  x = 0.5 + 0.25 * (contrast * shifted + knobs["confuse"] * other + distract) + noise
  return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8), labels


@functools.lru_cache(maxsize=4)
def make_dataset(seed, train_size=8500, val_size=1500, num_classes=10):
  """Returns dict(train=(x, y), val=(x, y), knobs=...) for dataset `seed` (cached in memory)."""
  knobs = difficulty(seed)
  rng = np.random.default_rng(seed)
  protos = _smooth(rng, num_classes, 4)
  protos /= np.abs(protos).max(axis=(1, 2, 3), keepdims=True)
  train = _chunked(seed, 1, protos, train_size, knobs, num_classes)
  val = _chunked(seed, 2, protos, val_size, knobs, num_classes)
  return {"train": train, "val": val, "knobs": knobs}


def _chunked(seed, split, protos, n, knobs, num_classes, chunk=500):
  """Generates a split in chunks: numpy's RNG holds the GIL, and the web server shares the
  process with the worker generating data, so no single call may take long."""
  parts = [_make_split(np.random.default_rng([seed, split, i]), protos, min(chunk, n - s),
                       knobs, num_classes) for i, s in enumerate(range(0, n, chunk))]
  return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
