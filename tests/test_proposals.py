"""Selective search proposals: determinism, the on-disk cache, recall, and pipeline delivery."""
import os

import numpy as np
import pytest

from configs import loader
from data import augment, pipeline, proposals
from data import source as data_source

P = 50


@pytest.fixture()
def cfg(tfds_dir):
  c = loader.load('configs/det/faster_rcnn_shapes.py:runlocal').data
  c.data_dir = tfds_dir
  c.read_threads, c.worker_count = 1, 0
  c.proposals.method = 'selective_search_fast'
  c.proposals.max_proposals = P
  c.train_split = 'validation'  # Shares the validation cache: 64 images instead of 256.
  return c


def test_boxes_are_y1x1y2x2_pixels_with_exclusive_ends():
  image = np.full((48, 64, 3), 128, np.uint8)  # H != W catches swapped axes.
  image[10:30, 5:40] = (200, 30, 30)
  boxes = proposals.selective_search(image, 'fast', 100)
  assert boxes.dtype == np.float32 and boxes.shape[1] == 4
  assert [10, 5, 30, 40] in boxes.tolist()
  assert np.all(boxes[:, 2:] - boxes[:, :2] >= proposals.MIN_SIDE)
  assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= 48) and np.all(boxes[:, 3] <= 64)
  assert len(np.unique(boxes, axis=0)) == len(boxes)
  assert len(proposals.selective_search(image, 'fast', 2)) == 2


@pytest.mark.parametrize('mode', proposals.MODES)
def test_selective_search_is_deterministic(cfg, mode):
  source = data_source.DecodedSource(cfg, 'validation')
  images = [source[i]['image'] for i in range(4)]
  first = [proposals.selective_search(im, mode, 1000) for im in images]
  # Reversed order: an image's boxes must not depend on what ran before it.
  second = [proposals.selective_search(im, mode, 1000) for im in images[::-1]][::-1]
  for a, b in zip(first, second, strict=True):
    np.testing.assert_array_equal(a, b)


def test_cache_is_next_to_the_dataset_and_reused(cfg, monkeypatch):
  boxes, count = proposals.load_or_compute(cfg, 'validation')
  path = proposals.cache_path(cfg, 'validation')
  data_dir = data_source.ensure_prepared(cfg).data_dir
  assert path == os.path.join(data_dir, 'proposals', f'fast_{P}_validation.npz')
  files = os.listdir(os.path.dirname(path))  # Other tests may have cached other splits.
  assert os.path.basename(path) in files and not [f for f in files if f.endswith('.tmp')]
  assert boxes.shape == (64, P, 4) and boxes.dtype == np.float32
  assert count.shape == (64,) and count.dtype == np.int32 and np.all((count > 0) & (count <= P))
  assert not boxes[np.arange(P) >= count[:, None]].any()  # Padding is zeros.
  recomputed = proposals.compute(cfg, 'validation')
  np.testing.assert_array_equal(recomputed['boxes'], boxes)
  np.testing.assert_array_equal(recomputed['count'], count)

  def fail(*args, **kwargs):
    raise AssertionError('selective search ran although the cache exists')

  monkeypatch.setattr(proposals, 'selective_search', fail)
  again, again_count = proposals.load_or_compute(cfg, 'validation')
  np.testing.assert_array_equal(again, boxes)
  np.testing.assert_array_equal(again_count, count)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
  def killed(f, **arrays):
    f.write(b'partial')
    raise KeyboardInterrupt

  monkeypatch.setattr(proposals.np, 'savez_compressed', killed)
  path = str(tmp_path / 'proposals' / 'fast_5_train.npz')
  with pytest.raises(KeyboardInterrupt):
    proposals._save_atomically(path, boxes=np.zeros((1, 5, 4), np.float32))
  assert os.listdir(tmp_path / 'proposals') == []


def test_recall_of_hand_made_proposals():
  gt = [np.array([[0, 0, 10, 10]]), np.array([[20, 20, 30, 30], [0, 0, 10, 10]]),
        np.array([[0, 0, 4, 4]])]
  exact = np.zeros((3, 2, 4), np.float32)
  exact[0, 0], exact[1, :2], exact[2, 0] = gt[0][0], gt[1], gt[2][0]
  assert proposals.recall(exact, np.array([1, 2, 1]), gt) == {
      'recall@0.5': 1.0, 'recall@0.7': 1.0, 'num_gt': 4}

  shifted = np.zeros((3, 2, 4), np.float32)
  shifted[0, 0] = [0, 2, 10, 12]  # IoU 80 / 120 = 0.67.
  shifted[1, 0] = [20, 21, 30, 31]  # IoU 90 / 110 = 0.82.
  shifted[1, 1] = [0, 5, 10, 15]  # IoU 50 / 150 = 0.33.
  shifted[2, 0] = gt[2][0]  # Padding (count 0): must not count.
  result = proposals.recall(shifted, np.array([1, 2, 0]), gt, thresholds=(0.3, 0.5, 0.7, 0.9))
  assert result == {'recall@0.3': 0.75, 'recall@0.5': 0.5, 'recall@0.7': 0.25, 'recall@0.9': 0.0,
                    'num_gt': 4}


def test_batches_carry_the_cached_proposals(cfg):
  boxes, count = proposals.load_or_compute(cfg, 'validation')
  batches = list(pipeline.make_eval_batches(cfg, batch_size=48))
  props = np.concatenate([b['proposals'] for b in batches])
  valid = np.concatenate([b['proposal_valid'] for b in batches])
  assert props.shape == (96, P, 4) and props.dtype == np.float32
  assert valid.shape == (96, P) and valid.dtype == np.bool_
  # Eval images are already 64x64, so proposals arrive as cached; padding examples have none.
  np.testing.assert_array_equal(props[:64], boxes)
  np.testing.assert_array_equal(valid[:64], np.arange(P) < count[:, None])
  assert not valid[64:].any() and not props[64:].any()

  cfg.augment.scale_min, cfg.augment.scale_max, cfg.augment.crop_size = 0.8, 1.25, 48
  b = next(pipeline.make_train_iterator(cfg, global_batch_size=4, seed=0))
  assert b['proposals'].shape == (4, P, 4) and b['proposal_valid'].shape == (4, P)
  assert b['proposal_valid'].any(axis=1).all()
  real = b['proposals'][b['proposal_valid']]
  assert np.all(real[:, 2:] > real[:, :2]) and np.all(real >= 0) and np.all(real <= 48)
  assert not b['proposals'][~b['proposal_valid']].any()


def test_flip_and_crop_move_proposals_like_boxes():
  ex = dict(image=np.zeros((8, 10, 3), np.float32), mask=np.zeros((8, 10), np.uint8),
            boxes=np.array([[1, 2, 4, 5]], np.float32), labels=np.array([1], np.int32),
            proposals=np.array([[1, 2, 4, 5], [0, 0, 8, 10], [2, 7, 6, 9]], np.float32))
  out = augment.transform(ex, flip=True, out_hw=(8, 10), oy=0, ox=0, crop_hw=(8, 10))
  np.testing.assert_array_equal(out['proposals'], [[1, 5, 4, 8], [0, 0, 8, 10], [2, 1, 6, 3]])
  np.testing.assert_array_equal(out['proposals'][:1], out['boxes'])
  assert out['proposal_valid'].all()

  cropped = augment.transform(ex, flip=False, out_hw=(8, 10), oy=0, ox=5, crop_hw=(8, 5))
  np.testing.assert_array_equal(cropped['proposal_valid'], [False, True, True])
  element = pipeline.to_element(cropped, max_boxes=2, max_proposals=4)
  np.testing.assert_array_equal(element['proposals'],
                                [[0, 0, 8, 5], [2, 2, 6, 4], [0, 0, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(element['proposal_valid'], [True, True, False, False])


def test_unknown_method_names_the_valid_ones(cfg):
  cfg.proposals.method = 'edge_boxes'
  with pytest.raises(ValueError, match='selective_search_fast.*selective_search_quality'):
    pipeline.make_eval_batches(cfg, batch_size=8)
  with pytest.raises(ValueError, match='selective_search_fast'):
    proposals.load_or_compute(cfg, 'validation')
