"""Pascal VOC as tfds builders: 2012 segmentation and 2007 / 2012 detection, without TensorFlow.

`voc2012_segmentation` reads the official
`VOCtrainval_11-May-2012.tar` (or its extracted `VOCdevkit/VOC2012` folder) from the manual dir and
writes examples in the same format as Shapes (see `data/shapes.py`): the JPEG image as stored, the
`SegmentationClass` palette indices as `mask` (255 = ignore border), the `SegmentationObject`
indices as `instance_ids` (border -> 0), and per-instance label (majority class of its pixels) and
tight box.

`voc_detection` (configs '2007', '2012') reads the boxes of Annotations/*.xml for the lists of
ImageSets/Main: the JPEG image, `objects` {box, label, difficult}, no masks. VOC boxes are 1-based
inclusive pixel indices; we store (ymin - 1, xmin - 1, ymax, xmax), the Shapes convention (pixel i
spans [i, i + 1)). tfds' own `voc` builder reads the XML with `tf.io.gfile`, hence this one.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data.builder import LocalBuilderMixin, encode_png, example_features, finalize_instances

CLASS_NAMES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
TAR_NAME = 'VOCtrainval_11-May-2012.tar'
_SPLITS = {'train': 'train', 'validation': 'val'}
_NEEDED = ('ImageSets/Segmentation', 'SegmentationClass', 'SegmentationObject', 'JPEGImages')


def _extract(tar_path: epath.Path, out_dir: epath.Path, needed: tuple[str, ...]) -> epath.Path:
  """Extracts the folders in `needed` from a VOC tar (tfds' extractor needs TensorFlow).

  Extracts into a temporary sibling and renames, so an interrupted run never leaves a half tree.
  """
  if out_dir.exists():
    return out_dir
  tmp = out_dir.parent / (out_dir.name + '.incomplete')
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  with tarfile.open(os.fspath(tar_path)) as tar:
    members = (m for m in tar if m.isfile() and any(f'/{d}/' in f'/{m.name}' for d in needed))
    tar.extractall(os.fspath(tmp), members=members, filter='data')
  tmp.rename(out_dir)
  return out_dir


def find_voc_roots(manual_dir: epath.Path, dl_manager, year: str, tar_names: tuple[str, ...],
                   needed: tuple[str, ...], tag: str) -> list[epath.Path]:
  """The VOC<year> folders: one extracted under manual_dir, and one per tar found there.

  A year can come as several tars (VOC 2007: trainval and test), so callers look for each
  ImageSets list in every root. `tag` names the extraction cache (different builders extract
  different `needed` folders from the same tar).
  """
  roots = [c for c in (manual_dir / 'VOCdevkit' / f'VOC{year}', manual_dir / f'VOC{year}',
                       manual_dir) if (c / 'ImageSets').exists()][:1]
  if roots:  # An extracted tree wins over the tars: no second copy on disk.
    return roots
  for name in tar_names:
    if (manual_dir / name).exists():
      out = epath.Path(dl_manager.download_dir) / 'extracted' / f'{name.split(".")[0]}_{tag}'
      out = _extract(manual_dir / name, out, needed)
      roots += [c for c in (out / 'VOCdevkit' / f'VOC{year}', out / f'VOC{year}') if c.exists()]
  if not roots:
    raise FileNotFoundError(
        f'Pascal VOC {year} not found in manual dir {manual_dir}: put {" and ".join(tar_names)} '
        'there (or the extracted VOCdevkit/ folder). Set data.manual_dir to use another folder.')
  return roots


def read_list(roots: list[epath.Path], kind: str, name: str) -> tuple[epath.Path, list[str]]:
  """(root, image ids) of ImageSets/<kind>/<name>.txt in the first root that has it."""
  for root in roots:
    list_file = root / 'ImageSets' / kind / f'{name}.txt'
    if list_file.exists():
      return root, [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
  return roots[0], []


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
  ex = finalize_instances(None, ids, classes, mask=mask)
  ex.pop('image')
  return ex


class Voc2012Segmentation(LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
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
        features=example_features(CLASS_NAMES, image_format='jpeg'),
        disable_shuffling=True,  # Record order = the official image list order.
        homepage='http://host.robots.ox.ac.uk/pascal/VOC/voc2012/',
    )

  def _split_generators(self, dl_manager):
    roots = find_voc_roots(epath.Path(dl_manager.manual_dir), dl_manager, '2012', (TAR_NAME,),
                           _NEEDED, tag='seg')
    out = {}
    for split, name in _SPLITS.items():
      root, ids = read_list(roots, 'Segmentation', name)
      if ids:
        out[split] = self._generate_examples(root, ids)
    if not out:
      raise FileNotFoundError(f'No train.txt/val.txt under {roots}/ImageSets/Segmentation')
    return out

  def _generate_examples(self, root: epath.Path, ids: list[str]):
    for i, image_id in enumerate(ids):
      ex = read_instances(os.fspath(root / 'SegmentationClass' / f'{image_id}.png'),
                          os.fspath(root / 'SegmentationObject' / f'{image_id}.png'))
      yield i, {
          'id': image_id,
          'image': (root / 'JPEGImages' / f'{image_id}.jpg').read_bytes(),
          'mask': encode_png(ex['mask']),
          'instance_ids': encode_png(ex['instance_ids']),
          'objects': {'box': ex['boxes'].reshape(-1, 4), 'label': ex['labels']},
      }


_DETECTION_NEEDED = ('Annotations', 'ImageSets/Main', 'JPEGImages')
_DETECTION_SPLITS = {'train': 'train', 'validation': 'val', 'test': 'test'}
_DETECTION_TARS = {'2007': ('VOCtrainval_06-Nov-2007.tar', 'VOCtest_06-Nov-2007.tar'),
                   '2012': (TAR_NAME,)}


def read_annotation(xml_text: str, class_names=CLASS_NAMES) -> dict[str, np.ndarray]:
  """boxes float32 [K, 4] (y1, x1, y2, x2), labels int64 [K] (indices into `class_names`, VOC's
  1..20 by default), difficult bool [K]."""
  boxes, labels, difficult = [], [], []
  for obj in ET.fromstring(xml_text).iter('object'):
    box = obj.find('bndbox')
    ymin, xmin, ymax, xmax = (float(box.find(k).text) for k in ('ymin', 'xmin', 'ymax', 'xmax'))
    boxes.append((ymin - 1, xmin - 1, ymax, xmax))
    name = obj.find('name').text.strip()
    if name not in class_names:
      raise ValueError(f'object class {name!r} is not in the class list {list(class_names)}; '
                       'add it to data.class_names')
    labels.append(class_names.index(name))
    flag = obj.find('difficult')  # Missing in a few 2012 files: those objects are not difficult.
    difficult.append(flag is not None and int(flag.text) == 1)
  return dict(boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
              labels=np.asarray(labels, np.int64), difficult=np.asarray(difficult, bool))


class VocDetection(LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Pascal VOC 2007 / 2012 detection: boxes, labels and difficult flags from the official XML."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Boxes + difficult flags from the official tars, no TensorFlow.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='2007', description='VOC 2007: train / validation / test.'),
      tfds.core.BuilderConfig(name='2012', description='VOC 2012: train / validation.'),
  ]
  DEFAULT_CONFIG_NAME = '2007'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download the VOC tars (2007: VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar; '
      f'2012: {TAR_NAME}) from http://host.robots.ox.ac.uk/pascal/VOC/ and place them (or the '
      'extracted VOCdevkit/ folder) in the manual dir.')

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=example_features(CLASS_NAMES, image_format='jpeg', difficult=True,
                                         masks=False),
        disable_shuffling=True,  # Record order = the official image list order.
        homepage='http://host.robots.ox.ac.uk/pascal/VOC/',
    )

  def _split_generators(self, dl_manager):
    year = self.builder_config.name
    roots = find_voc_roots(epath.Path(dl_manager.manual_dir), dl_manager, year,
                           _DETECTION_TARS[year], _DETECTION_NEEDED, tag='det')
    out = {}
    for split, name in _DETECTION_SPLITS.items():
      root, ids = read_list(roots, 'Main', name)
      if ids:
        out[split] = self._generate_examples(root, ids)
    if not out:
      raise FileNotFoundError(f'No train.txt/val.txt/test.txt under {roots}/ImageSets/Main')
    return out

  def _generate_examples(self, root: epath.Path, ids: list[str]):
    for i, image_id in enumerate(ids):
      ann = read_annotation((root / 'Annotations' / f'{image_id}.xml').read_text())
      yield i, {
          'id': image_id,
          'image': (root / 'JPEGImages' / f'{image_id}.jpg').read_bytes(),
          'objects': {'box': ann['boxes'], 'label': ann['labels'],
                      'difficult': ann['difficult']},
      }
