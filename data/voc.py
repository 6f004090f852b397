"""Pascal VOC 2012 semantic + instance segmentation as a tfds builder (`voc2012_segmentation`).

tfds ships `voc/2012` for detection only, so this builder reads the official
`VOCtrainval_11-May-2012.tar` (or its extracted `VOCdevkit/VOC2012` folder) from the manual dir and
writes examples in the same format as Shapes (see `data/shapes.py`): the JPEG image as stored, the
`SegmentationClass` palette indices as `mask` (255 = ignore border), the `SegmentationObject`
indices as `instance_ids` (border -> 0), and per-instance label (majority class of its pixels) and
tight box.
"""
from __future__ import annotations

import os
import shutil
import tarfile

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data import shapes

CLASS_NAMES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
TAR_NAME = 'VOCtrainval_11-May-2012.tar'
_SPLITS = {'train': 'train', 'validation': 'val'}
_NEEDED = ('Segmentation', 'SegmentationClass', 'SegmentationObject', 'JPEGImages')


def _extract(tar_path: epath.Path, out_dir: epath.Path) -> epath.Path:
  """Extracts the folders the segmentation builder needs (tfds' extractor needs TensorFlow).

  Extracts into a temporary sibling and renames, so an interrupted run never leaves a half tree.
  """
  if out_dir.exists():
    return out_dir
  tmp = out_dir.parent / (out_dir.name + '.incomplete')
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  with tarfile.open(os.fspath(tar_path)) as tar:
    members = (m for m in tar if m.isfile() and any(f'/{d}/' in f'/{m.name}' for d in _NEEDED))
    tar.extractall(os.fspath(tmp), members=members, filter='data')
  tmp.rename(out_dir)
  return out_dir


def _find_voc_root(manual_dir: epath.Path, dl_manager) -> epath.Path:
  """The VOC2012 folder: already extracted under manual_dir, or extracted from the tar."""
  for cand in (manual_dir / 'VOCdevkit' / 'VOC2012', manual_dir / 'VOC2012', manual_dir):
    if (cand / 'ImageSets' / 'Segmentation').exists():
      return cand
  tar = manual_dir / TAR_NAME
  if tar.exists():
    extracted = _extract(tar, epath.Path(dl_manager.download_dir) / 'extracted' / 'voc2012_seg')
    for cand in (extracted / 'VOCdevkit' / 'VOC2012', extracted / 'VOC2012'):
      if (cand / 'ImageSets' / 'Segmentation').exists():
        return cand
  raise FileNotFoundError(
      f'Pascal VOC 2012 not found in manual dir {manual_dir}: put {TAR_NAME} there (or its '
      f'extracted VOCdevkit/ folder). Set data.manual_dir to use another folder.')


def read_instances(class_png: str, object_png: str | None) -> dict[str, np.ndarray]:
  """mask, instance_ids, boxes and labels of one VOC image from its two palette PNGs."""
  mask = np.asarray(Image.open(class_png), np.uint8)  # Palette indices = class ids, 255 = border.
  if object_png is None or not os.path.exists(object_png):
    ids = np.zeros_like(mask)
  else:
    ids = np.asarray(Image.open(object_png), np.uint8).copy()
    ids[ids == 255] = 0
  num = int(ids.max())
  classes = np.zeros((num,), np.int64)
  for k in range(1, num + 1):  # A loop over instances (tens), not pixels.
    cls = mask[(ids == k) & (mask != 255)]
    classes[k - 1] = np.bincount(cls, minlength=len(CLASS_NAMES)).argmax() if cls.size else 0
  # Instances whose pixels carry no class (all border) would get label 0; drop them.
  ids[np.isin(ids, np.flatnonzero(classes == 0) + 1)] = 0
  ex = shapes.finalize_instances(None, ids, classes, mask=mask)
  ex.pop('image')
  return ex


class Voc2012Segmentation(shapes.LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Pascal VOC 2012 segmentation (train 1464 / validation 1449), Shapes example format."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Semantic + instance masks from the official trainval tar.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='default', description='VOC 2012 seg.')]
  DEFAULT_CONFIG_NAME = 'default'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download {TAR_NAME} from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and place it '
      '(or its extracted VOCdevkit/ folder) in the manual dir.')

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=shapes.example_features(CLASS_NAMES, image_format='jpeg'),
        disable_shuffling=True,  # Record order = the official image list order.
        homepage='http://host.robots.ox.ac.uk/pascal/VOC/voc2012/',
    )

  def _split_generators(self, dl_manager):
    root = _find_voc_root(epath.Path(dl_manager.manual_dir), dl_manager)
    out = {}
    for split, name in _SPLITS.items():
      list_file = root / 'ImageSets' / 'Segmentation' / f'{name}.txt'
      if list_file.exists():
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        out[split] = self._generate_examples(root, ids)
    if not out:
      raise FileNotFoundError(f'No train.txt/val.txt under {root}/ImageSets/Segmentation')
    return out

  def _generate_examples(self, root: epath.Path, ids: list[str]):
    for i, image_id in enumerate(ids):
      ex = read_instances(os.fspath(root / 'SegmentationClass' / f'{image_id}.png'),
                          os.fspath(root / 'SegmentationObject' / f'{image_id}.png'))
      yield i, {
          'id': image_id,
          'image': (root / 'JPEGImages' / f'{image_id}.jpg').read_bytes(),
          'mask': shapes.encode_png(ex['mask']),
          'instance_ids': shapes.encode_png(ex['instance_ids']),
          'objects': {'box': ex['boxes'].reshape(-1, 4), 'label': ex['labels']},
      }
