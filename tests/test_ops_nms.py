"""Tiled NMS against a numpy port of torchvision's greedy CPU kernel."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import nms as nms_lib


def ref_nms(boxes, scores, thr, valid=None, classes=None):
  """torchvision/csrc/ops/cpu/nms_kernel.cpp in float32, with explicit loops (yxyx boxes)."""
  boxes = boxes.astype(np.float32)
  y1, x1, y2, x2 = boxes.T
  areas = (x2 - x1) * (y2 - y1)
  order = np.argsort(-scores, kind="stable")
  suppressed = np.zeros(len(boxes), bool) if valid is None else ~valid
  keep = []
  with np.errstate(invalid="ignore", divide="ignore"):
    for i in order:
      if suppressed[i]:
        continue
      keep.append(i)
      # The kernel's inner loop over j, vectorised: the same float32 operations per element.
      w = np.maximum(np.float32(0), np.minimum(x2[i], x2) - np.maximum(x1[i], x1))
      h = np.maximum(np.float32(0), np.minimum(y2[i], y2) - np.maximum(y1[i], y1))
      inter = w * h
      over = inter / (areas[i] + areas - inter) > np.float32(thr)
      if classes is not None:
        over &= classes == classes[i]
      suppressed |= over
      suppressed[i] = True
  return np.asarray(keep, np.int64)


def _random_boxes(rng, n, size=100.0, max_wh=40.0):
  yx = rng.uniform(0, size, (n, 2))
  hw = rng.uniform(1, max_wh, (n, 2))
  return np.concatenate([yx, yx + hw], 1).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("max_output", "tile_size"))
def _nms(boxes, scores, thr, valid=None, *, max_output, tile_size=256):
  return nms_lib.nms(boxes, scores, thr, max_output, valid, tile_size=tile_size)


def _check(got, want, max_output):
  idx, valid = (np.asarray(x) for x in got)
  want = want[:max_output]
  assert valid.sum() == len(want)
  assert not valid[len(want):].any() and valid[:len(want)].all()
  np.testing.assert_array_equal(idx[:len(want)], want)
  np.testing.assert_array_equal(idx[len(want):], 0)


@pytest.mark.parametrize("n,thr,tile", [(300, 0.5, 64), (300, 0.3, 256), (1000, 0.7, 128),
                                        (37, 0.5, 256)])
def test_matches_reference_on_random_boxes(n, thr, tile):
  rng = np.random.default_rng(n)
  boxes = _random_boxes(rng, n)
  scores = rng.uniform(size=n).astype(np.float32)
  _check(_nms(boxes, scores, thr, max_output=n, tile_size=tile), ref_nms(boxes, scores, thr), n)


def test_tied_scores_keep_lower_index_first():
  rng = np.random.default_rng(1)
  boxes = _random_boxes(rng, 200, size=50.0)
  scores = rng.integers(0, 4, 200).astype(np.float32)  # many exact ties
  boxes[10] = boxes[11]  # identical boxes, identical scores: index 10 must win
  scores[10] = scores[11] = 5.0
  want = ref_nms(boxes, scores, 0.5)
  assert want[0] == 10 and 11 not in want
  _check(_nms(boxes, scores, 0.5, max_output=200, tile_size=64), want, 200)


def test_max_output_truncates_in_score_order():
  rng = np.random.default_rng(2)
  boxes = _random_boxes(rng, 500)
  scores = rng.uniform(size=500).astype(np.float32)
  want = ref_nms(boxes, scores, 0.5)
  assert len(want) > 20
  _check(_nms(boxes, scores, 0.5, max_output=20, tile_size=64), want, 20)
  _check(_nms(boxes, scores, 0.5, max_output=800, tile_size=64), want, 800)  # > N: padded


def test_degenerate_boxes_and_iou_exactly_at_threshold():
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [5, 5, 5, 5], [5, 5, 5, 5], [3, 3, 1, 1],
                    [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], np.float32)
  # Box 1 has IoU exactly 0.5 with box 0: kept (strictly greater suppresses); box 5 duplicates 0.
  want = ref_nms(boxes, scores, 0.5)
  np.testing.assert_array_equal(want, [0, 1, 2, 3, 4, 6])
  _check(_nms(boxes, scores, 0.5, max_output=7), want, 7)


def test_all_suppressed_and_empty_and_all_invalid():
  boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (50, 1))
  scores = np.linspace(0, 1, 50).astype(np.float32)
  _check(_nms(boxes, scores, 0.5, max_output=10), np.array([49]), 10)
  idx, valid = nms_lib.nms(jnp.zeros((0, 4)), jnp.zeros((0,)), 0.5, 5)
  assert idx.shape == (5,) and not np.asarray(valid).any() and not np.asarray(idx).any()
  _check(_nms(boxes, scores, 0.5, np.zeros(50, bool), max_output=10), np.array([], int), 10)


def test_valid_mask_excludes_boxes_from_keeping_and_suppressing():
  rng = np.random.default_rng(3)
  boxes = _random_boxes(rng, 400)
  scores = rng.uniform(size=400).astype(np.float32)
  valid = rng.uniform(size=400) < 0.6
  want = ref_nms(boxes, scores, 0.5, valid=valid)
  _check(_nms(boxes, scores, 0.5, valid, max_output=400, tile_size=64), want, 400)
  idx, ok = nms_lib.nms_with_threshold(boxes, scores, 0.5, 400, score_threshold=0.3)
  _check((idx, ok), ref_nms(boxes, scores, 0.5, valid=scores > 0.3), 400)


def test_batched_nms_is_per_class():
  rng = np.random.default_rng(4)
  boxes = _random_boxes(rng, 600)
  scores = rng.uniform(size=600).astype(np.float32)
  classes = rng.integers(0, 5, 600)
  want = ref_nms(boxes, scores, 0.5, classes=classes)
  # Kept boxes of different classes may overlap, so fewer would survive plain NMS.
  assert len(want) > len(ref_nms(boxes, scores, 0.5))
  got = jax.jit(lambda b, s, c: nms_lib.batched_nms(b, s, c, 0.5, 600, tile_size=128))(
      boxes, scores, classes)
  _check(got, want, 600)


def test_vmap_over_a_batch():
  rng = np.random.default_rng(5)
  boxes = np.stack([_random_boxes(rng, 300) for _ in range(3)])
  scores = rng.uniform(size=(3, 300)).astype(np.float32)
  fn = jax.jit(jax.vmap(lambda b, s: nms_lib.nms(b, s, 0.6, 100, tile_size=64)))
  idx, valid = fn(boxes, scores)
  for i in range(3):
    _check((idx[i], valid[i]), ref_nms(boxes[i], scores[i], 0.6), 100)


def test_batch_detections_one_image_at_a_time_on_one_device(monkeypatch):
  # The suite simulates 4 devices: vmap. With one CPU device the images go through lax.map.
  rng = np.random.default_rng(7)
  boxes = np.stack([_random_boxes(rng, 300, size=60.0, max_wh=30.0) for _ in range(3)])
  scores = rng.uniform(size=(3, 300, 2)).astype(np.float32)
  kw = dict(score_threshold=0.3, iou_threshold=0.2, pre_nms_topk=400, max_detections=300)

  def select(b, s):
    return nms_lib.select_batch_detections(b, s, (90.0, 100.0), **kw)

  vmapped = jax.jit(select)(boxes, scores)
  monkeypatch.setattr(jax, 'device_count', lambda: 1)
  assert 'scan' in str(jax.make_jaxpr(lambda b, s: select(b, s))(boxes, scores))  # Not cached.
  mapped = jax.jit(lambda b, s: select(b, s))(boxes, scores)
  assert (np.asarray(mapped['valid']).sum(1) < 300).all() and mapped['valid'][:, 30].all()
  jax.tree.map(np.testing.assert_array_equal, mapped, vmapped)


def test_large_input_crowded():
  # 3000 boxes in a small area: long suppression chains within and across tiles.
  rng = np.random.default_rng(6)
  boxes = _random_boxes(rng, 3000, size=60.0, max_wh=30.0)
  scores = rng.uniform(size=3000).astype(np.float32)
  _check(_nms(boxes, scores, 0.5, max_output=3000), ref_nms(boxes, scores, 0.5), 3000)
