"""torchvision's FCN-ResNet and SSD300-VGG16 state dicts -> our variables, no torch needed.

`convert(state_dict, arch)` maps every tensor of torchvision's `fcn_resnet50`, `fcn_resnet101` or
`ssd300_vgg16` (numpy arrays, e.g. read from safetensors) onto our `fcn_resnet` / `ssd_vgg16`
built with `model_kwargs(arch)`; `check` compares the result with that model's parameter tree.
A key without a rule, or a shape our model does not have, fails with the full list.

FCN: our modules carry torchvision's names ('.' before an index -> '_'), so one rule maps all:
conv `weight` [O, I, kh, kw] -> `kernel` [kh, kw, I, O], batch norm `weight` -> `scale`,
`running_mean` / `running_var` -> batch_stats `mean` / `var`.
SSD: `models/ssd_vgg16.py` names its layers after the paper (conv1_1 ... conv5_3, fc6, fc7,
extras, heads); `_ssd_rules` lists torchvision's Sequential indices for them. The box heads'
(dx, dy, dw, dh) outputs become our (dy, dx, dh, dw).
"""
import re

import numpy as np

from models.torchvision_weights import check_shapes, map_state_dict

# (our model name, keywords of `models.get_model`) of each torchvision architecture; the
# *_torchvision configs set the same values as config fields. num_classes comes from the weights.
MODELS = {
    'fcn_resnet50': ('fcn_resnet', dict(backbone='resnet50')),
    'fcn_resnet101': ('fcn_resnet', dict(backbone='resnet101')),
    'ssd300_vgg16': ('ssd_vgg16', {}),
}

_INDEX = re.compile(r'\.(\d+)(?=\.|$)')
_STATS = {'running_mean': 'mean', 'running_var': 'var'}


def _conv(w):
  return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO.


def _by_name(module: str, leaf: str, value: np.ndarray):
  """(path, array) of a key whose module our model names like torchvision (index -> '_')."""
  path = tuple(_INDEX.sub(r'_\1', module).split('.'))
  if leaf in _STATS:
    return ('batch_stats', *path, _STATS[leaf]), value
  if leaf == 'bias':
    return ('params', *path, 'bias'), value
  if leaf == 'weight' and value.ndim == 4:
    return ('params', *path, 'kernel'), _conv(value)
  if leaf == 'weight' and value.ndim == 1:
    return ('params', *path, 'scale'), value
  return None


def _ssd_names() -> dict:
  """torchvision's ssd300_vgg16 module names -> our module paths (models/ssd_vgg16.py)."""
  names = {}
  convs = [f'conv{s}_{i}' for s, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)]
  for index, name in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21), convs[:10], strict=True):
    names[f'backbone.features.{index}'] = ('backbone', name)
  for index, name in zip((1, 3, 5), convs[10:], strict=True):
    names[f'backbone.extra.0.{index}'] = ('backbone', name)
  names['backbone.extra.0.7.1'] = ('backbone', 'fc6')
  names['backbone.extra.0.7.3'] = ('backbone', 'fc7')
  for i in range(4):
    names[f'backbone.extra.{i + 1}.0'] = ('backbone', f'extra{i}_reduce')
    names[f'backbone.extra.{i + 1}.2'] = ('backbone', f'extra{i}')
  for k in range(6):
    names[f'head.classification_head.module_list.{k}'] = (f'class_head{k}',)
    names[f'head.regression_head.module_list.{k}'] = (f'box_head{k}',)
  return names


_SSD_NAMES = _ssd_names()
_BOX_ORDER = [1, 0, 3, 2]  # (dx, dy, dw, dh) -> (dy, dx, dh, dw).


def _box_rows(w):
  """Output rows [A * 4, ...] of (dx, dy, dw, dh) per default box -> (dy, dx, dh, dw)."""
  return w.reshape(-1, 4, *w.shape[1:])[:, _BOX_ORDER].reshape(w.shape)


def _ssd_rule(module: str, leaf: str, value: np.ndarray):
  if module == 'backbone' and leaf == 'scale_weight':
    return ('params', 'backbone', 'l2norm_scale'), value
  if module not in _SSD_NAMES:
    return None
  value = _box_rows(value) if module.startswith('head.regression') else value
  return ('params', *_SSD_NAMES[module], 'bias' if leaf == 'bias' else 'kernel'), (
      value if leaf == 'bias' else _conv(value))


def num_classes_of(state_dict: dict, arch: str) -> int:
  """The class count (background included) torchvision's `arch` weights predict."""
  _check_arch(arch)
  if arch.startswith('ssd'):  # 4 default boxes per cell on conv4_3.
    return int(np.shape(state_dict['head.classification_head.module_list.0.weight'])[0]) // 4
  return int(np.shape(state_dict['classifier.4.weight'])[0])


def _check_arch(arch: str):
  if arch not in MODELS:
    raise ValueError(f'unknown arch {arch!r}; valid: {", ".join(sorted(MODELS))}')


def model_kwargs(arch: str, num_classes: int) -> tuple[str, dict]:
  """(our model name, keywords) that make our model torchvision's `arch`."""
  _check_arch(arch)
  name, kwargs = MODELS[arch]
  return name, {**kwargs, 'num_classes': num_classes}


def _map_key(key: str, value: np.ndarray, arch: str):
  """One torchvision key -> (our path, array); () to skip it; None if no rule applies."""
  module, _, leaf = key.rpartition('.')
  if leaf == 'num_batches_tracked':
    return ()
  if arch.startswith('ssd'):
    return _ssd_rule(module, leaf, value)
  return _by_name(module, leaf, value)


def convert(state_dict: dict, arch: str) -> dict:
  """torchvision's `arch` state dict (numpy arrays) -> {'params': ..., 'batch_stats': ...}.

  ValueError listing every key no rule maps; `check` then compares it with our model.
  """
  _check_arch(arch)
  return map_state_dict(state_dict, lambda key, value: _map_key(key, value, arch), arch)


def check(variables: dict, arch: str, num_classes: int) -> int:
  """The number of arrays; ValueError listing every missing, extra or misshapen one."""
  from models import get_model

  name, kwargs = model_kwargs(arch, num_classes)
  size = 300 if arch.startswith('ssd') else 64
  return check_shapes(variables, get_model(name, **kwargs), arch, size)
