"""User folders as a tfds builder (`mask_folder`): segmentation masks, or VOC-layout boxes.

  --config.data.name=mask_folder --config.data.train_dir=DIR --config.data.eval_dir=DIR \
  [--config.data.class_names="('background', 'road', 'car')" | --config.data.class_names_file=F]

Each of train_dir / eval_dir holds either
  images/ + masks/            semantic segmentation: images/NAME.(jpg|png|...) with
                              masks/NAME.png, a label PNG (mode L) or a palette PNG (mode P, e.g.
                              VOC's) whose pixel values are class indices; 255 = ignore.
                              Class names: data.class_names, or data.class_names_file (one name
                              a line, for indices 0, 1, ...), or classes.txt in train_dir.
  Annotations/ + JPEGImages/  detection, Pascal VOC layout: Annotations/NAME.xml per
                              JPEGImages/NAME.jpg (data/voc.py reads the XML); the classes are
                              'background' plus the object names the XML files contain, sorted,
                              unless data.class_names lists them.
The prepared copy is keyed by a fingerprint of the files (data/user_files.py) and the class
names; bad input (an image without a mask, a mask of another size than its image, a class index
beyond the class list, an empty folder) fails with one line naming the file and the fix.
"""
from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data import augment, builder, voc
from data.user_files import UserFilesBuilder, fingerprint, read_image_file

_SPLITS = {'train': 'train_dir', 'validation': 'eval_dir'}  # tfds split -> config.data field.
_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def _layout(root: str, field: str) -> str:
  """'masks' or 'voc': which of the two layouts folder `root` has."""
  if not root:
    raise ValueError(f'data.name=mask_folder needs --config.data.{field}=DIR (images/ + masks/, '
                     'or Annotations/ + JPEGImages/)')
  if os.path.isdir(os.path.join(root, 'images')) and os.path.isdir(os.path.join(root, 'masks')):
    return 'masks'
  if all(os.path.isdir(os.path.join(root, d)) for d in ('Annotations', 'JPEGImages')):
    return 'voc'
  raise FileNotFoundError(f'{root} (data.{field}) has neither images/ + masks/ nor '
                          'Annotations/ + JPEGImages/; put the files in one of those layouts')


def _pairs(root: str, layout: str, field: str) -> list[tuple[str, str, str]]:
  """(name, image file, mask PNG or XML file) of every image of the folder, sorted by name."""
  if layout == 'masks':
    folder, ext = os.path.join(root, 'images'), None
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXTENSIONS))
  else:
    folder, ext = os.path.join(root, 'JPEGImages'), '.jpg'
    files = sorted(f for f in os.listdir(folder) if f.endswith(ext))
  if not files:
    raise ValueError(f'{folder} (data.{field}) has no image files, so the split would be empty')
  out = []
  for f in files:
    name = os.path.splitext(f)[0]
    label = (os.path.join(root, 'masks', name + '.png') if layout == 'masks'
             else os.path.join(root, 'Annotations', name + '.xml'))
    if not os.path.isfile(label):
      raise FileNotFoundError(f'{os.path.join(folder, f)} has no {label}; add it or remove '
                              'the image')
    out.append((name, os.path.join(folder, f), label))
  return out


def _class_names(cfg, layout: str, pairs: list) -> tuple[str, ...]:
  get = lambda k: cfg.get(k) if hasattr(cfg, 'get') else getattr(cfg, k, None)
  names, names_file = get('class_names'), get('class_names_file')
  default_file = os.path.join(get('train_dir'), 'classes.txt')
  if not names and not names_file and layout == 'masks' and os.path.isfile(default_file):
    names_file = default_file
  if names_file:
    with open(names_file) as f:
      names = [line.strip() for line in f if line.strip()]
  if names:
    return tuple(str(n) for n in names)
  if layout == 'masks':
    raise ValueError('mask folders need class names: --config.data.class_names="(\'background\', '
                     '...)", --config.data.class_names_file=FILE or train_dir/classes.txt')
  found = {obj.find('name').text.strip() for _, _, xml in pairs
           for obj in ET.parse(xml).getroot().iter('object')}
  return ('background', *sorted(found))


@dataclasses.dataclass
class MaskFolderConfig(tfds.core.BuilderConfig):
  layout: str = 'masks'  # 'masks' (segmentation) or 'voc' (detection).
  pairs: dict = dataclasses.field(default_factory=dict)  # split -> [(name, image, label file)].
  class_names: tuple[str, ...] = ()


def make_config(cfg) -> MaskFolderConfig:
  get = lambda k: cfg.get(k) if hasattr(cfg, 'get') else getattr(cfg, k, None)
  layouts = {split: _layout(get(field), field) for split, field in _SPLITS.items()}
  if len(set(layouts.values())) > 1:
    raise ValueError(f'data.train_dir is a {layouts["train"]} folder but data.eval_dir a '
                     f'{layouts["validation"]} one; both need the same layout')
  layout = layouts['train']
  pairs = {split: _pairs(get(field), layout, field) for split, field in _SPLITS.items()}
  names = _class_names(cfg, layout, pairs['train'] + pairs['validation'])
  files = [f for split in pairs.values() for _, image, label in split for f in (image, label)]
  key = fingerprint(files, repr((str(MaskFolder.VERSION), layout, names)).encode())
  return MaskFolderConfig(name=f'fp_{key}', description=f'{layout} folders {get("train_dir")}, '
                          f'{get("eval_dir")}', layout=layout, pairs=pairs, class_names=names)


def read_mask(path: str, image_hw: tuple[int, int], num_classes: int) -> np.ndarray:
  """uint8 [H, W] class indices of a label or palette PNG, checked against image and classes."""
  img = Image.open(path)
  if img.mode not in ('L', 'P', '1', 'I;16', 'I'):
    raise ValueError(f'{path} is a {img.mode} PNG; masks hold one class index per pixel (mode L '
                     'or a palette PNG): convert colours to indices')
  mask = np.asarray(img).astype(np.int64)
  if mask.shape != tuple(image_hw):
    raise ValueError(f'{path} is {mask.shape[1]}x{mask.shape[0]} but its image is '
                     f'{image_hw[1]}x{image_hw[0]}; masks must have their image\'s size')
  beyond = np.unique(mask[(mask >= num_classes) & (mask != augment.IGNORE)])
  if beyond.size:
    raise ValueError(f'{path} has class indices {beyond.tolist()} but there are only '
                     f'{num_classes} classes (0..{num_classes - 1}, 255 = ignore); add their '
                     'names to the class list or fix the mask')
  return mask.astype(np.uint8)


class MaskFolder(UserFilesBuilder):
  """Segmentation or VOC-layout detection folders named by config.data (module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'images/ + masks/ or VOC-layout folders named by config.data.'}
  make_config = staticmethod(make_config)

  def _info(self) -> tfds.core.DatasetInfo:
    voc_layout = self.builder_config.layout == 'voc'
    return self.dataset_info_from_configs(
        features=builder.example_features(self.builder_config.class_names, image_format='png',
                                         difficult=voc_layout, masks=not voc_layout),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in self.builder_config.pairs}

  def _generate_examples(self, split: str):
    names = self.builder_config.class_names
    for i, (name, image, label) in enumerate(self.builder_config.pairs[split]):
      data, hw = read_image_file(image, 'replace or remove it')
      if self.builder_config.layout == 'voc':
        with open(label) as f:
          ann = voc.read_annotation(f.read(), names)
        yield i, {'id': name, 'image': data, 'objects': {
            'box': ann['boxes'], 'label': ann['labels'], 'difficult': ann['difficult']}}
        continue
      mask = read_mask(label, hw, len(names))
      yield i, {'id': name, 'image': data, 'mask': builder.encode_png(mask),
                'instance_ids': builder.encode_png(np.zeros_like(mask)),
                'objects': {'box': np.zeros((0, 4), np.float32), 'label': np.zeros((0,), np.int64)}}
