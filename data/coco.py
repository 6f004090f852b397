"""COCO 2017 as a tfds builder (`coco2017`): boxes, crowd flags, instance masks and person
keypoints, no TensorFlow.

tfds' own `coco` builder needs TensorFlow even for its metadata, so this one reads the official
files from the manual dir, zipped (`annotations_trainval2017.zip`, `train2017.zip`,
`val2017.zip`) or extracted (`annotations/`, `train2017/`, `val2017/`), with pycocotools. Examples
have the Shapes format (see `data/shapes.py`) plus a `difficult` flag per object:
  image         the JPEG as stored
  objects       box (y1, x1, y2, x2) absolute pixels from COCO's (x, y, w, h); label 1..80 (the 80
                categories in id order, contiguous); difficult = iscrowd
  instance_ids  k = pixels of objects[k - 1] (annToMask: polygons and RLE); where instances
                overlap the smaller one wins, so small objects in front keep their pixels
  mask          the class of each instance's pixels, 255 over crowd regions, 0 elsewhere
A config names its annotation files: `default` the 80 categories ('instances'), `person_keypoints`
the people with COCO's 17 joints ('person_keypoints', `ops.joints.COCO_17`), whose objects also
carry keypoints [17, 3] (y, x, v) from COCO's flat (x, y, v) list. COCO stores integer pixel
indices (0..W-1); we add 0.5 so that pixel i's centre is i + 0.5 as in our boxes and LSP (as
Detectron2 does; a flip, W - x, would be a pixel off otherwise). Unlabelled joints (v = 0, and
every joint of a crowd) are all 0.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from pycocotools import coco as coco_api

from data.builder import LocalBuilderMixin, encode_png, example_features
from data.manual import ManualFiles
from ops.joints import COCO_17, JointSet

CLASS_NAMES = (
    'background', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')
# The annotation files' category id of each of the 80 names above (ids 12, 26, 29, 30, 45, 66, 68,
# 69, 71 and 83 are unused).
CATEGORY_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
                *range(72, 83), *range(84, 91))
_SPLITS = {'train': 'train2017', 'validation': 'val2017'}  # tfds split -> image folder.
_ZIPS = {'annotations': 'annotations_trainval2017.zip', 'train2017': 'train2017.zip',
         'val2017': 'val2017.zip'}


@dataclasses.dataclass
class CocoConfig(tfds.core.BuilderConfig):
  """`annotations`: the files are annotations/<annotations>_{train,val}2017.json."""
  annotations: str = 'instances'
  class_names: tuple[str, ...] = CLASS_NAMES  # Matched by name to the file's categories.
  joints: JointSet | None = None  # The annotations' keypoints, if they have any.


def load_coco(files: ManualFiles, name: str) -> coco_api.COCO:
  """A pycocotools COCO index of annotations/<name> (COCO(path) cannot read from a zip)."""
  coco = coco_api.COCO()
  coco.dataset = json.loads(files.read('annotations', name))
  coco.createIndex()
  return coco


def coco_keypoints(ann: dict, num_joints: int) -> np.ndarray:
  """float32 [J, 3] (y, x, v) of an annotation's flat (x, y, v) list (see the module docstring)."""
  flat = np.asarray(ann.get('keypoints') or np.zeros(3 * num_joints), np.float32)
  if flat.size != 3 * num_joints:
    raise ValueError(f'COCO annotation {ann.get("id")} has {flat.size // 3} keypoints; the '
                     f'config\'s joint set has {num_joints}')
  x, y, v = flat.reshape(num_joints, 3).T
  labelled = v > 0
  return np.stack([np.where(labelled, y + 0.5, 0), np.where(labelled, x + 0.5, 0), v], 1)


def coco_example(coco: coco_api.COCO, image_id: int, label_of: dict[int, int],
                 joints: JointSet | None = None) -> dict:
  """boxes, labels, difficult (crowd), instance_ids, mask and, with `joints`, keypoints of one
  image."""
  info = coco.imgs[image_id]
  h, w = int(info['height']), int(info['width'])
  # Zero-area boxes (a few in COCO) carry no object and break IoU computations.
  anns = [a for a in coco.imgToAnns[image_id] if a['bbox'][2] > 0 and a['bbox'][3] > 0]
  if len(anns) > 255:
    raise ValueError(f'COCO image {image_id} has {len(anns)} objects; instance ids are uint8')
  ids = np.zeros((h, w), np.uint8)
  for k in sorted(range(len(anns)), key=lambda k: -anns[k]['area']):  # Larger first, see above.
    if anns[k].get('segmentation'):
      ids[coco.annToMask(anns[k]) > 0] = k + 1
  labels = np.asarray([label_of[a['category_id']] for a in anns], np.int64)
  crowd = np.asarray([bool(a.get('iscrowd', 0)) for a in anns], bool)
  x, y, bw, bh = np.asarray([a['bbox'] for a in anns], np.float32).reshape(-1, 4).T
  boxes = np.stack([y, x, y + bh, x + bw], axis=1).clip(0, np.asarray([h, w, h, w], np.float32))
  lut = np.zeros(256, np.uint8)
  lut[1:len(anns) + 1] = np.where(crowd, 255, labels)  # Crowd masks are loose: ignore them.
  out = dict(boxes=boxes.astype(np.float32), labels=labels, difficult=crowd, instance_ids=ids,
             mask=lut[ids])
  if joints is not None:
    out['keypoints'] = np.asarray([coco_keypoints(a, joints.num_joints) for a in anns],
                                  np.float32).reshape(-1, joints.num_joints, 3)
  return out


class Coco2017(LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """COCO 2017 (train 118k / validation 5k): boxes, crowd flags, instance masks, keypoints."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Instances from the official files via pycocotools.'}
  BUILDER_CONFIGS = [
      CocoConfig(name='default', description='The 80 object categories.'),
      CocoConfig(name='person_keypoints', description='People with the 17 COCO keypoints.',
                 annotations='person_keypoints', class_names=('background', 'person'),
                 joints=COCO_17),
  ]
  DEFAULT_CONFIG_NAME = 'default'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download {", ".join(_ZIPS.values())} from https://cocodataset.org/#download and place '
      'them (or the extracted annotations/, train2017/, val2017/ folders) in the manual dir.')

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  @property
  def joints(self) -> JointSet | None:
    """The joint set of the keypoints (the pipeline reads it); None for the instances."""
    return self.builder_config.joints

  @property
  def category_ids(self) -> tuple[int, ...]:
    """The annotation files' category id of each label 1..K (index k - 1)."""
    id_of = dict(zip(CLASS_NAMES[1:], CATEGORY_IDS, strict=True))
    return tuple(id_of[name] for name in self.builder_config.class_names[1:])

  def annotation_file(self, split: str, manual_dir: str | None = None) -> str | None:
    """The official annotation JSON of `split` as a file (extracted once from the zip into the
    data dir when only the zip is there), for COCO evaluation; None without one."""
    folder = _SPLITS.get(split)
    if folder is None:
      return None
    name = self._annotation_name(folder)
    manual = epath.Path(manual_dir or self.data_dir_root / 'downloads' / 'manual')
    if (manual / 'annotations' / name).exists():
      return os.fspath(manual / 'annotations' / name)
    cached = epath.Path(self.data_dir_root) / 'coco2017_annotations' / name
    files = ManualFiles(manual, _ZIPS)
    try:
      if not cached.exists() and files.exists('annotations', name):
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.parent / (name + '.incomplete')
        partial.write_bytes(files.read('annotations', name))
        partial.rename(cached)  # Whole or absent: never half a file.
    finally:
      files.close()
    return os.fspath(cached) if cached.exists() else None

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=example_features(self.builder_config.class_names, image_format='jpeg',
                                         joints=self.joints, difficult=True),
        disable_shuffling=True,  # Record order = ascending image id.
        homepage='https://cocodataset.org/',
    )

  def _annotation_name(self, folder: str) -> str:
    return f'{self.builder_config.annotations}_{folder}.json'

  def _split_generators(self, dl_manager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    files = ManualFiles(manual_dir, _ZIPS)
    try:
      out = {split: self._generate_examples(manual_dir, folder) for split, folder in
             _SPLITS.items() if files.exists('annotations', self._annotation_name(folder))}
    finally:
      files.close()
    if not out:
      raise FileNotFoundError(f'No annotations/{self._annotation_name("*")} in manual dir '
                              f'{manual_dir}. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    return out

  def _generate_examples(self, manual_dir: epath.Path, folder: str):
    files = ManualFiles(manual_dir, _ZIPS)
    try:
      coco = load_coco(files, self._annotation_name(folder))
      names = self.builder_config.class_names
      unknown = [c['name'] for c in coco.dataset['categories'] if c['name'] not in names]
      if unknown:
        raise ValueError(f'COCO categories {unknown} are not in the config class names {names}')
      label_of = {c['id']: names.index(c['name']) for c in coco.dataset['categories']}
      for i, image_id in enumerate(sorted(coco.imgs)):
        ex = coco_example(coco, image_id, label_of, self.joints)
        objects = {'box': ex['boxes'], 'label': ex['labels'], 'difficult': ex['difficult']}
        if self.joints is not None:
          objects['keypoints'] = ex['keypoints']
        yield i, {
            'id': str(image_id),
            'image': files.read(folder, coco.imgs[image_id]['file_name']),
            'mask': encode_png(ex['mask']),
            'instance_ids': encode_png(ex['instance_ids']),
            'objects': objects,
        }
    finally:
      files.close()
