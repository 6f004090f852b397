"""Backbone names -> modules, and the name lookup shared with `models.get_model`."""
import functools
from collections.abc import Callable, Mapping

import jax
from flax import linen as nn

from models.mobilenet import MOBILENET_V1, MOBILENET_V1_SMALL, MobileNetV1
from models.resnet import RESNET18, RESNET50, RESNET101, ResNet
from models.vgg import VGG, VGG16, VGG_SMALL

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    'vgg_small': functools.partial(VGG, **VGG_SMALL),
    'vgg16': functools.partial(VGG, **VGG16),
    'resnet18': functools.partial(ResNet, **RESNET18),
    'resnet50': functools.partial(ResNet, **RESNET50),
    'resnet101': functools.partial(ResNet, **RESNET101),
    'mobilenet_v1': functools.partial(MobileNetV1, **MOBILENET_V1),
    'mobilenet_v1_small': functools.partial(MobileNetV1, **MOBILENET_V1_SMALL),
}


def lookup(table: Mapping[str, Callable], name: str, what: str) -> Callable:
  if name not in table:
    raise ValueError(f'unknown {what} {name}; valid: {", ".join(sorted(table))}')
  return table[name]


def get_backbone(name: str, /, **kwargs) -> nn.Module:
  """Builds a backbone; kwargs (dtype, bn_axis_name, ...) go to its constructor."""
  return lookup(BACKBONES, name, 'backbone')(**kwargs)


def backbone_features(name: str, images, *, train: bool, frozen: bool = False,
                      module_name: str = 'backbone', extent=None, **kwargs) -> dict:
  """Runs backbone `name` as a submodule of the calling (compact) module; returns its features.

  `frozen` (transfer learning with a fixed backbone): batch norm uses its running statistics and
  no gradient flows into the backbone; the optimizer leaves its parameters alone as well
  (`make_optimizer(..., frozen=...)`), so weight decay cannot shrink them either.
  `extent` [B, 2]: each image's padded size inside the canvas (ResNet's `extent`; ResNets only).
  """
  extra = {} if extent is None else {'extent': extent}
  out = get_backbone(name, name=module_name, **kwargs)(images, train=train and not frozen, **extra)
  features = out['features']
  return jax.lax.stop_gradient(features) if frozen else features
