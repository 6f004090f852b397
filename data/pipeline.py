"""grain input pipelines: tfds array_record source -> decode -> augment -> pad -> batch.

Batches are numpy dicts with the keys and dtypes of CONTRACTS.md. Train iterators are infinite,
shuffled per epoch, sharded per host and checkpointable (`get_state()` / `set_state()`); eval
batches cover a split exactly once, the last batch padded with `example_valid` False.
"""
from __future__ import annotations

import functools
import io
import math

import grain.python as grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import flags, logging
from PIL import Image

import data as data_lib
from data import augment, eval_resize, people, proposals

_PNG_KEYS = ('image', 'mask', 'instance_ids')
# J of datasets without joints: their batches still have `keypoints`, with 14 unlabelled joints.
_NO_JOINTS = people.NUM_JOINTS


def default_config() -> ml_collections.ConfigDict:
  """The `config.data` block with every field's default.

  Optional fields are typed placeholders so that `--config.data.data_dir=...` can override them.
  """
  placeholder = ml_collections.config_dict.placeholder  # A new one per field: they are shared refs.
  return ml_collections.ConfigDict(dict(
      name='shapes',  # A key of data.DATASETS.
      variant='default',  # A builder config of that dataset (data.variants(name)).
      data_dir=placeholder(str),  # TFDS data dir; None = $TFDS_DATA_DIR or ~/tensorflow_datasets.
      manual_dir=placeholder(str),  # VOC archives; None = <data_dir>/downloads/manual.
      train_split='train',
      eval_split='validation',
      image_size=64,  # Eval images are fitted (downscale if larger, then pad) to this size.
      max_boxes=8,  # M: boxes/labels/instance masks are padded or truncated to this.
      # crop_size: train crop/pad size; None = image_size.
      augment=dict(flip=True, scale_min=1.0, scale_max=1.0, crop_size=placeholder(int)),
      # External region proposals for R-CNN-style models (data/proposals.py), cached per split.
      # method: None (none; batches have no proposal keys), 'selective_search_fast' or
      # 'selective_search_quality'. max_proposals: P, R-CNN's ~2000 per image.
      proposals=dict(method=placeholder(str), max_proposals=2000),
      worker_count=0,  # 0 = in-process (threads); >0 = grain worker processes.
      read_threads=2,  # Threads that prepare batches ahead in-process.
      # name='coco_json' (data/coco_json.py): COCO-format files; the image folders default to
      # each JSON's own folder. keypoint_sigmas: OKS sigmas of its joints (default: COCO's).
      train_json=placeholder(str), train_images=placeholder(str),
      eval_json=placeholder(str), eval_images=placeholder(str), keypoint_sigmas=placeholder(tuple),
      # name='mask_folder' (data/mask_folder.py): folders with images/ + masks/ (or VOC's
      # Annotations/ + JPEGImages/); class names as a list or a file of one name a line.
      train_dir=placeholder(str), eval_dir=placeholder(str), class_names=placeholder(tuple),
      class_names_file=placeholder(str),
      # The reference's eval-time resize (data/eval_resize.py): shorter side to eval_min_size,
      # longer side at most eval_max_size, padded to a fixed canvas whose sides are multiples of
      # eval_size_divisor. None: fit into image_size x image_size (downscale only).
      eval_min_size=placeholder(int), eval_max_size=1333, eval_size_divisor=32,
  ))


def _get(cfg, key, default):
  return cfg.get(key, default) if hasattr(cfg, 'get') else getattr(cfg, key, default)


def _num_proposals(cfg) -> int:
  """P, the proposals per batch element (data.proposals.max_proposals); 0 when they are off."""
  block = _get(cfg, 'proposals', None)
  method = _get(block, 'method', None) if block is not None else None
  if method is None:
    return 0
  proposals.mode_of(method)  # Fails early, listing the valid methods.
  if int(block.max_proposals) < 1:
    raise ValueError('config.data.proposals.max_proposals must be >= 1, got '
                     f'{block.max_proposals}')
  return int(block.max_proposals)


def _builder(cfg) -> tfds.core.DatasetBuilder:
  name, variant = cfg.name, _get(cfg, 'variant', 'default')
  cls = data_lib.get_dataset(name)
  if hasattr(cls, 'from_data_config'):  # Described by config.data paths, not by a variant.
    return cls.from_data_config(cfg)
  valid = data_lib.variants(name)
  if variant not in valid:
    raise ValueError(f'Unknown variant {variant!r} of dataset {name!r}; valid variants: {valid}')
  return cls(config=variant, data_dir=_get(cfg, 'data_dir', None))


def ensure_prepared(cfg) -> tfds.core.DatasetBuilder:
  """Returns the builder, generating/preparing the dataset first if it is not on disk yet."""
  builder = _builder(cfg)
  if not builder.is_prepared():
    logging.info('Preparing dataset %s/%s into %s (first use; later runs reuse it).',
                 cfg.name, builder.builder_config.name, builder.data_dir)
    print(f'Preparing dataset {cfg.name}/{builder.builder_config.name} into {builder.data_dir} '
          '(first use).', flush=True)
    manual_dir = _get(cfg, 'manual_dir', None)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=download_config)
  return builder


def _joints(builder) -> people.JointSet | None:
  """The joint set of the builder's keypoints: builders with keypoints name it as `joints`."""
  return getattr(builder, 'joints', None)


def _annotation_file(builder, cfg, split: str) -> str | None:
  """The COCO annotation JSON of `split` for builders that have one (COCO-format data)."""
  if not hasattr(builder, 'annotation_file'):
    return None
  manual_dir = _get(cfg, 'manual_dir', None)
  return builder.annotation_file(split, *([manual_dir] if manual_dir else []))


def dataset_info(cfg) -> dict:
  """num_classes (incl. background), class_names, category_ids (the dataset's id of labels 1..K),
  eval_annotations (its COCO JSON of the eval split, or None), image_size, max_boxes,
  max_proposals (0: no proposals), joints (the `data.people.JointSet` of the keypoints, None
  without), num_joints (J of the batches' keypoints), vocab (the `data.captions.Vocabulary` of
  datasets with phrases, else None), max_caption_len (its T, or 0), num_train, num_eval.

  Needs no prepared data (models can be built before the data exists); the example counts are
  None until the dataset is prepared.
  """
  builder = _builder(cfg)
  names = list(builder.info.features['objects']['label'].names)
  prepared = builder.is_prepared()
  count = lambda split: builder.info.splits[split].num_examples if prepared else None
  joints = _joints(builder)
  vocab = getattr(builder, 'vocab', None)
  eval_split = _get(cfg, 'eval_split', 'validation')
  return dict(num_classes=len(names), class_names=names, image_size=int(cfg.image_size),
              # The dataset's own id of label k (at k - 1) and its eval annotation file, where it
              # has them (COCO-format data): predictions and COCO evaluation use both.
              category_ids=tuple(getattr(builder, 'category_ids', range(1, len(names)))),
              eval_annotations=_annotation_file(builder, cfg, eval_split),
              max_boxes=int(cfg.max_boxes), max_proposals=_num_proposals(cfg), joints=joints,
              num_joints=_NO_JOINTS if joints is None else joints.num_joints, vocab=vocab,
              max_caption_len=vocab.max_len if vocab else 0,
              num_train=count(_get(cfg, 'train_split', 'train')),
              num_eval=count(eval_split))


# ---------------------------------------------------------------------------------- decoding ---


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

  def __init__(self, cfg, split: str, *, with_proposals: bool = True):
    builder = ensure_prepared(cfg)
    self._where = f'dataset {cfg.name}/{builder.builder_config.name} split {split!r}'
    features = builder.info.features
    # Box-only datasets (VOC detection) store no masks; difficult flags only some datasets have.
    self._keys = [k for k in _PNG_KEYS if k in features]
    self.has_difficult = 'difficult' in features['objects'].feature
    self.joints = _joints(builder)
    self.num_joints = _NO_JOINTS if self.joints is None else self.joints.num_joints
    self.vocab = getattr(builder, 'vocab', None)
    self._caption_flip = self.vocab.flip_permutation() if self.vocab else None
    # From the builder itself: builders made from config.data (coco_json) have no registered name.
    self._source = builder.as_data_source(
        split=split, decoders={k: tfds.decode.SkipDecoding() for k in self._keys})
    self._proposals = None
    if with_proposals and _num_proposals(cfg):
      boxes, count = proposals.load_or_compute(cfg, split)
      if len(count) != len(self._source):
        raise ValueError(f'{proposals.cache_path(cfg, split)} holds proposals of {len(count)} '
                         f'examples but {self._where} has {len(self._source)}; delete the file '
                         'to recompute it.')
      # Only the real boxes (views of one flat array): far smaller than the padded cache, also
      # when grain pickles the source to its worker processes.
      self._proposals = np.split(boxes[np.arange(boxes.shape[1]) < count[:, None]],
                                 np.cumsum(count)[:-1])

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
    if self._proposals is not None:
      ex['proposals'] = self._proposals[index]
    ex['image_id'] = _image_id(raw['id'], index)
    if self.vocab is not None:  # Dense captioning: token ids of each object's phrase.
      ex['captions'] = self.vocab.encode_all(self.phrases(index))
      ex['caption'] = self.vocab.encode(_text(raw['caption']))
      ex['caption_flip'] = self._caption_flip
    return ex

  def __repr__(self) -> str:
    return f'DecodedSource({self._where})'


# ---------------------------------------------------------------------------------- elements ---


def to_element(ex: dict, max_boxes: int, max_proposals: int = 0) -> dict:
  """Decoded/augmented example -> one batch element with CONTRACTS.md dtypes, padded to M.

  Proposals, if the example has them, are padded or truncated to `max_proposals`.
  """
  image = ex['image']
  image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
  h, w = image.shape[:2]
  keep = np.flatnonzero(ex.get('box_valid', np.ones(len(ex['labels']), bool)))[:max_boxes]
  n = len(keep)
  boxes = np.zeros((max_boxes, 4), np.float32)
  labels = np.zeros((max_boxes,), np.int32)
  valid = np.zeros((max_boxes,), bool)
  boxes[:n], labels[:n], valid[:n] = ex['boxes'][keep], ex['labels'][keep], True
  masks = np.zeros((max_boxes, h, w), np.uint8)
  if 'instance_ids' in ex:  # Detection-only datasets have none: their masks stay empty.
    ids = ex['instance_ids']
    masks[:n] = ids[None] == (keep + 1).astype(ids.dtype)[:, None, None]
  joints = ex['keypoints'].shape[1] if 'keypoints' in ex else _NO_JOINTS
  keypoints = np.zeros((max_boxes, joints, 3), np.float32)
  if 'keypoints' in ex:
    keypoints[:n] = ex['keypoints'][keep]
  out = dict(image=np.ascontiguousarray(image, np.float32),
             mask=np.ascontiguousarray(ex['mask'], np.int32), boxes=boxes, labels=labels,
             instance_masks=masks, valid=valid, keypoints=keypoints)
  if 'difficult' in ex:  # Boxes that evaluation ignores (VOC 'difficult', COCO crowds).
    out['difficult'] = np.zeros((max_boxes,), bool)
    out['difficult'][:n] = ex['difficult'][keep]
  if 'captions' in ex:
    out['captions'] = np.zeros((max_boxes, ex['captions'].shape[1]), np.int32)
    out['captions'][:n] = ex['captions'][keep]
    out['caption'] = ex['caption'].astype(np.int32)
  if 'proposals' in ex:
    props = ex['proposals']
    kept = props[ex.get('proposal_valid', np.ones(len(props), bool))][:max_proposals]
    out['proposals'] = np.zeros((max_proposals, 4), np.float32)
    out['proposals'][:len(kept)] = kept
    out['proposal_valid'] = np.arange(max_proposals) < len(kept)
  return out


def _crop_hw(cfg) -> tuple[int, int]:
  crop = _get(cfg.augment, 'crop_size', None) if 'augment' in cfg else None
  size = int(crop or cfg.image_size)
  return size, size


def _to_float(ex: dict) -> dict:
  return dict(ex, image=ex['image'].astype(np.float32) * np.float32(1 / 255))


def _train_element(index: int, ex: dict, *, cfg, seed: int, process_index: int) -> dict:
  # One generator per (seed, host, position in the repeated stream): no epoch counter needed and
  # independent of which thread/process computes it.
  rng = np.random.default_rng([seed, process_index, index])
  aug = _get(cfg, 'augment', {})
  ex = augment.random_augment(
      _to_float(ex), rng, crop_hw=_crop_hw(cfg), flip=bool(_get(aug, 'flip', True)),
      scale_min=float(_get(aug, 'scale_min', 1.0)), scale_max=float(_get(aug, 'scale_max', 1.0)))
  return to_element(ex, cfg.max_boxes, _num_proposals(cfg))


def _eval_element(ex: dict, *, cfg) -> dict:
  """Resized by the reference rule (unpadded; `eval_resize.collate` pads) or fitted into
  image_size, with the frame keys that map predictions back to the source image."""
  orig_hw = ex['image'].shape[:2]
  resize = eval_resize.settings(cfg)
  if resize:
    ex = eval_resize.resize(_to_float(ex), *resize[:2])
    image_hw = ex['image'].shape[:2]
  else:
    size = (int(cfg.image_size),) * 2
    image_hw = augment.fitted_hw(*orig_hw, size)
    ex = augment.fit(_to_float(ex), size)
  out = to_element(ex, cfg.max_boxes, _num_proposals(cfg))
  out['example_valid'] = np.bool_(True)
  out.update(eval_resize.frame_keys(orig_hw, image_hw, ex['image_id']))
  return out


def _padding_element(cfg, difficult: bool, num_joints: int, caption_len: int) -> dict:
  size, m, p = int(cfg.image_size), int(cfg.max_boxes), _num_proposals(cfg)
  proposal_keys = dict(proposals=np.zeros((p, 4), np.float32), proposal_valid=np.zeros((p,), bool))
  caption_keys = dict(captions=np.zeros((m, caption_len), np.int32),
                      caption=np.zeros((caption_len,), np.int32))
  return dict(image=np.zeros((size, size, 3), np.float32),
              mask=np.full((size, size), augment.IGNORE, np.int32),
              boxes=np.zeros((m, 4), np.float32), labels=np.zeros((m,), np.int32),
              instance_masks=np.zeros((m, size, size), np.uint8), valid=np.zeros((m,), bool),
              keypoints=np.zeros((m, num_joints, 3), np.float32), example_valid=np.bool_(False),
              **({'difficult': np.zeros((m,), bool)} if difficult else {}),
              **(proposal_keys if p else {}), **(caption_keys if caption_len else {}),
              **eval_resize.frame_keys((0, 0), (0, 0), -1))


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> None:
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, process_count={process_count})')
  if batch_size <= 0:
    raise ValueError(f'batch size must be positive, got {batch_size}')


# ----------------------------------------------------------------------------------- public ---


def make_train_iterator(cfg, *, global_batch_size: int, seed: int, process_index: int = 0,
                        process_count: int = 1) -> grain.DatasetIterator:
  """Infinite iterator of this host's train batches (global_batch_size // process_count each).

  Host p reads records p, p + P, p + 2P, ...; each epoch is reshuffled from `seed`. The returned
  iterator is checkpointable: `set_state(get_state())` resumes with exactly the same batches.
  """
  if global_batch_size % process_count:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by process_count '
                     f'{process_count}')
  per_host = global_batch_size // process_count
  _check_sharding(per_host, process_index, process_count)
  source = DecodedSource(cfg, _get(cfg, 'train_split', 'train'))
  ds = grain.MapDataset.source(source)[process_index::process_count]
  if len(ds) < per_host:
    raise ValueError(f'{source}: shard {process_index}/{process_count} has {len(ds)} examples, '
                     f'fewer than one batch of {per_host}')
  ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.map_with_index(functools.partial(_train_element, cfg=cfg, seed=seed,
                                           process_index=process_index))
  ds = ds.batch(per_host, drop_remainder=True)
  threads = int(_get(cfg, 'read_threads', 2))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4))
  workers = int(_get(cfg, 'worker_count', 0))
  if workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; scripts/tests may not parse.
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def make_eval_batches(cfg, *, batch_size: int, split: str | None = None, process_index: int = 0,
                      process_count: int = 1) -> grain.MapDataset:
  """This host's share of `split` (default eval_split), once, in order, in batches of batch_size.

  Every host gets the same number of batches (padded with `example_valid` False) so that
  multi-host evaluation steps stay in lockstep.
  """
  _check_sharding(batch_size, process_index, process_count)
  source = DecodedSource(cfg, split or _get(cfg, 'eval_split', 'validation'))
  shard = grain.MapDataset.source(source)[process_index::process_count]
  num_batches = max(1, math.ceil(math.ceil(len(source) / process_count) / batch_size))
  pad = _padding_element(cfg, source.has_difficult, source.num_joints,
                         source.vocab.max_len if source.vocab else 0)
  n = len(shard)

  def element(i):
    return _eval_element(shard[i], cfg=cfg) if i < n else pad

  resize = eval_resize.settings(cfg)
  if resize is None:
    return grain.MapDataset.range(num_batches * batch_size).map(element).batch(batch_size)
  choices = eval_resize.canvases(*resize)
  return grain.MapDataset.range(num_batches).map(lambda b: eval_resize.collate(
      [element(i) for i in range(b * batch_size, (b + 1) * batch_size)], choices))



def image_batches(images, cfg, *, batch_size: int, num_joints: int = _NO_JOINTS):
  """Batches of label-free images (uint8 [H, W, 3], e.g. files to predict on), made exactly as
  the eval split's: resized, padded to the eval canvas, with the frame keys; `image_id` is the
  position in `images`. The last batch is padded with `example_valid` False. Yields
  (indices, batch)."""
  def element(index):
    image = images[index]
    ex = dict(image=image, mask=np.full(image.shape[:2], augment.IGNORE, np.uint8),
              boxes=np.zeros((0, 4), np.float32), labels=np.zeros((0,), np.int32),
              keypoints=np.zeros((0, num_joints, 3), np.float32), image_id=index)
    return _eval_element(ex, cfg=cfg)

  if _num_proposals(cfg):
    raise ValueError('prediction on image files needs a model without external proposals; '
                     'data.proposals.method is set (R-CNN / SPP-net / Fast R-CNN)')
  resize = eval_resize.settings(cfg)
  choices = eval_resize.canvases(*resize) if resize else None
  pad = dict(_padding_element(cfg, False, num_joints, 0), example_valid=np.bool_(False))
  for start in range(0, len(images), batch_size):
    indices = list(range(start, min(start + batch_size, len(images))))
    elements = [element(i) for i in indices]
    elements += [pad] * (batch_size - len(elements))
    if choices:
      yield indices, eval_resize.collate(elements, choices)
    else:
      yield indices, {k: np.stack([e[k] for e in elements]) for k in elements[0]}
