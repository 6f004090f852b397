"""grain input pipelines: tfds array_record source -> decode -> augment -> pad -> batch.

Batches are numpy dicts with the keys and dtypes of CONTRACTS.md. Train iterators are infinite,
shuffled per epoch, sharded per host and checkpointable (`get_state()` / `set_state()`); eval
batches cover a split exactly once, the last batch padded with `example_valid` False.
"""
from __future__ import annotations

import functools
import math
import secrets

import grain.python as grain
import numpy as np
from absl import flags

from data import augment, augment_ssd, eval_resize, proposals
from data.source import NO_JOINTS as _NO_JOINTS
from data.source import DecodedSource, get_builder, joints_of
from data.source import config_field as _get
from data.workers import SlotReader, TrainIterator, init_worker, stack, worker_count

# The per-pixel targets a task may ask its batches to carry (`tasks.base.Task.pixel_targets`):
# 'mask', the semantic mask; 'instances', the instance masks: per-box crops `instance_crops` in
# train batches (what the mask loss reads), the exact id map `instance_ids` in eval batches (what
# mask AP is scored against). Each is ~1 MiB per element at 800x1333, so elements carry only these.
PIXEL_TARGETS = ('mask', 'instances')


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


def _annotation_file(builder, cfg, split: str) -> str | None:
  """The COCO annotation JSON of `split` for builders that have one (COCO-format data)."""
  if not hasattr(builder, 'annotation_file'):
    return None
  manual_dir = _get(cfg, 'manual_dir', None)
  return builder.annotation_file(split, *([manual_dir] if manual_dir else []))


def dataset_info(cfg) -> dict:
  """num_classes (incl. background), class_names, category_ids (the dataset's id of labels 1..K),
  eval_annotations (its COCO JSON of the eval split, or None), image_size, max_boxes,
  mask_crop_size (S of the train batches' `instance_crops`),
  max_proposals (0: no proposals), joints (the `ops.joints.JointSet` of the keypoints, None
  without), num_joints (J of the batches' keypoints), vocab (the `data.captions.Vocabulary` of
  datasets with phrases, else None), max_caption_len (its T, or 0), num_train, num_eval.

  Needs no prepared data (models can be built before the data exists); the example counts are
  None until the dataset is prepared.
  """
  builder = get_builder(cfg)
  names = list(builder.info.features['objects']['label'].names)
  prepared = builder.is_prepared()
  count = lambda split: builder.info.splits[split].num_examples if prepared else None
  joints = joints_of(builder)
  vocab = getattr(builder, 'vocab', None)
  eval_split = _get(cfg, 'eval_split', 'validation')
  return dict(num_classes=len(names), class_names=names, image_size=int(cfg.image_size),
              # The dataset's own id of label k (at k - 1) and its eval annotation file, where it
              # has them (COCO-format data): predictions and COCO evaluation use both.
              category_ids=tuple(getattr(builder, 'category_ids', range(1, len(names)))),
              eval_annotations=_annotation_file(builder, cfg, eval_split),
              max_boxes=int(cfg.max_boxes), max_proposals=_num_proposals(cfg), joints=joints,
              mask_crop_size=int(_get(cfg, 'mask_crop_size', 56)),
              num_joints=_NO_JOINTS if joints is None else joints.num_joints, vocab=vocab,
              max_caption_len=vocab.max_len if vocab else 0,
              num_train=count(_get(cfg, 'train_split', 'train')),
              num_eval=count(eval_split))


def decoded_source(cfg, split: str) -> DecodedSource:
  """`split` decoded, with its external proposals (cached, data/proposals.py) if cfg has them."""
  decoded = DecodedSource(cfg, split)
  if _num_proposals(cfg):
    boxes, count = proposals.load_or_compute(cfg, split)
    if len(count) != len(decoded):
      raise ValueError(f'{proposals.cache_path(cfg, split)} holds proposals of {len(count)} '
                       f'examples but {decoded} has {len(decoded)}; delete the file to recompute '
                       'it.')
    # Only the real boxes (views of one flat array): far smaller than the padded cache, also
    # when grain pickles the source to its worker processes.
    decoded.proposals = np.split(boxes[np.arange(boxes.shape[1]) < count[:, None]],
                                 np.cumsum(count)[:-1])
  return decoded


# ---------------------------------------------------------------------------------- elements ---


def to_element(ex: dict, max_boxes: int, max_proposals: int = 0, *,
               targets=PIXEL_TARGETS, crop_size: int = 0) -> dict:
  """Decoded/augmented example -> one batch element with CONTRACTS.md dtypes, padded to M.

  Compact: the image stays uint8 (the train/eval step makes it float on the device); of the
  per-pixel `targets` only those asked for: the semantic mask uint8, the instances as M
  `crop_size`-square crops of their boxes (`crop_size` > 0) or one uint8 id map (slot j's visible
  pixels are j + 1). Proposals, if the example has them, are padded or truncated to
  `max_proposals`.
  """
  image = ex['image']
  if image.dtype != np.uint8:  # Float [0, 1] images of tests and hand-made examples.
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  h, w = image.shape[:2]
  keep = np.flatnonzero(ex.get('box_valid', np.ones(len(ex['labels']), bool)))[:max_boxes]
  n = len(keep)
  boxes = np.zeros((max_boxes, 4), np.float32)
  labels = np.zeros((max_boxes,), np.int32)
  valid = np.zeros((max_boxes,), bool)
  boxes[:n], labels[:n], valid[:n] = ex['boxes'][keep], ex['labels'][keep], True
  joints = ex['keypoints'].shape[1] if 'keypoints' in ex else _NO_JOINTS
  keypoints = np.zeros((max_boxes, joints, 3), np.float32)
  if 'keypoints' in ex:
    keypoints[:n] = ex['keypoints'][keep]
  out = dict(image=np.ascontiguousarray(image), boxes=boxes, labels=labels, valid=valid,
             keypoints=keypoints, image_hw=np.asarray(ex.get('image_hw', (h, w)), np.int32))
  if 'mask' in targets:
    out['mask'] = np.ascontiguousarray(ex['mask'], np.uint8)
  if 'instances' in targets:
    out.update(_instances(ex, keep, boxes, (h, w), crop_size))
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


def _instances(ex: dict, keep: np.ndarray, boxes: np.ndarray, hw: tuple[int, int],
               crop_size: int) -> dict:
  """`instance_crops` [M, S, S] (crop_size S > 0) or `instance_ids` [H, W] of the kept objects."""
  if 'instance_ids' in ex:  # Source id k + 1 (object k) -> slot j + 1 if object k is kept as j.
    ids = ex['instance_ids']
    slot = np.zeros(max(int(ids.max(initial=0)), len(ex['labels'])) + 1, np.uint8)
    slot[keep + 1] = np.arange(1, len(keep) + 1)
    instance_ids = slot[ids]
  else:  # Detection-only datasets have no masks.
    instance_ids = None
  if not crop_size:
    return dict(instance_ids=np.zeros(hw, np.uint8) if instance_ids is None else instance_ids)
  crops = np.zeros((len(boxes), crop_size, crop_size), np.uint8)
  if instance_ids is not None:
    crops[:len(keep)] = augment.instance_crops(instance_ids, boxes[:len(keep)], crop_size)
  return dict(instance_crops=crops)


def _crop_hw(cfg) -> tuple[int, int]:
  aug = cfg.augment if 'augment' in cfg else {}
  if _get(aug, 'crop_hw', None):
    return tuple(int(v) for v in aug.crop_hw)
  size = int(_get(aug, 'crop_size', None) or cfg.image_size)
  return size, size


def _to_float(ex: dict) -> dict:
  # Eval resizes in float32 as the reference does (`eval_resize` keeps it float; `fit` rounds).
  return dict(ex, image=ex['image'].astype(np.float32) * np.float32(1 / 255))


def train_example(index: int, ex: dict, *, cfg, seed: int, process_index: int) -> dict:
  """Train example `index` of the repeated stream, augmented (full-size arrays)."""
  # One generator per (seed, host, position in the repeated stream): no epoch counter needed and
  # independent of which thread/process computes it.
  rng = np.random.default_rng([seed, process_index, index])
  aug = _get(cfg, 'augment', {})
  recipe = _get(aug, 'recipe', None)
  if recipe:  # A reference's own recipe (data/augment_ssd.py).
    return augment_ssd.recipe(recipe)(ex, rng, out_hw=_crop_hw(cfg),
                                      flip=bool(_get(aug, 'flip', True)))
  return augment.random_augment(
      ex, rng, crop_hw=_crop_hw(cfg), flip=bool(_get(aug, 'flip', True)),
      scale_min=float(_get(aug, 'scale_min', 1.0)), scale_max=float(_get(aug, 'scale_max', 1.0)),
      min_size=_get(aug, 'min_size', None), max_size=_get(aug, 'max_size', None))


def _without_unread_mask(ex: dict, targets) -> dict:
  """`ex` without a semantic mask that its task does not read: augmenting or resizing it would be
  ~1 MiB of work per element at 800x1333 that `to_element` then drops. (The id map stays: the
  augmentations derive the boxes of cropped objects from it.)"""
  return ex if 'mask' in targets else {k: v for k, v in ex.items() if k != 'mask'}


def train_element(index: int, ex: dict, *, cfg, seed: int, process_index: int,
                  targets=PIXEL_TARGETS) -> dict:
  """Train example `index` of the repeated stream, augmented -> batch element."""
  ex = train_example(index, _without_unread_mask(ex, targets), cfg=cfg, seed=seed,
                     process_index=process_index)
  return to_element(ex, cfg.max_boxes, _num_proposals(cfg), targets=targets,
                    crop_size=int(_get(cfg, 'mask_crop_size', 56)))


def _eval_element(ex: dict, *, cfg, targets) -> dict:
  """Resized by the reference rule (unpadded; `eval_resize.collate` pads) or fitted into
  image_size, with the frame keys that map predictions back to the source image."""
  ex = _without_unread_mask(ex, targets)
  orig_hw = ex['image'].shape[:2]
  resize = eval_resize.settings(cfg)
  if resize:
    ex = eval_resize.resize(_to_float(ex), resize)
    image_hw = ex['image'].shape[:2]
  else:
    size = (int(cfg.image_size),) * 2
    image_hw = augment.fitted_hw(*orig_hw, size)
    ex = augment.fit(_to_float(ex), size)
  out = to_element(ex, cfg.max_boxes, _num_proposals(cfg), targets=targets)
  if resize:  # The reference's float32 resize, unrounded (uint8 moves converted models' outputs).
    out['image'] = ex['image']
  out['example_valid'] = np.bool_(True)
  out.update(eval_resize.frame_keys(orig_hw, image_hw, ex['image_id']))
  return out


def _padding_element(cfg, difficult: bool, num_joints: int, caption_len: int, targets) -> dict:
  size, m, p = int(cfg.image_size), int(cfg.max_boxes), _num_proposals(cfg)
  proposal_keys = dict(proposals=np.zeros((p, 4), np.float32), proposal_valid=np.zeros((p,), bool))
  caption_keys = dict(captions=np.zeros((m, caption_len), np.int32),
                      caption=np.zeros((caption_len,), np.int32))
  pixels = {'mask': ('mask', np.full((size, size), augment.IGNORE, np.uint8)),
            'instances': ('instance_ids', np.zeros((size, size), np.uint8))}
  return dict(image=np.zeros((size, size, 3), np.uint8), **dict(pixels[t] for t in targets),
              boxes=np.zeros((m, 4), np.float32), labels=np.zeros((m,), np.int32),
              valid=np.zeros((m,), bool),
              keypoints=np.zeros((m, num_joints, 3), np.float32),
              example_valid=np.bool_(False),
              **({'difficult': np.zeros((m,), bool)} if difficult else {}),
              **(proposal_keys if p else {}), **(caption_keys if caption_len else {}),
              **eval_resize.frame_keys((0, 0), (0, 0), -1))


def _read_options(cfg) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=int(_get(cfg, 'read_threads', 2)),
                           prefetch_buffer_size=int(_get(cfg, 'prefetch_batches', 4)))


def _check(cfg, batch_size: int, process_index: int, process_count: int) -> None:
  if not 1 <= int(cfg.max_boxes) <= 255:
    raise ValueError(f'config.data.max_boxes must be in [1, 255] (instance ids are uint8), got '
                     f'{cfg.max_boxes}')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, process_count={process_count})')
  if batch_size <= 0:
    raise ValueError(f'batch size must be positive, got {batch_size}')
  recipe = _get(_get(cfg, 'augment', {}), 'recipe', None)
  if recipe:  # An unknown name fails here, listing the valid ones, not in a reader thread.
    augment_ssd.recipe(recipe)


# ----------------------------------------------------------------------------------- public ---


def make_train_iterator(cfg, *, global_batch_size: int, seed: int, process_index: int = 0,
                        process_count: int = 1, targets=PIXEL_TARGETS) -> TrainIterator:
  """Infinite iterator of this host's train batches (global_batch_size // process_count each),
  with the per-pixel `targets` (PIXEL_TARGETS) the task reads.

  Host p reads records p, p + P, p + 2P, ...; each epoch is reshuffled from `seed`. The returned
  iterator is checkpointable: `set_state(get_state())` resumes with exactly the same batches.
  """
  if global_batch_size % process_count:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by process_count '
                     f'{process_count}')
  per_host = global_batch_size // process_count
  _check(cfg, per_host, process_index, process_count)
  source = decoded_source(cfg, _get(cfg, 'train_split', 'train'))
  ds = grain.MapDataset.source(source)[process_index::process_count]
  if len(ds) < per_host:
    raise ValueError(f'{source}: shard {process_index}/{process_count} has {len(ds)} examples, '
                     f'fewer than one batch of {per_host}')
  ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.map_with_index(functools.partial(train_element, cfg=cfg, seed=seed,
                                           process_index=process_index, targets=targets))
  ds = ds.batch(per_host, drop_remainder=True, batch_fn=stack)
  it_ds = ds.to_iter_dataset(_read_options(cfg))
  workers = worker_count(cfg)
  if workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; scripts/tests may not parse.
      flags.FLAGS.mark_as_parsed()
    token = secrets.token_hex(4)  # Names this iterator's shared-memory segments.
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                              worker_init_fn=functools.partial(init_worker, token=token))
    reader = SlotReader(token)
    return TrainIterator(iter(it_ds.map(reader)), workers, reader)
  return TrainIterator(iter(it_ds), workers)


class EvalBatches:
  """The eval batches of a split: `len()` and iteration with bounded read-ahead (a grain
  MapDataset iterates with grain's default buffers: up to 500 batches, a memory leak in effect)."""

  def __init__(self, dataset: grain.MapDataset, read_options: grain.ReadOptions):
    self._dataset, self._read_options = dataset, read_options

  def __len__(self) -> int:
    return len(self._dataset)

  def __iter__(self):
    return iter(self._dataset.to_iter_dataset(self._read_options))


def make_eval_batches(cfg, *, batch_size: int, split: str | None = None, process_index: int = 0,
                      process_count: int = 1, targets=PIXEL_TARGETS) -> EvalBatches:
  """This host's share of `split` (default eval_split), once, in order, in batches of batch_size,
  with the per-pixel `targets` (PIXEL_TARGETS) the task reads.

  Every host gets the same number of batches (padded with `example_valid` False) so that
  multi-host evaluation steps stay in lockstep. Memory: a few batches (`prefetch_batches`).
  """
  _check(cfg, batch_size, process_index, process_count)
  source = decoded_source(cfg, split or _get(cfg, 'eval_split', 'validation'))
  shard = grain.MapDataset.source(source)[process_index::process_count]
  num_batches = max(1, math.ceil(math.ceil(len(source) / process_count) / batch_size))
  pad = _padding_element(cfg, source.has_difficult, source.num_joints,
                         source.vocab.max_len if source.vocab else 0, targets)
  n = len(shard)

  def element(i):
    return _eval_element(shard[i], cfg=cfg, targets=targets) if i < n else pad

  resize = eval_resize.settings(cfg)
  if resize is None:
    batches = grain.MapDataset.range(num_batches * batch_size).map(element).batch(batch_size)
  else:
    choices = resize.canvases()
    batches = grain.MapDataset.range(num_batches).map(lambda b: eval_resize.collate(
        [element(i) for i in range(b * batch_size, (b + 1) * batch_size)], choices))
  return EvalBatches(batches, _read_options(cfg))


def image_batches(images, cfg, *, batch_size: int, num_joints: int = _NO_JOINTS):
  """Batches of label-free images (uint8 [H, W, 3], e.g. files to predict on), made exactly as
  the eval split's: resized, padded to the eval canvas, with the frame keys; `image_id` is the
  position in `images`. The last batch is padded with `example_valid` False. Yields
  (indices, batch)."""
  def element(index):
    image = images[index]
    # An all-ignore semantic mask: segmentation's eval step scores one (and counts nothing).
    ex = dict(image=image, mask=np.full(image.shape[:2], augment.IGNORE, np.uint8),
              boxes=np.zeros((0, 4), np.float32), labels=np.zeros((0,), np.int32),
              keypoints=np.zeros((0, num_joints, 3), np.float32), image_id=index)
    return _eval_element(ex, cfg=cfg, targets=('mask',))

  if _num_proposals(cfg):
    raise ValueError('prediction on image files needs a model without external proposals; '
                     'data.proposals.method is set (R-CNN / SPP-net / Fast R-CNN)')
  resize = eval_resize.settings(cfg)
  choices = resize.canvases() if resize else None
  pad = dict(_padding_element(cfg, False, num_joints, 0, ('mask',)),
             example_valid=np.bool_(False))
  for start in range(0, len(images), batch_size):
    indices = list(range(start, min(start + batch_size, len(images))))
    elements = [element(i) for i in indices]
    elements += [pad] * (batch_size - len(elements))
    if choices:
      yield indices, eval_resize.collate(elements, choices)
    else:
      yield indices, {k: np.stack([e[k] for e in elements]) for k in elements[0]}
