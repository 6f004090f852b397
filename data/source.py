"""Dataset lookup and decoded records: the layer under the input pipeline and the proposals.

`DATASETS` maps a config's `data.name` to its tfds builder; `get_builder(cfg)` and
`ensure_prepared(cfg)` return it for a `config.data` (the latter preparing it on first use).
`DecodedSource` reads one split's records decoded to numpy, the form both `data.pipeline`
(augment, pad, batch) and `data.proposals` (selective search over a split) start from.
"""
from __future__ import annotations

import io

import grain.python as grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from data import augment
from data.coco import Coco2017
from data.coco_json import CocoJson
from data.coco_voc import CocoVocSegmentation
from data.lsp import Lsp
from data.mask_folder import MaskFolder
from data.shapes import Shapes
from data.visual_genome import VisualGenome
from data.voc import Voc2012Segmentation, VocDetection
from ops.joints import NUM_JOINTS, JointSet

_PNG_KEYS = ('image', 'mask', 'instance_ids')
# J of datasets without joints: their batches still have `keypoints`, with 14 unlabelled joints.
NO_JOINTS = NUM_JOINTS

DATASETS = {
    'shapes': Shapes,
    'voc2012_segmentation': Voc2012Segmentation,
    'lsp': Lsp,
    'voc_detection': VocDetection,
    'coco2017': Coco2017,
    'coco_json': CocoJson,
    'coco_voc_segmentation': CocoVocSegmentation,  # torchvision's FCN / DeepLabV3 data.
    'mask_folder': MaskFolder,
    'visual_genome': VisualGenome,
}


def get_dataset(name: str):
  """The tfds builder class registered as `name`."""
  if name not in DATASETS:
    raise ValueError(f'Unknown dataset {name!r}; valid names: {sorted(DATASETS)}')
  return DATASETS[name]


def variants(name: str) -> list[str]:
  """The builder config names (`data.variant` values) of dataset `name`."""
  return [c.name for c in get_dataset(name).BUILDER_CONFIGS]


def config_field(cfg, key, default):
  """cfg[key] of a ConfigDict / dict, or an attribute of another object; `default` if absent."""
  return cfg.get(key, default) if hasattr(cfg, 'get') else getattr(cfg, key, default)


def get_builder(cfg) -> tfds.core.DatasetBuilder:
  """The tfds builder of `cfg` (a config.data: name, variant, data_dir), not prepared."""
  name, variant = cfg.name, config_field(cfg, 'variant', 'default')
  cls = get_dataset(name)
  if hasattr(cls, 'from_data_config'):  # Described by config.data paths, not by a variant.
    return cls.from_data_config(cfg)
  valid = variants(name)
  if variant not in valid:
    raise ValueError(f'Unknown variant {variant!r} of dataset {name!r}; valid variants: {valid}')
  return cls(config=variant, data_dir=config_field(cfg, 'data_dir', None))


def ensure_prepared(cfg) -> tfds.core.DatasetBuilder:
  """Returns the builder, generating/preparing the dataset first if it is not on disk yet."""
  builder = get_builder(cfg)
  if not builder.is_prepared():
    logging.info('Preparing dataset %s/%s into %s (first use; later runs reuse it).',
                 cfg.name, builder.builder_config.name, builder.data_dir)
    print(f'Preparing dataset {cfg.name}/{builder.builder_config.name} into {builder.data_dir} '
          '(first use).', flush=True)
    manual_dir = config_field(cfg, 'manual_dir', None)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=download_config)
  return builder


def joints_of(builder) -> JointSet | None:
  """The joint set of the builder's keypoints: builders with keypoints name it as `joints`."""
  return getattr(builder, 'joints', None)


def _decode_image(data: bytes, channels: int, where: str, key: str) -> np.ndarray:
  try:
    img = Image.open(io.BytesIO(data))
    if channels == 3 and img.mode != 'RGB':
      img = img.convert('RGB')
    arr = np.asarray(img)
  except Exception as e:  # PIL raises several types for truncated/corrupt files.
    raise ValueError(f'Corrupt {key!r} image in {where}: {e}. Delete the prepared dataset '
                     'directory to regenerate it (or re-download the source data).') from e
  if channels == 1 and arr.ndim == 3:
    arr = arr[..., 0]
  return arr


def _text(value) -> str:
  """A tfds Text feature as str (data sources return bytes)."""
  return value.decode() if isinstance(value, bytes) else str(value)


def _image_id(record_id, index: int) -> int:
  """The dataset's numeric image id (COCO files), else the record index (e.g. VOC's names)."""
  text = _text(record_id)
  return int(text) if text.isdigit() else index


class DecodedSource(grain.RandomAccessDataSource):
  """A tfds data source whose records come out decoded to numpy (errors name the record)."""

  def __init__(self, cfg, split: str):
    builder = ensure_prepared(cfg)
    self._where = f'dataset {cfg.name}/{builder.builder_config.name} split {split!r}'
    features = builder.info.features
    # Box-only datasets (VOC detection) store no masks; difficult flags only some datasets have.
    self._keys = [k for k in _PNG_KEYS if k in features]
    self.has_difficult = 'difficult' in features['objects'].feature
    self.joints = joints_of(builder)
    self.num_joints = NO_JOINTS if self.joints is None else self.joints.num_joints
    self.vocab = getattr(builder, 'vocab', None)
    self._caption_flip = self.vocab.flip_permutation() if self.vocab else None
    # From the builder itself: builders made from config.data (coco_json) have no registered name.
    self._source = builder.as_data_source(
        split=split, decoders={k: tfds.decode.SkipDecoding() for k in self._keys})
    # Per-example proposal boxes, attached by data.pipeline.decoded_source when the config has
    # them; None leaves the `proposals` key out.
    self.proposals = None

  def __len__(self) -> int:
    return len(self._source)

  def phrases(self, index: int) -> list[str]:
    """The region phrases of record `index`, without decoding its images."""
    return [_text(t) for t in self._source[index]['objects']['phrase']]

  def __getitem__(self, index: int) -> dict:
    raw = self._source[index]
    where = f'{self._where} index {index}'
    ex = {k: _decode_image(raw[k], 3 if k == 'image' else 1, where, k) for k in self._keys}
    if 'mask' not in ex:  # No semantic labels: every pixel is 'ignore'.
      ex['mask'] = np.full(ex['image'].shape[:2], augment.IGNORE, np.uint8)
    objects = raw['objects']
    boxes = np.asarray(objects['box'], np.float32).reshape(-1, 4)
    # Datasets without joints get unlabelled ones, so every batch has the same keys.
    keypoints = objects.get('keypoints', np.zeros((len(boxes), self.num_joints, 3), np.float32))
    ex.update(boxes=boxes, labels=np.asarray(objects['label'], np.int32).reshape(-1),
              keypoints=np.asarray(keypoints, np.float32).reshape(-1, self.num_joints, 3))
    if self.joints is not None:
      ex['keypoint_flip'] = self.joints.flip_permutation
    if self.has_difficult:
      ex['difficult'] = np.asarray(objects['difficult'], bool).reshape(-1)
      # These datasets' boxes are annotated, not tight around (possibly overlapped) instance ids.
      ex['annotated_boxes'] = True
    if self.proposals is not None:
      ex['proposals'] = self.proposals[index]
    ex['image_id'] = _image_id(raw['id'], index)
    if self.vocab is not None:  # Dense captioning: token ids of each object's phrase.
      ex['captions'] = self.vocab.encode_all(self.phrases(index))
      ex['caption'] = self.vocab.encode(_text(raw['caption']))
      ex['caption_flip'] = self._caption_flip
    return ex

  def __repr__(self) -> str:
    return f'DecodedSource({self._where})'
