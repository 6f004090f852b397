"""Live training state of a session: checkpoint (de)serialisation, morphs, one epoch, baselines."""
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from hyperquest import model, net2net
from hyperquest.dataset import make_dataset
from hyperquest.rules import DEFAULT_HP


def _template(hp):
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                        model.param_shapes(hp["width"], hp["depth"]))
  return {"params": params, "opt": model.optimizer(hp["lr"], hp["wd"]).init(params)}


def fresh_state(hp, seed):
  params = model.init_params(hp["width"], hp["depth"], seed)
  return {"params": params, "opt": model.optimizer(hp["lr"], hp["wd"]).init(params)}


def to_blob(state):
  return flax.serialization.to_bytes(jax.device_get(state))


def from_blob(blob, hp):
  return flax.serialization.from_bytes(_template(hp), blob)


def dataset(settings, seed):
  return make_dataset(seed, settings.train_size, settings.val_size, settings.num_classes)


def train_one_epoch(settings, state, old_hp, new_hp, data, seed):
  """Applies new_hp to `state` (morphing the architecture if needed), trains one epoch.

  Returns (new_state, metrics). An architecture change restarts the momentum (its shapes
  changed); lr / weight decay are written into the optimizer state and dropout is an input.
  """
  params, opt = state["params"], state["opt"]
  if (old_hp["width"], old_hp["depth"]) != (new_hp["width"], new_hp["depth"]):
    params = net2net.morph(params, old_hp, new_hp, np.random.default_rng(seed))
    params = jax.tree.map(jnp.asarray, params)
    opt = model.optimizer(new_hp["lr"], new_hp["wd"]).init(params)
  opt = model.set_hparams(opt, new_hp["lr"], new_hp["wd"])
  params, opt, metrics = model.train_epoch(params, opt, data["train"], new_hp,
                                           settings.batch_size, seed)
  metrics.update(model.evaluate(params, data["val"], new_hp, settings.eval_batch_size))
  # NaN/inf (a diverged net) is stored as None so JSON stays valid; accuracy stays meaningful.
  metrics = {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()}
  return {"params": params, "opt": opt}, metrics


def baseline_runs(settings, dataset_seed):
  """Best val accuracy of the default configuration for each of settings.baseline_seeds seeds."""
  data = dataset(settings, dataset_seed)
  runs = []
  for s in range(settings.baseline_seeds):
    state = fresh_state(DEFAULT_HP, seed=s)
    best = 0.0
    for e in range(settings.baseline_epochs):
      state, m = train_one_epoch(settings, state, DEFAULT_HP, DEFAULT_HP, data,
                                 seed=10_000 * (s + 1) + e)
      best = max(best, m["val_acc"] or 0.0)
    runs.append(best)
  return runs
