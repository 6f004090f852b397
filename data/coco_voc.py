"""COCO 2017 with VOC's 20 categories as semantic masks (`coco_voc_segmentation`), as torchvision's
segmentation reference trains and evaluates FCN / DeepLabV3 (references/segmentation/coco_utils.py).

The rule, torchvision's: only annotations of the 20 COCO categories that VOC has (CAT_LIST, in
VOC's label order) count; each pixel gets the VOC label of the instance masks covering it (the
largest label if several) and 255 (ignore) where two or more masks overlap; everything else is
background (0). Crowd annotations count like the others, as there. The train split keeps only
images whose VOC-category annotations cover more than 1000 pixels of area
(`_coco_remove_images_without_annotations`); validation keeps all 5000 images.
Reads the official COCO files from the manual dir like `coco2017` (data/coco.py). Examples carry
`objects` (the kept annotations' boxes and VOC labels) and `instance_ids` as well, in the Shapes
format, so detection-style consumers can read them too.
"""
from __future__ import annotations

import numpy as np
from etils import epath
from pycocotools import coco as coco_api

from data import shapes
from data.coco import _SPLITS, _ZIPS, Coco2017, CocoConfig, load_coco
from data.manual import ManualFiles

VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')
# The COCO category id of each VOC label (torchvision's CAT_LIST); 0 = background.
CAT_LIST = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
MIN_TRAIN_AREA = 1000


def voc_annotations(coco: coco_api.COCO, image_id: int) -> tuple[list[dict], np.ndarray]:
  """The image's annotations of VOC categories and their VOC labels."""
  voc_label = {cat: k for k, cat in enumerate(CAT_LIST) if k}
  anns = [a for a in coco.imgToAnns[image_id] if a['category_id'] in voc_label]
  return anns, np.asarray([voc_label[a['category_id']] for a in anns], np.int64)


def voc_semantic_mask(coco: coco_api.COCO, anns: list[dict], labels: np.ndarray, h: int,
                      w: int) -> tuple[np.ndarray, np.ndarray]:
  """(semantic mask uint8 [H, W] by torchvision's rule, instance ids uint8 [H, W] 1..K)."""
  if len(anns) > 255:
    raise ValueError(f'{len(anns)} VOC-category objects in one image; instance ids are uint8')
  target = np.zeros((h, w), np.uint8)
  count = np.zeros((h, w), np.int32)
  ids = np.zeros((h, w), np.uint8)
  for k, (ann, label) in enumerate(zip(anns, labels, strict=True)):
    inside = coco.annToMask(ann) > 0
    target[inside] = np.maximum(target[inside], label)
    count += inside
    ids[inside] = k + 1
  target[count > 1] = 255
  return target, ids


class CocoVocSegmentation(Coco2017):
  """COCO 2017 semantic segmentation in VOC's 21 classes (train ~92k kept / validation 5k)."""

  VERSION = Coco2017.VERSION
  RELEASE_NOTES = {'1.0.0': "torchvision's COCO -> VOC semantic masks (references/segmentation)."}
  BUILDER_CONFIGS = [CocoConfig(name='default', class_names=VOC_CLASS_NAMES,
                                description="VOC's 20 categories of COCO's instances.")]
  DEFAULT_CONFIG_NAME = 'default'

  @property
  def category_ids(self) -> tuple[int, ...]:
    """COCO's category id of each VOC label 1..20 (coco2017's map is by COCO's class names)."""
    return CAT_LIST[1:]

  def _generate_examples(self, manual_dir: epath.Path, folder: str):
    files = ManualFiles(manual_dir, _ZIPS)
    train = folder == _SPLITS['train']
    try:
      coco = load_coco(files, self._annotation_name(folder))
      index = 0
      for image_id in sorted(coco.imgs):
        anns, labels = voc_annotations(coco, image_id)
        if train and sum(a['area'] for a in anns) <= MIN_TRAIN_AREA:
          continue
        info = coco.imgs[image_id]
        h, w = int(info['height']), int(info['width'])
        mask, ids = voc_semantic_mask(coco, anns, labels, h, w)
        x, y, bw, bh = np.asarray([a['bbox'] for a in anns], np.float32).reshape(-1, 4).T
        yield index, {
            'id': str(image_id),
            'image': files.read(folder, info['file_name']),
            'mask': shapes.encode_png(mask),
            'instance_ids': shapes.encode_png(ids),
            'objects': {'box': np.stack([y, x, y + bh, x + bw], 1), 'label': labels,
                        'difficult': np.asarray([bool(a.get('iscrowd', 0)) for a in anns])},
        }
        index += 1
    finally:
      files.close()
