"""Detection datasets read through tfds's own builders: Pascal VOC 2007/2012 and COCO 2017.

tfds stores boxes as fractions (ymin, xmin, ymax, xmax) and labels without a background class;
an adapter turns a record (image already decoded by the pipeline) into the example format of
`data/shapes.py`: boxes in absolute pixels, labels 1..C-1 with 0 = background, a semantic `mask`
that is all 'ignore' (these builders carry no masks) and no instance ids. `difficult` marks boxes
that evaluation ignores: VOC's 'difficult' objects, COCO's crowd regions.

The registry names are `voc_detection` (variants '2007', '2012') and `coco_detection` (variant
'2017'). Reading a prepared dataset needs no TensorFlow, but tfds 4.9.10's builders need it to
prepare (VOC reads its XML through `tf.io.gfile`) and COCO's even for its metadata (`tf.int64` in
`_info`); prepare them once where TensorFlow is installed (`tfds build voc/2007
--file_format=array_record`) and point `data.data_dir` there.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds


def _objects_to_example(image: np.ndarray, objects: dict, ignore_key: str) -> dict:
  h, w = image.shape[:2]
  boxes = np.asarray(objects['bbox'], np.float32).reshape(-1, 4)
  return dict(
      image=image,
      mask=np.full((h, w), 255, np.uint8),  # No semantic labels: every pixel is 'ignore'.
      boxes=boxes * np.asarray([h, w, h, w], np.float32),
      labels=np.asarray(objects['label'], np.int32).reshape(-1) + 1,  # 0 is the background.
      difficult=np.asarray(objects[ignore_key], bool).reshape(-1),
  )


@dataclasses.dataclass(frozen=True)
class DetectionAdapter:
  """A tfds detection builder and how its records become our examples."""
  builder_name: str  # The tfds registered name, e.g. 'voc'.
  to_example: Callable[[np.ndarray, dict], dict]  # (decoded image, raw record) -> example.

  @property
  def builder_cls(self):
    return tfds.builder_cls(self.builder_name)

  def class_names(self, builder) -> list[str]:
    return ['background'] + list(builder.info.features['objects']['label'].names)


ADAPTERS = {
    'voc_detection': DetectionAdapter(
        'voc', lambda image, raw: _objects_to_example(image, raw['objects'], 'is_difficult')),
    'coco_detection': DetectionAdapter(
        'coco', lambda image, raw: _objects_to_example(image, raw['objects'], 'is_crowd')),
}
