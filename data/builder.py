"""The toolkit every dataset builder of ours shares: the feature spec, PNG encoding, instances.

`example_features` is the one tfds feature spec (CONTRACTS.md's batch keys come from it);
`finalize_instances` / `tight_boxes` turn an instance-id map into labels and tight boxes;
`LocalBuilderMixin` lets tfds load builders that live in this package.
"""
from __future__ import annotations

import inspect
import io

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from ops.joints import JointSet


def encode_png(array: np.ndarray, compress_level: int = 6) -> bytes:
  """PNG bytes of a uint8 [H, W] or [H, W, 3] array (tfds Image wants encoded bytes, not arrays).

  Noisy images barely compress, and uncompressed PNGs (level 0) decode ~2x faster, so the pipeline
  stores images with level 0 and the (very compressible) masks with the default.
  """
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(array)).save(buf, format='PNG',
                                                     compress_level=compress_level)
  return buf.getvalue()


def finalize_instances(image: np.ndarray, inst: np.ndarray, classes: np.ndarray,
                       mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Drops instances with no visible pixel, renumbers ids 1..K, computes tight boxes and the mask.

  `classes[k - 1]` is the class of instance id k. If `mask` is None the semantic mask is painted
  from the instances. `kept`: the input index (id - 1) of each remaining instance.
  """
  present = np.flatnonzero(np.bincount(inst.ravel(), minlength=len(classes) + 1)[1:]) + 1
  remap = np.zeros(256, np.uint8)
  remap[present] = np.arange(1, len(present) + 1)
  inst = remap[inst]
  labels = classes[present - 1].astype(np.int64)
  if mask is None:
    lut = np.zeros(256, np.uint8)
    lut[1:len(labels) + 1] = labels
    mask = lut[inst]
  return dict(image=image, mask=mask, instance_ids=inst, boxes=tight_boxes(inst, len(labels)),
              labels=labels, kept=present - 1)


def tight_boxes(inst: np.ndarray, num: int) -> np.ndarray:
  """float32 [num, 4] (y1, x1, y2, x2) around the pixels of ids 1..num; zeros for empty ids."""
  onehot = inst[None] == np.arange(1, num + 1, dtype=inst.dtype)[:, None, None]
  rows, cols = onehot.any(axis=2), onehot.any(axis=1)  # [num, H], [num, W]
  h, w = inst.shape
  y1 = np.argmax(rows, axis=1)
  y2 = h - np.argmax(rows[:, ::-1], axis=1)
  x1 = np.argmax(cols, axis=1)
  x2 = w - np.argmax(cols[:, ::-1], axis=1)
  boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.float32)
  return np.where(rows.any(axis=1)[:, None], boxes, 0.0).astype(np.float32)


class LocalBuilderMixin:
  """Works around tfds 4.9.10 needing the `importlib_resources` backport for builders in packages.

  `DatasetBuilder.code_path` references `importlib_resources` (declared by tfds only for
  Python < 3.9) for any builder defined inside a package; we answer with the source file instead.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    return epath.Path(inspect.getfile(cls))


def example_features(class_names, image_format: str = 'png', joints: JointSet | None = None,
                     difficult: bool = False, masks: bool = True,
                     phrases: bool = False) -> tfds.features.FeaturesDict:
  """The feature spec shared by every builder of ours.

  `joints`: pose data, keypoints [J, 3] per object in that joint set's order. `difficult`: a bool
  per object that evaluation ignores (VOC 'difficult', COCO crowds). `masks=False`: box-only data,
  without `mask` and `instance_ids`. `phrases`: a text phrase per object (dense captioning) and
  an image `caption`.
  """
  objects = {'box': tfds.features.Tensor(shape=(4,), dtype=np.float32),
             'label': tfds.features.ClassLabel(names=class_names)}
  if joints is not None:
    objects['keypoints'] = tfds.features.Tensor(shape=(joints.num_joints, 3), dtype=np.float32)
  if difficult:
    objects['difficult'] = tfds.features.Tensor(shape=(), dtype=np.bool_)
  if phrases:
    objects['phrase'] = tfds.features.Text()
  png = lambda: tfds.features.Image(shape=(None, None, 1), encoding_format='png')
  features = {
      'id': tfds.features.Text(),
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
      **({'mask': png(), 'instance_ids': png()} if masks else {}),
      'objects': tfds.features.Sequence(objects),
      **({'caption': tfds.features.Text()} if phrases else {}),
  }
  return tfds.features.FeaturesDict(features)
