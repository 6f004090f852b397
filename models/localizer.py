"""Classification + localization: one CNN, two heads (CS231n lecture 11; OverFeat's recipe).

The class head scores the globally pooled last feature map (softmax over the classes); the box head
regresses one box as (x, y, w, h) / image size from the flattened feature map at
`feature_stride`, which keeps the spatial layout that global pooling would throw away. Trained with
a weighted sum of the two losses (`losses/localization.py`).
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.layers import RegressionHead


class Localizer(nn.Module):
  """Returns {'logits': float32 [B, num_classes], 'box': float32 [B, 4] (x, y, w, h) / size}."""
  num_classes: int  # Object classes (no background: every image holds one object).
  backbone: str = 'vgg_small'
  feature_stride: int = 32  # The feature map the box head flattens.
  hidden: int = 256
  dropout_rate: float = 0.0
  frozen_backbone: bool = False  # Transfer learning with a fixed backbone.
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    features = backbone_features(self.backbone, images, train=train, frozen=self.frozen_backbone,
                                 dtype=self.dtype, bn_axis_name=self.bn_axis_name)
    pooled = jnp.mean(features[max(features)], axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='class_head')(pooled)
    box = RegressionHead(4, self.hidden, self.dropout_rate, self.dtype, self.bn_axis_name,
                         name='box_head')(
        features[self.feature_stride], train=train)
    return {'logits': logits.astype(jnp.float32), 'box': box}
