"""Any COCO-format dataset as a tfds builder (`coco_json`), described by paths in `config.data`.

  --config.data.name=coco_json \
  --config.data.train_json=train.json --config.data.train_images=images/train \
  --config.data.eval_json=val.json --config.data.eval_images=images/val

The categories (names and ids, any ids and any number) come from the train file, sorted by id:
internal label k (1..K, contiguous, 0 = background) is `category_ids[k - 1]`, which predictions
map back to. Boxes, crowd flags, polygons and RLE masks and keypoints become examples exactly as
`data/coco.py` makes them for COCO 2017 (`coco_example`); keypoint names and skeleton come from
the categories' `keypoints` / `skeleton` (OKS sigmas: `data.keypoint_sigmas`, else COCO's for
COCO's joint names, else the mean of COCO's 17).

The prepared copy lives in `<data_dir>/coco_json/fp_<fingerprint>/`: the fingerprint hashes both
JSON files and each referenced image's path, size and modification time (data/user_files.py), so a
changed source is a new copy, never a stale one. tfds writes into a temporary folder and renames it
when done, so a prepare that fails leaves nothing a later run would read. Bad input fails before any
writing, with one line naming the file and the fix; boxes partly outside their image are clipped and
zero-area boxes dropped (as pycocotools' own loaders leave them unusable), and both are counted.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from pycocotools import coco as coco_api

from data import builder
from data.coco import coco_example
from data.user_files import UserFilesBuilder, fingerprint, read_image_file
from ops import joints as joint_sets

_SPLITS = {'train': 'train', 'validation': 'eval'}  # tfds split -> config.data field prefix.
_REQUIRED = ('images', 'annotations', 'categories')
# Mean of COCO's 17 per-joint sigmas: the default for joints COCO has no sigma for.
_MEAN_COCO_SIGMA = float(np.mean(joint_sets.COCO_OKS_SIGMAS))


def read_coco_json(path: str, field: str) -> dict:
  """The parsed, checked COCO file at `path` (`field`: the config field that named it)."""
  if not path:
    raise ValueError(f'data.name=coco_json needs --config.data.{field}=PATH (a COCO-format JSON)')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} (data.{field}) not found; point --config.data.{field} at '
                            'a COCO-format annotation file')
  try:
    with open(path, 'rb') as f:
      content = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f'{path} is not JSON ({e}); data.{field} must be a COCO-format '
                     'annotation file') from e
  missing = [k for k in _REQUIRED if not isinstance(content, dict) or
             not isinstance(content.get(k), list)]
  if missing:
    raise ValueError(f'{path} is not a COCO-format JSON: no {" / ".join(missing)} list. A COCO '
                     'file is an object with "images", "annotations" and "categories" lists '
                     '(https://cocodataset.org/#format-data)')
  for key, needed in (('images', ('id', 'file_name', 'height', 'width')),
                      ('annotations', ('id', 'image_id', 'category_id', 'bbox')),
                      ('categories', ('id', 'name'))):
    for entry in content[key]:
      absent = [k for k in needed if k not in entry]
      if absent:
        raise ValueError(f'{path}: an entry of "{key}" has no {", ".join(absent)} '
                         f'({str(entry)[:80]}); COCO {key} need {", ".join(needed)}')
  return content


def _check_references(content: dict, path: str, category_ids: tuple[int, ...]) -> None:
  image_ids = {im['id'] for im in content['images']}
  known = set(category_ids)
  for ann in content['annotations']:
    if ann['category_id'] not in known:
      raise ValueError(f'{path}: annotation {ann["id"]} has category_id {ann["category_id"]}, '
                       f'not one of the categories {sorted(known)}; add it to "categories" '
                       '(of the train file) or remove the annotation')
    if ann['image_id'] not in image_ids:
      raise ValueError(f'{path}: annotation {ann["id"]} refers to image_id {ann["image_id"]}, '
                       'which "images" does not list; add the image or remove the annotation')


def _flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
  """Joint i takes joint j's label after a horizontal flip where j is i's left/right twin."""
  index = {n: i for i, n in enumerate(names)}
  twin = lambda n: (n.replace('left', '\0').replace('right', 'left').replace('\0', 'right'))
  return tuple(index.get(twin(n), i) for i, n in enumerate(names))


def joint_set(categories: list[dict], sigmas=None, where: str = '') -> joint_sets.JointSet | None:
  """The joints of the categories' `keypoints` / `skeleton` (1-based), or None without any."""
  with_joints = [c for c in categories if c.get('keypoints')]
  if not with_joints:
    return None
  names = tuple(with_joints[0]['keypoints'])
  if any(tuple(c['keypoints']) != names for c in with_joints):
    raise ValueError(f'{where}: categories name different keypoints; one joint set per dataset')
  if names == joint_sets.COCO_JOINT_NAMES:
    sigmas = tuple(sigmas or joint_sets.COCO_OKS_SIGMAS)
    return dataclasses.replace(joint_sets.COCO_17, oks_sigmas=sigmas)
  if sigmas is None:
    by_name = dict(zip(joint_sets.COCO_JOINT_NAMES, joint_sets.COCO_OKS_SIGMAS, strict=True))
    sigmas = [by_name.get(n, _MEAN_COCO_SIGMA) for n in names]
  if len(sigmas) != len(names):
    raise ValueError(f'data.keypoint_sigmas has {len(sigmas)} values; {where} has '
                     f'{len(names)} joints {names}')
  skeleton = tuple((a - 1, b - 1) for a, b in with_joints[0].get('skeleton') or ())
  return joint_sets.JointSet(names, _flip_permutation(names), skeleton,
                             tuple(float(s) for s in sigmas))


def _fingerprint(files: dict[str, tuple[str, dict, str]]) -> tuple[str, str]:
  """(fingerprint, problem) of the JSON files (their bytes) and each referenced image.

  A missing image changes the fingerprint and is reported as `problem`, which fails only the
  prepare step: reading the classes (e.g. to predict elsewhere) needs just the JSON.
  """
  paths, extra, problem = [], str(CocoJson.VERSION).encode(), ''
  for split, (path, content, images) in files.items():
    with open(path, 'rb') as f:
      extra += f.read()
    for im in content['images']:
      file = os.path.join(images, im['file_name'])
      if os.path.isfile(file):
        paths.append(file)
        continue
      extra += f'\0missing {file}'.encode()
      problem = problem or (
          f'{path}: image {im["id"]} file {file} not found; put it there, point '
          f'data.{_SPLITS[split]}_images at its folder, or remove it from the JSON')
  return fingerprint(paths, extra), problem


@dataclasses.dataclass
class CocoJsonConfig(tfds.core.BuilderConfig):
  """One COCO-format dataset: its files (split -> (json, images dir)), classes and joints."""
  files: dict = dataclasses.field(default_factory=dict)
  class_names: tuple[str, ...] = ()  # 'background' + the category names in id order.
  category_ids: tuple[int, ...] = ()  # The file's id of label k at index k - 1.
  joints: joint_sets.JointSet | None = None
  problem: str = ''  # Why the files cannot be prepared (a missing image), raised when preparing.


def make_config(cfg) -> CocoJsonConfig:
  """Reads and checks `cfg`'s COCO files (without preparing anything) into a builder config."""
  get = lambda k: cfg.get(k) if hasattr(cfg, 'get') else getattr(cfg, k, None)
  contents = {s: read_coco_json(get(f'{p}_json'), f'{p}_json') for s, p in _SPLITS.items()}
  train_path = get('train_json')
  categories = sorted(contents['train']['categories'], key=lambda c: c['id'])
  if not categories:
    raise ValueError(f'{train_path} has no categories; list the classes under "categories"')
  ids = tuple(int(c['id']) for c in categories)
  if len(set(ids)) != len(ids):
    raise ValueError(f'{train_path}: category ids repeat ({ids}); each category needs its own id')
  names = {c['id']: c['name'] for c in categories}
  files = {}
  for split, prefix in _SPLITS.items():
    path, content = get(f'{prefix}_json'), contents[split]
    if not content['images']:
      raise ValueError(f'{path} lists no images, so the {split} split would be empty; point '
                       f'data.{prefix}_json at a file with images')
    for c in content['categories']:
      if names.get(c['id'], c['name']) != c['name']:
        raise ValueError(f'{path}: category {c["id"]} is {c["name"]!r} but {names[c["id"]]!r} '
                         f'in {train_path}; both files need the same categories')
    _check_references(content, path, ids)
    images = get(f'{prefix}_images') or os.path.dirname(os.path.abspath(path))
    files[split] = (os.path.abspath(path), content, os.path.abspath(images))
  sigmas = get('keypoint_sigmas')
  joints = joint_set(categories, tuple(sigmas) if sigmas else None, train_path)
  key, problem = _fingerprint(files)
  return CocoJsonConfig(
      name=f'fp_{key}', problem=problem,
      description=f"COCO-format files {train_path} and {get('eval_json')}",
      files={s: (p, im) for s, (p, _, im) in files.items()},
      class_names=('background', *(str(c['name']) for c in categories)), category_ids=ids,
      joints=joints)


def _count_fixes(anns: list[dict], h: int, w: int) -> tuple[int, int]:
  """(boxes partly outside the image, zero-area boxes) among `anns`: coco_example clips the first
  and drops the second."""
  outside = zero = 0
  for a in anns:
    x, y, bw, bh = a['bbox']
    if bw <= 0 or bh <= 0:
      zero += 1
    elif x < 0 or y < 0 or x + bw > w + 1e-3 or y + bh > h + 1e-3:
      outside += 1
  return outside, zero


def _read_image(file: str, info: dict, json_path: str) -> bytes:
  """The image file's bytes, after checking that it decodes at the JSON's size."""
  data, hw = read_image_file(file, f'replace the file or remove image {info["id"]} from '
                             f'{json_path}')
  if hw != (int(info['height']), int(info['width'])):
    raise ValueError(f'{file} is {hw[1]}x{hw[0]} but {json_path} says '
                     f'{info["width"]}x{info["height"]} (image {info["id"]}); fix the JSON\'s '
                     'width / height')
  return data


class CocoJson(UserFilesBuilder):
  """A COCO-format dataset from `config.data` paths (see the module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'COCO-format files named by config.data.'}
  make_config = staticmethod(make_config)

  @property
  def joints(self) -> joint_sets.JointSet | None:
    return self.builder_config.joints

  @property
  def category_ids(self) -> tuple[int, ...]:
    """The file's category id of each internal label 1..K (index k - 1)."""
    return self.builder_config.category_ids

  def annotation_file(self, split: str, manual_dir: str | None = None) -> str | None:
    """The COCO JSON of `split`: evaluation reads its ground truth from there."""
    del manual_dir  # The files are named by config.data.
    return self.builder_config.files[split][0] if split in self.builder_config.files else None

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=builder.example_features(self.builder_config.class_names, image_format='jpeg',
                                         joints=self.joints, difficult=True),
        disable_shuffling=True)  # Record order = ascending image id.

  def _split_generators(self, dl_manager):
    del dl_manager
    if self.builder_config.problem:
      raise FileNotFoundError(self.builder_config.problem)
    return {split: self._generate_examples(split) for split in self.builder_config.files}

  def _generate_examples(self, split: str):
    path, images = self.builder_config.files[split]
    with open(path, 'rb') as f:
      dataset = json.load(f)
    coco = coco_api.COCO()
    coco.dataset = dataset
    coco.createIndex()
    label_of = {c: k + 1 for k, c in enumerate(self.category_ids)}
    outside = zero = 0
    for i, image_id in enumerate(sorted(coco.imgs)):
      info = coco.imgs[image_id]
      data = _read_image(os.path.join(images, info['file_name']), info, path)
      fixes = _count_fixes(coco.imgToAnns[image_id], int(info['height']), int(info['width']))
      outside, zero = outside + fixes[0], zero + fixes[1]
      ex = coco_example(coco, image_id, label_of, self.joints)
      objects = {'box': ex['boxes'], 'label': ex['labels'], 'difficult': ex['difficult']}
      if self.joints is not None:
        objects['keypoints'] = ex['keypoints']
      yield i, {'id': str(image_id), 'image': data, 'mask': builder.encode_png(ex['mask']),
                'instance_ids': builder.encode_png(ex['instance_ids']), 'objects': objects}
    if outside or zero:
      print(f'{path}: clipped {outside} boxes partly outside their image to it; dropped {zero} '
            'zero-area boxes', flush=True)
