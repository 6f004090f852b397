"""Mask R-CNN mask targets from per-box crops / paste-back (ops.masks), keypoint heatmaps."""
import jax
import jax.numpy as jnp
import numpy as np

from data import augment
from ops import keypoints, masks


def _disc(h, w, cy, cx, r):
  y, x = np.mgrid[:h, :w] + 0.5
  return ((y - cy) ** 2 + (x - cx) ** 2 <= r**2).astype(np.uint8)


def _targets(planes, rois, matched, size, crop=56):
  """crop_targets of binary masks [M, H, W], each cropped in its tight box as the pipeline does."""
  boxes, _ = augment.tight_boxes_from_masks(planes)
  crops = np.stack([augment.instance_crops(p, b[None], crop)[0]
                    for p, b in zip(planes, boxes, strict=True)])
  return masks.crop_targets(jnp.asarray(crops), jnp.asarray(boxes), jnp.asarray(rois),
                            jnp.asarray(matched, jnp.int32), size)


def test_crop_targets_hand_made():
  m = np.zeros((2, 32, 32), np.uint8)
  m[0, 8:24, 4:12] = 1  # The left half of the pixel-aligned box (8, 4, 24, 20).
  m[1, 8:24, 12:20] = 1  # The right half of the same box.
  t = _targets(m, [[8., 4., 24., 20.], [8., 4., 24., 20.]], [0, 1], 8)
  assert t.shape == (2, 8, 8) and t.dtype == jnp.float32
  left = np.zeros((8, 8), np.float32)
  left[:, :4] = 1
  np.testing.assert_array_equal(t[0], left)
  np.testing.assert_array_equal(t[1], 1 - left)  # Matched to the second instance.


def test_crop_targets_roi_partly_outside_and_overlapping_masks():
  m = np.zeros((2, 32, 32), np.uint8)
  m[0, :8, :8] = 1
  m[1, :16, :16] = 1  # Overlaps the first: each crop keeps its whole mask.
  # 4-pixel bins; the bins beyond the image read nothing.
  t = _targets(m, [[-8., -8., 8., 8.], [0., 0., 32., 32.]], [0, 1], 4)
  corner = np.zeros((4, 4), np.float32)
  corner[2:, 2:] = 1
  np.testing.assert_array_equal(t[0], corner)
  np.testing.assert_array_equal(t[1], corner[::-1, ::-1])


def test_crop_targets_jit_vmap_matches_per_image():
  rng = np.random.default_rng(0)
  crops = rng.integers(0, 256, (2, 3, 14, 14)).astype(np.uint8)
  boxes = np.concatenate([np.full((2, 3, 2), 2.0), rng.uniform(6, 20, (2, 3, 2))], -1)
  y1x1 = rng.uniform(-4, 12, (2, 5, 2)).astype(np.float32)
  rois = np.concatenate([y1x1, y1x1 + rng.uniform(0, 14, (2, 5, 2))], -1).astype(np.float32)
  matched = rng.integers(0, 3, (2, 5)).astype(np.int32)
  batched = jax.jit(jax.vmap(lambda *a: masks.crop_targets(*a, 7)))(crops, boxes, rois, matched)
  for i in range(2):
    np.testing.assert_array_equal(batched[i],
                                  masks.crop_targets(crops[i], boxes[i], rois[i], matched[i], 7))


def _round_trip(m, box, size=28):
  image_hw = m.shape[-2:]
  crops = augment.instance_crops(m, np.array([box], np.float32), 56)  # Id 1 = mask 0.
  t = masks.crop_targets(jnp.asarray(crops), jnp.array([box], jnp.float32), jnp.array([box]),
                         jnp.zeros(1, jnp.int32), size)
  return np.asarray(masks.paste_masks(t, jnp.array([box]), image_hw)[0] >= 0.5)


def test_paste_inverts_targets():
  h, w = 80, 64
  y1, x1 = 10, 20
  inside = np.zeros((h, w), bool)
  for bh, bw in ((56, 28), (28, 14)):
    box = [y1, x1, y1 + bh, x1 + bw]
    inside[:] = False
    inside[y1:y1 + bh, x1:x1 + bw] = True
    # A rectangle whose edges lie on mask cell boundaries comes back exactly; the image outside
    # the box is filled to check that nothing is pasted there.
    rect = np.ones((h, w), np.uint8)
    rect[y1:y1 + bh, x1:x1 + bw] = 0
    rect[y1 + 6:y1 + bh - 10, x1 + 3:x1 + bw - 5] = 1
    np.testing.assert_array_equal(_round_trip(rect, box), rect.astype(bool) & inside)
    disc = _disc(h, w, y1 + bh / 2, x1 + bw / 2, min(bh, bw) / 2 - 1.5)
    pasted = _round_trip(disc, box)
    assert not pasted[~inside].any()
    iou = (pasted & (disc > 0)).sum() / (pasted | (disc > 0)).sum()
    assert iou > 0.95, iou


def test_paste_full_mask_fills_box_and_degenerate_boxes_are_empty():
  boxes = jnp.array([[2.5, 3., 9.5, 7.], [4., 4., 4., 9.], [0., 0., 0., 0.]])
  out = jax.jit(masks.paste_masks, static_argnums=2)(jnp.ones((3, 5, 5)), boxes, (12, 10))
  assert out.shape == (3, 12, 10) and np.isfinite(out).all()
  expected = np.zeros((12, 10), np.float32)
  expected[2:9, 3:7] = 1  # Pixel centres 2.5 .. 8.5 lie in [2.5, 9.5), 3.5 .. 6.5 in [3, 7).
  np.testing.assert_allclose(out[0], expected, atol=1e-6)
  np.testing.assert_array_equal(out[1:], 0)


def test_heatmap_targets_and_decode():
  rois = jnp.array([[10., 20., 26., 36.], [5., 5., 5., 9.]])  # 2-pixel cells; degenerate.
  kp = jnp.array([[
      [10., 20., 2.],  # The RoI's corner: bin (0, 0).
      [13.9, 21., 1.],  # Bin (1, 0).
      [26., 36., 2.],  # Far corner: bin (7, 7).
      [26., 25., 2.],  # Far edge in y only: bin (7, 2).
      [15., 25., 0.],  # Unlabelled.
      [9.9, 25., 2.],  # Above the RoI.
      [20., 36.5, 2.],  # Right of the RoI.
  ]] * 2)
  index, valid = jax.jit(keypoints.heatmap_targets, static_argnums=2)(kp, rois, 8)
  assert index.dtype == jnp.int32 and valid.dtype == jnp.bool_
  np.testing.assert_array_equal(valid[0], [1, 1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(index[0], [0, 8, 63, 58, 0, 0, 0])
  assert not valid[1].any() and not index[1].any()

  heat = jax.nn.one_hot(index, 64).reshape(2, 7, 8, 8)
  decoded = keypoints.heatmaps_to_keypoints(heat, rois)
  assert decoded.shape == (2, 7, 3)
  err = np.abs(decoded[0, :4, :2] - kp[0, :4, :2])
  assert (err <= 1.0 + 1e-5).all(), err  # Half a 2-pixel cell.
  np.testing.assert_array_equal(decoded[0, :, 2], 1.0)
  np.testing.assert_allclose(decoded[0, 0, :2], [11., 21.])  # The centre of cell (0, 0).
