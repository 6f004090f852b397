"""Leeds Sports Pose (Johnson & Everingham, BMVC 2010) as a tfds builder (`lsp`).

Reads the official `lsp_dataset.zip` (images/im0001.jpg ... im2000.jpg and joints.mat, a
3 x 14 x 2000 array of x, y and an occlusion flag) from the manual dir and writes examples in the
Shapes format (`data/shapes.py`) with one person: the JPEG as stored, `keypoints` [14, 3] (y, x, v)
and, as LSP has no masks or boxes, the box around the joints (enlarged by 10% per side, clipped to
the image) as the person's box, filled into `mask` and `instance_ids` so the augmentations keep it.
Splits follow the paper: the first half of the images (1000) train, the second half test.

Conventions: LSP's MATLAB coordinates are 1-based pixel centres, ours put pixel i's centre at
i + 0.5 (so we subtract 0.5). LSP's third row is 1 for an *occluded* joint despite the README's
"visibility" (other codebases invert it too); every joint is annotated, so v is 2 (visible) or 1.
"""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data.builder import LocalBuilderMixin, encode_png, example_features
from ops.joints import LSP_14

ZIP_NAME = 'lsp_dataset.zip'
CLASS_NAMES = ('background', 'person')
_IMAGE = re.compile(r'(?:^|/)images/im(\d+)\.jpg$')


def person_box(joints: np.ndarray, height: int, width: int, pad: float = 0.1) -> np.ndarray:
  """(y1, x1, y2, x2) around (y, x) joints [14, 2], enlarged by `pad` x its size, clipped."""
  low, high = joints.min(0), joints.max(0)
  grow = pad * (high - low) + 1
  low, high = np.maximum(low - grow, 0), np.minimum(high + grow, [height, width])
  return np.concatenate([low, high]).astype(np.float32)


def read_archive(path: epath.Path) -> tuple[list[str], np.ndarray]:
  """(image member names in index order, joints [N, 14, 3] as (y, x, v) in our convention)."""
  with zipfile.ZipFile(path) as archive:
    names = {int(m.group(1)): n for n in archive.namelist() if (m := _IMAGE.search(n))}
    mat = [n for n in archive.namelist() if n.endswith('joints.mat')]
    if not mat:
      raise FileNotFoundError(f'{path} holds no joints.mat; is it the LSP archive?')
    raw = np.asarray(scipy.io.loadmat(io.BytesIO(archive.read(mat[0])))['joints'], np.float64)
  if raw.shape[:2] == (14, 3):  # LSP-extended stores 14 x 3 x N.
    raw = raw.transpose(1, 0, 2)
  x, y, occluded = raw  # Each [14, N].
  joints = np.stack([y - 0.5, x - 0.5, np.where(occluded > 0, 1.0, 2.0)], -1).transpose(1, 0, 2)
  order = sorted(names)
  if len(order) != len(joints):
    raise ValueError(f'{path}: {len(order)} images but joints for {len(joints)}')
  return [names[i] for i in order], joints.astype(np.float32)


class Lsp(LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Leeds Sports Pose: 2000 people with 14 joints (1000 train / 1000 validation = test)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Images, 14 joints with occlusion, person box from the joints.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='default', description='LSP, 1000 / 1000.')]
  DEFAULT_CONFIG_NAME = 'default'
  joints = LSP_14  # The joint set of the keypoints (the pipeline reads it).
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download {ZIP_NAME} from http://sam.johnson.io/research/lsp.html and place it in the '
      'manual dir (data.manual_dir, default <data_dir>/downloads/manual).')

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=example_features(CLASS_NAMES, image_format='jpeg', joints=self.joints),
        disable_shuffling=True,  # Record i is image i of its split.
        homepage='http://sam.johnson.io/research/lsp.html',
    )

  def _split_generators(self, dl_manager):
    path = epath.Path(dl_manager.manual_dir) / ZIP_NAME
    if not path.exists():
      raise FileNotFoundError(f'{ZIP_NAME} not found in {dl_manager.manual_dir}. '
                              + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    names, joints = read_archive(path)
    half = len(names) // 2
    return {'train': self._generate_examples(path, names, joints, range(half)),
            'validation': self._generate_examples(path, names, joints, range(half, len(names)))}

  def _generate_examples(self, path, names, joints, indices):
    with zipfile.ZipFile(path) as archive:
      for i in indices:
        jpeg = archive.read(names[i])
        width, height = Image.open(io.BytesIO(jpeg)).size
        box = person_box(joints[i, :, :2], height, width)
        filled = np.zeros((height, width), np.uint8)
        y1, x1 = np.floor(box[:2]).astype(int)
        y2, x2 = np.ceil(box[2:]).astype(int)
        filled[y1:y2, x1:x2] = 1
        yield i, {
            'id': names[i].rsplit('/', 1)[-1],
            'image': jpeg,
            'mask': encode_png(filled),
            'instance_ids': encode_png(filled),
            'objects': {'box': box[None], 'label': [1], 'keypoints': joints[i][None]},
        }
