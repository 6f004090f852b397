"""Whole converted models as checkpoints: written like a workdir's, restored whole at init.

`tools/import_weights.py --arch fasterrcnn_resnet50_fpn IN.safetensors --out DIR` writes
DIR/checkpoints/0 (orbax, the same layout train.py writes, with only 'params' and
'batch_stats'), so DIR is accepted wherever a workdir's variables are read: eval.py --checkpoint
DIR, tools/predict.py --checkpoint DIR and --config.init.checkpoint=DIR. `--config.init.checkpoint`
takes every parameter from DIR when its parameter tree is exactly the model's (same
architecture and classes), and only the backbone otherwise (`training.pretrained`).
"""
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import traverse_util

from models.resnet import frozen_stages
from training.checkpoint import Checkpointer

_COLLECTIONS = ('params', 'batch_stats')


def write_checkpoint(variables: dict, directory: str) -> str:
  """Writes {'params', 'batch_stats'} as step 0 of DIR/checkpoints; returns that directory."""
  checkpoints = os.path.join(os.path.abspath(directory), 'checkpoints')
  checkpointer = Checkpointer(checkpoints)
  items = {c: variables[c] for c in _COLLECTIONS if c in variables}
  checkpointer.manager.save(0, args=ocp.args.Composite(
      state=ocp.args.StandardSave(items), data=ocp.args.JsonSave({})))
  checkpointer.manager.wait_until_finished()
  checkpointer.close()
  return checkpoints


def _shapes(tree) -> dict:
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree).items()}


def restore_whole(state, source: str):
  """`state` with all its variables from `source` (a workdir or a converted DIR) when the saved
  tree is exactly the model's; None otherwise (the caller falls back to the backbone)."""
  checkpoints = os.path.join(os.path.abspath(source), 'checkpoints')
  if source.endswith('.safetensors') or not os.path.isdir(checkpoints):
    return None
  saved = Checkpointer(checkpoints).restore_arrays()
  if saved is None or any(_shapes(getattr(state, c)) != _shapes(saved.get(c) or {})
                          for c in _COLLECTIONS):
    return None
  replaced = {c: jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), getattr(state, c),
                             saved.get(c) or {})
              for c in _COLLECTIONS}
  return state.replace(**replaced, opt_state=state.tx.init(replaced['params']))


def frozen_backbone_stages(config) -> tuple[str, ...]:
  """Parameter paths ('backbone/layer1_', ...) that `config.model.trainable_layers` < 5 keeps
  fixed: the model stops their gradient, and the optimizer must not decay them either."""
  trainable = config.model.get('trainable_layers', 5)
  return tuple(f'backbone/{p}' for p in frozen_stages(trainable))
