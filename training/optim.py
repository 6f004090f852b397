"""Optimizer and learning-rate schedule from `config.optimizer` (optax only).

Hyperparameters are injected (`optax.inject_hyperparams`) so that the learning rate is logged from
the optimizer state and sweeps can change it without rebuilding the optimizer.
"""
import functools
import math

import jax
import ml_collections
import optax

SCHEDULES = ('constant', 'cosine', 'step')
OPTIMIZERS = ('sgd', 'adamw')


def lr_multiplier(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The schedule's shape with peak 1: warmup (linear from 0), then constant, cosine or step decay.

  The learning rate at step t is always `peak * lr_multiplier(t)`, so a vectorised population can
  give every member its own peak and still follow the config's schedule.
  """
  warmup = opt.warmup_steps
  decay_steps = max(total_steps - warmup, 1)
  if opt.schedule == 'constant':
    main = optax.constant_schedule(1.0)
  elif opt.schedule == 'cosine':
    main = optax.cosine_decay_schedule(1.0, decay_steps)
  elif opt.schedule == 'step':
    boundaries = {round(f * decay_steps): opt.step_factor for f in opt.step_boundaries}
    main = optax.piecewise_constant_schedule(1.0, boundaries)
  else:
    raise ValueError(f'unknown optimizer.schedule {opt.schedule!r}; valid: {", ".join(SCHEDULES)}')
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), main], [warmup])


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The config's learning rate schedule: `opt.learning_rate * lr_multiplier(step)`."""
  peak, multiplier = opt.learning_rate, lr_multiplier(opt, total_steps)
  return lambda count: peak * multiplier(count)


def _module_mask(params, frozen):
  # An entry names a top-level module ('backbone') or a path prefix ('backbone/layer1_').
  def is_frozen(path) -> bool:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    return any(name.split('/')[0] == f if '/' not in f else name.startswith(f) for f in frozen)
  return jax.tree_util.tree_map_with_path(lambda path, _: is_frozen(path), params)


def _decay_mask(params):
  # Weight decay on kernels only: biases and norm scales are not decayed (standard practice).
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int, *,
                   scheduled: bool = True, frozen: tuple[str, ...] = ()):
  """Returns an optax GradientTransformation with injected learning_rate and weight_decay.

  `scheduled=False` injects the learning rate as a plain value that the caller sets before every
  update (a population sets each member's peak x `lr_multiplier(count)` itself). `frozen` names
  top-level parameter modules (e.g. 'backbone') or path prefixes ('backbone/layer1_') whose
  updates are zero, weight decay included.
  """
  if opt.name not in OPTIMIZERS:
    raise ValueError(f'unknown optimizer.name {opt.name!r}; valid: {", ".join(OPTIMIZERS)}')

  def build(learning_rate, weight_decay):
    if opt.name == 'sgd':
      base = optax.chain(
          optax.add_decayed_weights(weight_decay, mask=_decay_mask),
          optax.sgd(learning_rate, momentum=opt.momentum or None, nesterov=opt.nesterov))
    else:
      base = optax.adamw(learning_rate, b1=opt.b1, b2=opt.b2, weight_decay=weight_decay,
                         mask=_decay_mask)
    # Always in the chain (infinite norm: no clipping, the gradients pass unchanged), so that
    # turning clipping on to resume a diverged run keeps the optimizer state's structure.
    base = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm or math.inf), base)
    if frozen:
      base = optax.chain(base, optax.masked(optax.set_to_zero(), functools.partial(
          _module_mask, frozen=frozen)))
    return base

  return optax.inject_hyperparams(build)(
      learning_rate=make_schedule(opt, total_steps) if scheduled else opt.learning_rate,
      weight_decay=opt.weight_decay)
