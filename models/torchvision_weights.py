"""torchvision ResNet weights <-> our flax ResNet variables, through safetensors (no torch needed).

The CLI that checks a file against our model is `python -m tools.import_weights` (how to make the
file is in its docstring); `training/pretrained.py` loads such a file as a backbone init.

Key mapping (models/resnet.py names modules after torchvision's): a '.'-separated index joins its
module with '_' (`layer1.0.downsample.1` -> `layer1_0/downsample_1`); conv `weight` [O, I, kh, kw]
-> `kernel` [kh, kw, I, O]; linear `weight` [O, I] -> `kernel` [I, O]; batch norm `weight` ->
`scale`, `running_mean`/`running_var` -> batch_stats `mean`/`var`; `num_batches_tracked` is unused.
"""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from models.backbones import get_backbone

_INDEX = re.compile(r'\.(\d+)(?=\.|$)')
_STATS = {'running_mean': 'mean', 'running_var': 'var'}


def torchvision_to_flax(state_dict: dict) -> dict:
  """A torchvision ResNet state dict (numpy arrays) -> {'params': ..., 'batch_stats': ...}."""
  flat = {}
  for key, value in state_dict.items():
    module, _, leaf = _INDEX.sub(r'_\1', key).rpartition('.')
    path = tuple(module.split('.'))
    value = np.asarray(value)
    if leaf == 'num_batches_tracked':
      continue
    if leaf in _STATS:
      flat[('batch_stats',) + path + (_STATS[leaf],)] = value
    elif leaf == 'bias':
      flat[('params',) + path + ('bias',)] = value
    elif leaf == 'weight' and value.ndim == 4:
      flat[('params',) + path + ('kernel',)] = value.transpose(2, 3, 1, 0)
    elif leaf == 'weight' and value.ndim == 2:
      flat[('params',) + path + ('kernel',)] = value.T
    elif leaf == 'weight' and value.ndim == 1:
      flat[('params',) + path + ('scale',)] = value
    else:
      raise ValueError(f'cannot map torchvision key {key!r} with shape {value.shape}')
  return traverse_util.unflatten_dict(flat)


def flax_to_torchvision(variables: dict) -> dict:
  """The inverse of `torchvision_to_flax` (batch norms get `num_batches_tracked` = 0)."""
  out = {}
  for (collection, *path, leaf), value in traverse_util.flatten_dict(variables).items():
    module = '.'.join(re.sub(r'_(\d+)$', r'.\1', p) for p in path)
    value = np.asarray(value)
    if collection == 'batch_stats':
      out[f'{module}.running_{leaf}'] = value
      out[f'{module}.num_batches_tracked'] = np.zeros((), np.int64)
    elif leaf == 'kernel':
      out[f'{module}.weight'] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    else:
      out[f'{module}.{"weight" if leaf == "scale" else leaf}'] = value
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


def load_safetensors(path: str) -> dict:
  """Our variables from a torchvision ResNet state dict saved as safetensors."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found; see tools/import_weights.py for how to make it')
  return torchvision_to_flax(load_file(path))


def save_safetensors(variables: dict, path: str):
  """Writes our ResNet variables as a torchvision state dict (loadable by torch too)."""
  save_file(flax_to_torchvision(variables), path)


def mismatches(want: dict, got: dict) -> list[str]:
  """Missing, unexpected and misshapen entries of {path tuple: shape} `got` against `want`."""
  want = {k: tuple(v) for k, v in want.items()}
  got = {k: tuple(v) for k, v in got.items()}
  problems = [f'missing {"/".join(k)} {want[k]}' for k in sorted(want.keys() - got.keys())]
  problems += [f'unexpected {"/".join(k)} {got[k]}' for k in sorted(got.keys() - want.keys())]
  problems += [f'{"/".join(k)}: {got[k]} != our {want[k]}' for k in sorted(want.keys() & got.keys())
               if got[k] != want[k]]
  return problems


def check_shapes(variables: dict, model, what: str, image_size: int = 64) -> int:
  """The number of arrays `model` has; ValueError listing every array of `variables` that is
  missing, extra or misshapen against them (`what` names the model in the message)."""
  expected = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3)), train=False))
  shapes = lambda tree: {k: v.shape for k, v in traverse_util.flatten_dict(tree).items()}
  want = shapes(expected)
  problems = mismatches(want, shapes(variables))
  if problems:
    raise ValueError(f'{len(problems)} arrays do not fit our {what}: ' + '; '.join(problems))
  return len(want)


def map_state_dict(state_dict: dict, map_key, what: str) -> dict:
  """{'params': ..., 'batch_stats': ...} from a torchvision state dict (numpy arrays).

  `map_key(key, array)` returns (our path, array), () for a key we drop, or None where no rule
  maps it; ValueError listing every such key.
  """
  flat, unknown = {}, []
  for key, value in state_dict.items():
    mapped = map_key(key, np.asarray(value))
    if mapped is None:
      unknown.append(f'{key} {tuple(np.shape(value))}')
    elif mapped:
      path, array = mapped
      flat[path] = np.ascontiguousarray(array, dtype=np.float32)
  if unknown:
    raise ValueError(f'{len(unknown)} torchvision keys of {what} have no place in our model: '
                     + ', '.join(unknown))
  return traverse_util.unflatten_dict(flat)


def check_against_model(variables: dict, arch: str, num_classes: int | None = None):
  """Raises ValueError naming every missing, extra or misshapen entry against our `arch`."""
  return check_shapes(variables, get_backbone(arch, num_classes=num_classes), arch)
