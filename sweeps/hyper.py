"""Building blocks of sweep files: grids, random draws, products and zips of override dicts.

A sweep file is a python file with `get_sweep()` returning a list of override dicts, one per
trial; keys are config fields (`'optimizer.learning_rate'`), values are python values:

  from sweeps import hyper

  def get_sweep():
    return hyper.product([
        hyper.sweep('optimizer.learning_rate', hyper.logspace(1e-4, 1e-2, 3)),
        hyper.sweep('seed', [0, 1]),
    ])  # 6 trials: lr 1e-4 with seeds 0, 1; lr 1e-3 with seeds 0, 1; ...

`product` varies its last sweep fastest (like nested for loops); `zipit` pairs trials up element
by element (random search: zip independent random draws of each key). Random draws take a seed
so a sweep file always expands to the same trials, which a resumed sweep relies on.
"""
import importlib.util
import itertools
import math
import os

import numpy as np


def sweep(key: str, values) -> list[dict]:
  """One key over a list of values: [{key: v} for v in values]."""
  return [{key: _plain(v)} for v in values]


def fixed(key: str, value) -> list[dict]:
  """One key held at one value (to combine with other sweeps)."""
  return sweep(key, [value])


def product(sweeps) -> list[dict]:
  """The cartesian product of sweeps, merging their dicts; the last sweep varies fastest."""
  return [_merge(parts) for parts in itertools.product(*sweeps)]


def zipit(sweeps) -> list[dict]:
  """Element-wise merge of sweeps of equal length."""
  sweeps = list(sweeps)
  lengths = {len(s) for s in sweeps}
  if len(lengths) > 1:
    raise ValueError(f'zipit needs sweeps of equal length, got lengths {sorted(lengths)}')
  return [_merge(parts) for parts in zip(*sweeps, strict=True)]


def linspace(low: float, high: float, num: int) -> list[float]:
  """An evenly spaced grid, both ends included."""
  return [float(v) for v in np.linspace(low, high, num)]


def logspace(low: float, high: float, num: int) -> list[float]:
  """A log-spaced grid from `low` to `high`, both ends included (learning rates, decays)."""
  return [float(v) for v in np.geomspace(low, high, num)]


def uniform(low: float, high: float, num: int, *, seed: int = 0) -> list[float]:
  """`num` draws from U[low, high), reproducible through `seed`."""
  return [float(v) for v in np.random.default_rng(seed).uniform(low, high, num)]


def loguniform(low: float, high: float, num: int, *, seed: int = 0) -> list[float]:
  """`num` draws whose logarithm is uniform in [log low, log high), reproducible via `seed`."""
  if low <= 0 or high <= low:
    raise ValueError(f'loguniform needs 0 < low < high, got low={low}, high={high}')
  logs = np.random.default_rng(seed).uniform(math.log(low), math.log(high), num)
  return [float(v) for v in np.exp(logs)]


def choice(values, num: int, *, seed: int = 0) -> list:
  """`num` draws (with replacement) from a list of values."""
  picks = np.random.default_rng(seed).integers(0, len(values), num)
  return [values[i] for i in picks]


def load(path: str) -> list[dict]:
  """Runs a sweep file's `get_sweep()` and checks that it is a list of override dicts."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'sweep file {path!r} not found')
  spec = importlib.util.spec_from_file_location('_sweep_file', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'sweep file {path} has no get_sweep() function')
  trials = module.get_sweep()
  if not isinstance(trials, list) or not trials:
    raise ValueError(f'{path}: get_sweep() must return a non-empty list of dicts')
  for i, trial in enumerate(trials):
    if not isinstance(trial, dict) or not all(isinstance(k, str) for k in trial):
      raise ValueError(f'{path}: trial {i} is {trial!r}, not a dict of config fields to values')
  return trials


def _merge(parts) -> dict:
  merged = {}
  for part in parts:
    clash = set(merged) & set(part)
    if clash:
      raise ValueError(f'the same key is swept twice: {", ".join(sorted(clash))}')
    merged.update(part)
  return merged


def _plain(value):
  # numpy scalars would reach config overrides and results.csv as 'np.float64(0.1)'.
  return value.item() if isinstance(value, np.generic) else value
