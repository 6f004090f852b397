"""Matcher and balanced sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import boxes as box_ops
from ops import matching


def test_match_thresholds_and_padding():
  iou = jnp.array([
      [0.8, 0.1, 0.95],  # best valid is gt 0 (gt 2 is padding) -> positive
      [0.5, 0.6, 0.0],  # 0.6: ignore band [0.3, 0.7)
      [0.2, 0.1, 0.9],  # 0.2 < 0.3 -> negative, padding's 0.9 is ignored
      [0.7, 0.3, 0.0],  # exactly pos_thresh -> positive
  ])
  valid = jnp.array([True, True, False])
  idx, label = matching.match(iou, valid, 0.7, 0.3)
  np.testing.assert_array_equal(idx, [0, 1, 0, 0])
  np.testing.assert_array_equal(label, [1, -1, 0, 1])


def test_low_quality_matches():
  iou = jnp.array([[0.4, 0.0], [0.2, 0.1], [0.4, 0.05], [0.0, 0.0]])
  valid = jnp.array([True, True])
  _, label = matching.match(iou, valid, 0.7, 0.3)
  np.testing.assert_array_equal(label, [-1, 0, -1, 0])
  idx, label = matching.match(iou, valid, 0.7, 0.3, allow_low_quality=True)
  # Both anchors tied at gt 0's best IoU become positive; anchor 1 is gt 1's best.
  np.testing.assert_array_equal(label, [1, 1, 1, 0])
  np.testing.assert_array_equal(idx, [0, 0, 0, 0])
  # A ground-truth box overlapping nothing must not turn every anchor positive.
  _, label = matching.match(jnp.zeros((4, 1)), jnp.array([True]), 0.7, 0.3, True)
  np.testing.assert_array_equal(label, 0)


def test_match_without_ground_truth_is_all_negative():
  idx, label = matching.match(jnp.full((5, 3), 0.9), jnp.zeros(3, bool), 0.7, 0.3, True)
  np.testing.assert_array_equal(label, 0)
  np.testing.assert_array_equal(idx, 0)


@pytest.mark.parametrize("allow_low_quality", [False, True])
def test_match_boxes_in_chunks_equals_match_of_the_iou_matrix(allow_low_quality):
  # 1000 boxes (the last of 8 chunks of 128 padded), each box twice, so every ground truth's best
  # IoU is tied across chunks; one ground truth overlaps nothing, one is padding.
  rng = np.random.default_rng(0)
  corners = rng.uniform(0, 100, (500, 2, 2))
  boxes = np.concatenate([corners.min(1), corners.max(1)], -1).astype(np.float32)
  boxes = np.concatenate([boxes, boxes[::-1]])
  gt = np.array([[10, 10, 60, 50], [0, 0, 30, 30], [200, 200, 210, 210], [40, 40, 90, 95],
                 [5, 5, 20, 20]], np.float32)
  for valid in (np.array([True, True, True, True, False]), np.zeros(5, bool)):
    want = matching.match(box_ops.iou(boxes, gt), valid, 0.7, 0.3, allow_low_quality)
    got = jax.jit(lambda b, g, v: matching.match_boxes(
        b, g, v, 0.7, 0.3, allow_low_quality, chunk_size=128))(boxes, gt, valid)
    for g, w in zip(got, want, strict=True):
      np.testing.assert_array_equal(g, w)
    assert np.any(np.asarray(want[1]) == 1) == valid.any()


@pytest.mark.parametrize("num_pos,num_neg", [(100, 1000), (3, 1000), (100, 10), (0, 0)])
def test_sample_balanced_counts(num_pos, num_neg):
  rng = np.random.default_rng(num_pos + num_neg)
  labels = np.concatenate([np.ones(num_pos), np.zeros(num_neg), -np.ones(50)]).astype(np.int32)
  labels = labels[rng.permutation(len(labels))]
  idx, valid = jax.jit(matching.sample_balanced, static_argnums=(1, 2))(
      labels, 256, 0.25, jax.random.key(0))
  idx, valid = np.asarray(idx), np.asarray(valid)
  picked = labels[idx[valid]]
  want_pos = min(num_pos, 64)
  want_neg = min(num_neg, 256 - want_pos)
  assert (picked == 1).sum() == want_pos and (picked == 0).sum() == want_neg
  assert len(set(idx[valid].tolist())) == valid.sum()  # no duplicates
  assert (idx[~valid] == 0).all()
  assert valid[:want_pos + want_neg].all()


def test_sample_balanced_is_random_and_uniform_within_groups():
  labels = jnp.array([1] * 10 + [0] * 10, jnp.int32)
  counts = np.zeros(20)
  for seed in range(200):
    idx, valid = matching.sample_balanced(labels, 8, 0.25, jax.random.key(seed))
    counts[np.asarray(idx)[np.asarray(valid)]] += 1
  # Each positive is picked with probability 2/10, each negative with 6/10.
  np.testing.assert_allclose(counts[:10] / 200, 0.2, atol=0.1)
  np.testing.assert_allclose(counts[10:] / 200, 0.6, atol=0.12)


def test_sample_masks_and_vmap_with_fewer_anchors_than_samples():
  labels = jnp.array([[1, 0, -1, 0], [-1, -1, 1, 1]], jnp.int32)
  keys = jax.random.split(jax.random.key(1), 2)
  pos, neg = jax.vmap(lambda lab, k: matching.sample_balanced_mask(lab, 8, 0.5, k))(labels, keys)
  np.testing.assert_array_equal(pos, labels == 1)
  np.testing.assert_array_equal(neg, labels == 0)
