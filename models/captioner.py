"""Image captioning: a CNN encoder and an LSTM decoder (Show and Tell; CS231n lecture 10).

The backbone's last feature map is averaged over space into one image vector, the decoder's
step-0 input (`models/rnn.py`). Training is teacher forcing on the true caption; at
inference (`train=False`) the model also decodes its own caption, so the shared eval step gets
tokens without knowing about captions.
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.rnn import CaptionDecoder


class ImageCaptioner(nn.Module):
  """`__call__(images, caption_tokens, *, train)` -> {'logits': float32 [B, T, V]}, plus, when
  not training, the decoded {'tokens': int32 [B, T], 'log_prob': float32 [B]}."""
  vocab_size: int
  backbone: str = 'vgg_small'
  embed_dim: int = 64
  hidden: int = 128
  cell: str = 'lstm'  # 'lstm' or 'rnn'.
  dropout_rate: float = 0.0
  beam_size: int = 1  # Inference decoding: 1 is greedy.
  frozen_backbone: bool = False  # Transfer learning with a fixed backbone.
  dtype: Any = None
  bn_axis_name: str | None = None

  def setup(self):
    self.decoder = CaptionDecoder(self.vocab_size, self.embed_dim, self.hidden, self.cell,
                                  self.dropout_rate, self.bn_axis_name)

  @nn.compact
  def encode(self, images: jax.Array, *, train: bool) -> jax.Array:
    """images [B, H, W, 3] -> the pooled last feature map float32 [B, C]."""
    features = backbone_features(self.backbone, images, train=train, frozen=self.frozen_backbone,
                                 dtype=self.dtype, bn_axis_name=self.bn_axis_name)
    return jnp.mean(features[max(features)], axis=(1, 2)).astype(jnp.float32)

  def __call__(self, images: jax.Array, caption_tokens: jax.Array, *,
               train: bool) -> dict[str, jax.Array]:
    features = self.encode(images, train=train)
    out = {'logits': self.decoder(features, caption_tokens, train=train)}
    if not train:
      out['tokens'], out['log_prob'] = self.decoder.decode(
          features, max_len=caption_tokens.shape[-1], beam_size=self.beam_size)
    return out

  def decode(self, images: jax.Array, *, max_len: int,
             beam_size: int = 1) -> tuple[jax.Array, jax.Array]:
    """images -> (tokens int32 [B, max_len], log_prob float32 [B]); see `CaptionDecoder.decode`."""
    return self.decoder.decode(self.encode(images, train=False), max_len=max_len,
                               beam_size=beam_size)
