"""Transfer learning: start a model's `backbone` from one of our runs or from torchvision weights.

`config.init.checkpoint` names a workdir of ours (its latest checkpoint; any task whose model has
a `backbone` submodule of the same architecture, e.g. a localization run for pose) or a
torchvision ResNet state dict saved as `.safetensors` (`tools/import_weights.py`). Every other
parameter keeps its random initialisation. `config.init.freeze_backbone` then keeps the backbone
fixed (`frozen_modules` for the optimizer; the models run its batch norm on running statistics).
"""
import os

import jax
import jax.numpy as jnp
from flax import traverse_util

from models import torchvision_weights
from tasks.base import freeze_backbone
from training import model_init
from training.checkpoint import Checkpointer
from training.errors import UserError

BACKBONE = 'backbone'  # The submodule name every model gives its backbone.


def frozen_modules(config) -> tuple[str, ...]:
  """The top-level parameter modules the optimizer must leave alone."""
  return (BACKBONE,) if freeze_backbone(config) else model_init.frozen_backbone_stages(config)


def backbone_variables(source: str) -> dict:
  """{'params': ..., 'batch_stats': ...} of the backbone saved in `source`."""
  if source.endswith('.safetensors'):
    variables = torchvision_weights.load_safetensors(source)
    variables['params'].pop('fc', None)  # torchvision's ImageNet classifier; ours have heads.
    return variables
  checkpoints = os.path.join(os.path.abspath(source), 'checkpoints')
  saved = Checkpointer(checkpoints).restore_arrays() if os.path.isdir(checkpoints) else None
  if saved is None:
    raise UserError(f'config.init.checkpoint={source!r}: no checkpoint in {source}/checkpoints; '
                    'give a workdir written by train.py or a .safetensors file')
  if BACKBONE not in saved['params']:
    raise UserError(f'config.init.checkpoint={source!r}: its model has no {BACKBONE!r} module')
  return {c: saved[c][BACKBONE] for c in ('params', 'batch_stats') if BACKBONE in saved[c]}


def load_backbone(state, source: str):
  """`state` with its backbone parameters and batch statistics replaced by those in `source`;
  every variable when `source` holds exactly this model (`model_init.restore_whole`)."""
  whole = model_init.restore_whole(state, source)
  if whole is not None:
    return whole
  loaded = backbone_variables(source)
  replaced = {}
  for collection in ('params', 'batch_stats'):
    target = getattr(state, collection).get(BACKBONE, {})
    want = {k: v.shape for k, v in traverse_util.flatten_dict(target).items()}
    got = {k: v.shape for k, v in traverse_util.flatten_dict(loaded.get(collection, {})).items()}
    problems = torchvision_weights.mismatches(want, got)
    if problems:
      raise UserError(f'config.init.checkpoint={source!r} does not fit this model\'s backbone '
                       f'({collection}): ' + '; '.join(problems[:8]))
    replaced[collection] = {**getattr(state, collection), BACKBONE: jax.tree.map(
        lambda t, x: jnp.asarray(x, t.dtype), target, loaded.get(collection, {}))}
  return state.replace(**replaced, opt_state=state.tx.init(replaced['params']))
