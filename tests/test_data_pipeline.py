"""The grain pipeline and augmentations: contract shapes, determinism, state, sharding, padding."""
import hashlib
import os
import time

import numpy as np
import pytest

import data
from configs import common
from data import augment, pipeline, shapes, workers
from ops.masks import crop_frames, paste_masks

M = 8


@pytest.fixture()
def cfg(tfds_dir):
  c = common.data_config()
  c.variant = 'small'
  c.data_dir = tfds_dir
  c.max_boxes = M
  c.read_threads, c.worker_count = 1, 0
  return c


def _tight(masks):
  boxes, nonempty = augment.tight_boxes_from_masks(masks)
  return boxes, nonempty


def _instance_planes(b, i, eval_batch):
  """bool [M, H, W]: image i's instance masks, from the id map (eval) or pasted crops (train)."""
  if eval_batch:
    return augment.ids_to_masks(b['instance_ids'][i], M).astype(bool)
  frames = crop_frames(b['boxes'][i])
  probs = paste_masks(b['instance_crops'][i] / np.float32(255), frames, b['image'].shape[1:3])
  return np.asarray(probs) >= 0.5


def _check_batch(b, batch, size=64, eval_batch=False):
  crop = common.data_config().mask_crop_size
  expect = {
      'image': (np.uint8, (batch, size, size, 3)), 'mask': (np.uint8, (batch, size, size)),
      'boxes': (np.float32, (batch, M, 4)), 'labels': (np.int32, (batch, M)),
      'valid': (np.bool_, (batch, M)),
      'keypoints': (np.float32, (batch, M, 14, 3)),  # Unlabelled (all 0) for Shapes scenes.
      'image_hw': (np.int32, (batch, 2)),
  }
  if eval_batch:  # Where each image's content is, for mapping predictions back to its frame.
    expect.update(example_valid=(np.bool_, (batch,)), image_hw=(np.int32, (batch, 2)),
                  orig_hw=(np.int32, (batch, 2)), image_id=(np.int64, (batch,)),
                  instance_ids=(np.uint8, (batch, size, size)))
  else:
    expect['instance_crops'] = (np.uint8, (batch, M, crop, crop))
  assert set(b) == set(expect)
  for k, (dtype, shape) in expect.items():
    assert b[k].dtype == dtype and b[k].shape == shape, (k, b[k].dtype, b[k].shape)
  for i in range(batch):
    v = b['valid'][i]
    assert np.all(b['labels'][i][v] >= 1) and np.all(b['labels'][i][~v] == 0)
    planes = _instance_planes(b, i, eval_batch)
    boxes, nonempty = _tight(planes)
    assert np.array_equal(nonempty, v)
    np.testing.assert_allclose(b['boxes'][i], boxes, atol=1.0)
    for j in np.flatnonzero(v):  # Semantic mask agrees with every instance's label.
      agree = b['mask'][i][planes[j]] == b['labels'][i, j]
      assert agree.all() if eval_batch else agree.mean() > 0.9  # Crops: up to boundary cells.
    # The content's extent: everything past it is padding.
    h, w = b['image_hw'][i]
    assert not b['image'][i, h:].any() and not b['image'][i, :, w:].any()


def test_train_batches_match_contract_and_are_consistent(cfg):
  cfg.augment.scale_min, cfg.augment.scale_max, cfg.augment.crop_size = 0.6, 1.6, 48
  it = pipeline.make_train_iterator(cfg, global_batch_size=16, seed=3)
  for _ in range(3):
    b = next(it)
    _check_batch(b, 16, size=48)
  assert np.any(b['mask'] == 255)  # Padding after downscaling is ignore.
  # A task that reads no per-pixel targets (detection) gets batches without them.
  bare = next(pipeline.make_train_iterator(cfg, global_batch_size=2, seed=3, targets=()))
  assert not {'mask', 'instance_crops', 'instance_ids'} & set(bare)


def test_reference_recipe_runs_through_the_train_pipeline(cfg):
  cfg.augment.recipe, cfg.augment.crop_size = 'ssd', 48
  b = next(pipeline.make_train_iterator(cfg, global_batch_size=4, seed=3))
  _check_batch(b, 4, size=48)
  cfg.augment.recipe = 'bogus'
  with pytest.raises(ValueError, match="augment.recipe='bogus': valid: ssd"):
    pipeline.make_train_iterator(cfg, global_batch_size=4, seed=3)


def test_eval_batches_cover_split_once_with_padding(cfg):
  batches = list(pipeline.make_eval_batches(cfg, batch_size=24))
  assert len(batches) == 3  # 64 validation examples.
  for b in batches:
    _check_batch(b, 24, eval_batch=True)
  ev = np.concatenate([b['example_valid'] for b in batches])
  assert ev.sum() == 64 and not ev[64:].any()
  last = batches[-1]
  assert np.all(last['mask'][16:] == 255) and not last['valid'][16:].any()
  ref = shapes.render(next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == 'small'),
                      'validation', 30)
  np.testing.assert_array_equal(batches[1]['image'][6], ref['image'])


def test_same_seed_same_batches_and_state_round_trip(cfg):
  cfg.augment.scale_min, cfg.augment.scale_max = 0.8, 1.25
  it = pipeline.make_train_iterator(cfg, global_batch_size=8, seed=7)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  expected = [next(it) for _ in range(3)]

  again = pipeline.make_train_iterator(cfg, global_batch_size=8, seed=7)
  for b, ref in zip([next(again) for _ in range(3)], first, strict=True):
    for k in ref:
      np.testing.assert_array_equal(b[k], ref[k])

  resumed = pipeline.make_train_iterator(cfg, global_batch_size=8, seed=7)
  resumed.set_state(state)
  for b, ref in zip([next(resumed) for _ in range(3)], expected, strict=True):
    for k in ref:
      np.testing.assert_array_equal(b[k], ref[k])

  other = next(pipeline.make_train_iterator(cfg, global_batch_size=8, seed=8))
  assert not np.array_equal(other['image'], first[0]['image'])


def test_worker_processes_give_the_in_process_batches_and_states(cfg):
  # Two grain workers stack their batches in shared memory; the main process gets ordinary
  # arrays, equal to the in-process batches. A state carries over between worker counts (a
  # checkpoint resumes on a machine with other cores), also at an odd batch count.
  ref = [next(it) for it in [pipeline.make_train_iterator(cfg, global_batch_size=4, seed=5)]
         for _ in range(7)]
  cfg.worker_count = 2
  two = pipeline.make_train_iterator(cfg, global_batch_size=4, seed=5)
  try:
    two.set_state({'batches': 3})
    got = [next(two), next(two)]
    state = two.get_state()
  finally:
    two.close()
  cfg.worker_count = 0
  in_process = pipeline.make_train_iterator(cfg, global_batch_size=4, seed=5)
  in_process.set_state(state)
  got += [next(in_process), next(in_process)]
  for b, expected in zip(got, ref[3:], strict=True):
    assert set(b) == set(expected)
    for k in expected:
      assert type(b[k]) is np.ndarray, k  # Not a view of the worker's shared memory.
      np.testing.assert_array_equal(b[k], expected[k])
  # grain's own states, in checkpoints written before: in-process, and 2 workers after 3 batches.
  grain_state = dict(next_index_in_cycle=1, next_index_in_datasets=2,
                     iterators_in_use_indices=[0, 1], exhausted=[0, 0], future_states={},
                     iterators_in_use_states=[{'next_index': 2}, {'next_index': 1}])
  for old in [{'next_index': 3}, grain_state]:
    in_process.set_state(old)
    np.testing.assert_array_equal(next(in_process)['image'], ref[3]['image'])


def test_worker_slots_are_reused_and_nothing_is_left_in_shared_memory(cfg):
  # Each worker refills a few shared-memory slots once the main process has copied their batch
  # out (data.workers._Pool): over many batches the batches stay the in-process ones, few slots
  # serve them all, and none of the iterator's segments is left in /dev/shm after close().
  batches = 32
  cfg.prefetch_batches = 1  # Fewer batches in flight, so that reuse shows in 16 per worker.
  in_process = pipeline.make_train_iterator(cfg, global_batch_size=2, seed=3)
  ref = [next(in_process) for _ in range(batches)]
  cfg.worker_count = 2
  two = pipeline.make_train_iterator(cfg, global_batch_size=2, seed=3)
  try:
    got = [next(two) for _ in range(batches)]
    stats = two.slot_stats()
  finally:
    two.close()
  for b, expected in zip(got, ref, strict=True):  # Compared last: no batch aliases a reused slot.
    for k in expected:
      np.testing.assert_array_equal(b[k], expected[k])
  assert stats['from_slots'] == batches and 2 <= stats['slots'] < batches // 2, stats
  prefix = two._reader._prefix
  left = [name for name in os.listdir('/dev/shm') if name.startswith(prefix)]
  assert not left, left


def test_default_worker_count_is_in_process_on_two_cores(cfg, monkeypatch):
  cfg.worker_count = -1
  for cores, expected in [(1, 0), (2, 0), (3, 0), (4, 4), (8, 8)]:
    monkeypatch.setattr(workers.os, 'sched_getaffinity', lambda pid, n=cores: set(range(n)))
    assert workers.worker_count(cfg) == expected, cores
  cfg.worker_count = 2  # An explicit count is kept.
  assert workers.worker_count(cfg) == 2


def test_train_epochs_are_reshuffled(cfg):
  cfg.augment.flip = False
  it = pipeline.make_train_iterator(cfg, global_batch_size=64, seed=0)
  epochs = [np.concatenate([next(it)['image'] for _ in range(4)]) for _ in range(2)]
  keys = [[hashlib.md5(x.tobytes()).hexdigest() for x in e] for e in epochs]
  assert len(set(keys[0])) == 256 and set(keys[0]) == set(keys[1]) and keys[0] != keys[1]


def _hashes(images):
  return {hashlib.md5(x.tobytes()).hexdigest() for x in images}


def test_sharding_gives_disjoint_halves(cfg):
  cfg.augment.flip = False
  batches = pipeline.make_eval_batches(cfg, batch_size=32)
  full = _hashes(np.concatenate([b['image'] for b in batches]))
  halves = []
  for p in range(2):
    bs = list(pipeline.make_eval_batches(cfg, batch_size=16, process_index=p, process_count=2))
    assert len(bs) == 2
    imgs = np.concatenate([b['image'][b['example_valid']] for b in bs])
    halves.append(_hashes(imgs))
  assert len(halves[0]) == len(halves[1]) == 32
  assert not halves[0] & halves[1] and halves[0] | halves[1] == full

  train = []
  for p in range(2):
    it = pipeline.make_train_iterator(cfg, global_batch_size=32, seed=1, process_index=p,
                                      process_count=2)
    batches = [next(it) for _ in range(8)]  # One epoch of the 128-example shard.
    assert batches[0]['image'].shape[0] == 16
    train.append(_hashes(np.concatenate([b['image'] for b in batches])))
  assert len(train[0]) == len(train[1]) == 128 and not train[0] & train[1]


def test_bad_names_and_sizes_fail_clearly(cfg):
  cfg.name = 'nope'
  with pytest.raises(ValueError, match="valid names.*shapes.*voc2012_segmentation"):
    pipeline.make_train_iterator(cfg, global_batch_size=8, seed=0)
  with pytest.raises(ValueError, match='valid names'):
    data.get_dataset('coco')
  cfg.name, cfg.variant = 'shapes', 'huge'
  with pytest.raises(ValueError, match=r"valid variants: \['default', 'small', "):
    pipeline.dataset_info(cfg)
  cfg.variant = 'small'
  with pytest.raises(ValueError, match='not divisible'):
    pipeline.make_train_iterator(cfg, global_batch_size=9, seed=0, process_count=2)


def test_corrupt_png_names_dataset_split_and_index(cfg):
  source = pipeline.DecodedSource(cfg, 'validation')
  raw = dict(source._source[5])
  raw['image'] = raw['image'][:100]  # Truncated file.
  source._source = {5: raw}
  with pytest.raises(ValueError, match=r"shapes/small split 'validation' index 5"):
    source[5]


def test_dataset_info(cfg):
  info = pipeline.dataset_info(cfg)
  assert info == dict(num_classes=5, class_names=list(shapes.CLASS_NAMES), image_size=64,
                      max_boxes=M, max_proposals=0, joints=None, num_joints=14, vocab=None,
                      max_caption_len=0, num_train=256, num_eval=64, category_ids=(1, 2, 3, 4),
                      eval_annotations=None, mask_crop_size=56)


def _scene():
  ex = shapes.render(next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == 'small'),
                     'train', 3)
  ex['image'] = ex['image'].astype(np.float32) / 255
  return ex


@pytest.mark.parametrize('seed', range(12))
def test_augment_keeps_boxes_on_instance_masks(seed):
  ex = _scene()
  rng = np.random.default_rng(seed)
  out = augment.random_augment(ex, rng, crop_hw=(56, 48), flip=True, scale_min=0.5, scale_max=2.0)
  assert out['image'].shape == (56, 48, 3) and out['mask'].shape == (56, 48)
  masks = augment.ids_to_masks(out['instance_ids'], len(ex['labels']))
  boxes, nonempty = _tight(masks)
  np.testing.assert_array_equal(out['box_valid'], nonempty)
  np.testing.assert_allclose(out['boxes'], boxes, atol=1.0)
  lut = np.concatenate([[0], ex['labels']])
  inside = out['mask'] != 255
  np.testing.assert_array_equal(out['mask'][inside], lut[out['instance_ids'][inside]])


@pytest.mark.parametrize('flip,scale', [(True, 1.0), (False, 1.5), (True, 0.75), (True, 2.0)])
def test_geometric_box_transform_matches_masks(flip, scale):
  """Box-only data (no masks) is transformed geometrically; it must agree with the masks."""
  ex = _scene()
  masks = augment.ids_to_masks(ex['instance_ids'], len(ex['labels']))
  nh = nw = round(64 * scale)
  box_only = {k: ex[k] for k in ('image', 'mask', 'boxes', 'labels')}
  out = augment.transform(box_only, flip=flip, out_hw=(nh, nw), oy=0, ox=0, crop_hw=(nh, nw))
  with_masks = augment.transform(dict(box_only, instance_masks=masks), flip=flip, out_hw=(nh, nw),
                                 oy=0, ox=0, crop_hw=(nh, nw))
  assert out['box_valid'].all()
  np.testing.assert_allclose(out['boxes'], with_masks['boxes'], atol=1.0)
  # A crop that cuts boxes: clipped to the window; boxes fully outside become invalid.
  out = augment.transform(box_only, flip=False, out_hw=(64, 64), oy=40, ox=-8, crop_hw=(32, 32))
  b = ex['boxes'] - np.array([40, -8, 40, -8], np.float32)
  inside = (b[:, 2] > 0) & (b[:, 0] < 32) & (b[:, 3] > 0) & (b[:, 1] < 32)
  np.testing.assert_array_equal(out['box_valid'], inside)
  np.testing.assert_allclose(out['boxes'][inside], b[inside].clip(0, 32))
  assert np.all(out['image'][:, :8] == 0) and np.all(out['mask'][:, :8] == 255)


def test_resize_matches_reference():
  img = np.random.default_rng(0).uniform(size=(5, 7, 3)).astype(np.float32)
  np.testing.assert_allclose(augment.resize_bilinear(img, 10, 14)[::2, ::2].mean(), img.mean(),
                             atol=0.05)
  np.testing.assert_allclose(augment.resize_bilinear(img, 5, 7), img)
  ids = np.arange(12, dtype=np.uint8).reshape(3, 4)
  np.testing.assert_array_equal(augment.resize_nearest(ids, 6, 8), ids.repeat(2, 0).repeat(2, 1))


def _rss() -> int:
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmRSS:'))


def test_eval_memory_stays_bounded_by_the_buffers(cfg):
  """A consumer slower than the readers: memory holds a few batches, not the split (with grain's
  default buffers, up to 500 batches, RSS grew by ~7 batches here and on with the split)."""
  cfg.image_size, cfg.read_threads, cfg.prefetch_batches = 512, 1, 2  # 1.3 MB elements.
  batches = pipeline.make_eval_batches(cfg, batch_size=4)
  assert len(batches) == 16
  growth, start = 0, None
  for batch in batches:
    start = start or _rss()
    growth = max(growth, _rss() - start)
    batch_bytes = sum(v.nbytes for v in batch.values())
    time.sleep(0.25)  # Slower than the readers, so their buffers fill up.
  # read_threads + prefetch_batches + the batch in hand (grain's defaults: ~7 batches here).
  assert growth < 4 * batch_bytes, (growth, batch_bytes)


@pytest.mark.parametrize('min_size,max_size,want_hw', [(80, 1000, 80), (80, 72, 72)])
def test_recipe_resize_scales_the_shorter_side_and_pads_bottom_right(min_size, max_size, want_hw):
  ex = _scene()  # 64 x 64.
  out = augment.random_augment(ex, np.random.default_rng(0), crop_hw=(96, 96), flip=False,
                               min_size=min_size, max_size=max_size)
  np.testing.assert_array_equal(out['image_hw'], [want_hw, want_hw])
  assert out['image'][want_hw:].max() == 0 and np.all(out['mask'][:, want_hw:] == 255)
  scale = want_hw / 64
  np.testing.assert_allclose(out['boxes'][out['box_valid']],
                             ex['boxes'][out['box_valid']] * scale, atol=1.0)
