"""Box utilities and anchors."""
import jax
import jax.numpy as jnp
import numpy as np

from ops import anchors, boxes


def _random_boxes(rng, n, size=100.0):
  yx = rng.uniform(0, size, (n, 2))
  hw = rng.uniform(1, 30, (n, 2))
  return np.concatenate([yx, yx + hw], 1).astype(np.float32)


def test_area_and_iou_against_a_loop():
  rng = np.random.default_rng(0)
  a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
  a[0] = [5, 5, 5, 9]  # zero area
  b[0] = [8, 8, 2, 2]  # inverted
  got = np.asarray(boxes.iou(a, b))
  assert got.shape == (7, 5)
  for i in range(7):
    for j in range(5):
      ih = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
      iw = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
      area_a = max(a[i, 2] - a[i, 0], 0) * max(a[i, 3] - a[i, 1], 0)
      area_b = max(b[j, 2] - b[j, 0], 0) * max(b[j, 3] - b[j, 1], 0)
      union = area_a + area_b - ih * iw
      want = ih * iw / union if union > 0 else 0.0
      np.testing.assert_allclose(got[i, j], want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(boxes.area(a)[1:], (a[1:, 2] - a[1:, 0]) * (a[1:, 3] - a[1:, 1]),
                             rtol=1e-6)
  assert boxes.area(b)[0] == 0.0


def test_iou_of_degenerate_pairs_is_zero_not_nan():
  pts = jnp.array([[3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
  got = np.asarray(boxes.iou(pts, pts))
  np.testing.assert_array_equal(got, 0.0)
  grad = jax.grad(lambda p: boxes.iou(p, p).sum())(pts)
  assert np.isfinite(np.asarray(grad)).all()


def test_iou_batched_and_identity():
  rng = np.random.default_rng(1)
  a = np.stack([_random_boxes(rng, 4) for _ in range(3)])
  got = boxes.iou(a, a)
  assert got.shape == (3, 4, 4)
  np.testing.assert_allclose(np.diagonal(np.asarray(got), axis1=1, axis2=2), 1.0, rtol=1e-6)
  np.testing.assert_allclose(got, jax.vmap(boxes.iou)(a, a), rtol=1e-6)


def test_encode_decode_round_trip_and_known_values():
  rng = np.random.default_rng(2)
  anc, gt = _random_boxes(rng, 50), _random_boxes(rng, 50)
  for w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    deltas = boxes.encode(gt, anc, w)
    np.testing.assert_allclose(boxes.decode(deltas, anc, w), gt, rtol=1e-5, atol=1e-3)
  # Anchor centred at (10, 20), size 10x20; box shifted by (+5, -10) and twice as tall.
  d = boxes.encode(jnp.array([[5.0, 0.0, 25.0, 20.0]]), jnp.array([[5.0, 10.0, 15.0, 30.0]]))
  np.testing.assert_allclose(d, [[0.5, -0.5, np.log(2.0), 0.0]], rtol=1e-6, atol=1e-7)


def test_decode_clamps_scale_and_handles_batch_dims():
  anc = jnp.tile(jnp.array([[0.0, 0.0, 10.0, 10.0]]), (2, 3, 1))
  out = boxes.decode(jnp.full((2, 3, 4), 100.0), anc)
  assert out.shape == (2, 3, 4) and np.isfinite(np.asarray(out)).all()
  np.testing.assert_allclose(out[0, 0, 2] - out[0, 0, 0], 10.0 * 1000.0 / 16, rtol=1e-5)
  # Zero-size (padded) ground truth still gives finite targets.
  assert np.isfinite(np.asarray(boxes.encode(jnp.zeros((3, 4)), anc[0]))).all()


def test_clip_and_conversions():
  b = jnp.array([[-5.0, 3.0, 50.0, 120.0], [10.0, -2.0, 20.0, 8.0]])
  np.testing.assert_array_equal(boxes.clip(b, (40, 100)), [[0, 3, 40, 100], [10, 0, 20, 8]])
  per_image = boxes.clip(jnp.stack([b, b]), jnp.array([[40.0, 100.0], [30.0, 5.0]])[:, None])
  np.testing.assert_array_equal(per_image[1], [[0, 3, 30, 5], [10, 0, 20, 5]])
  xywh = boxes.yxyx_to_xywh(np.array([[1.0, 2.0, 5.0, 10.0]]))
  assert isinstance(xywh, np.ndarray)
  np.testing.assert_array_equal(xywh, [[2, 1, 8, 4]])
  np.testing.assert_array_equal(boxes.xywh_to_yxyx(xywh), [[1, 2, 5, 10]])
  np.testing.assert_array_equal(boxes.box_centers(b[1:]), [[15.0, 3.0]])


def test_anchors_follow_detectron2():
  cell = anchors.cell_anchors((32, 64), (0.5, 1.0, 2.0))
  assert cell.shape == (6, 4)
  h, w = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
  np.testing.assert_allclose(h * w, [32**2] * 3 + [64**2] * 3, rtol=1e-5)
  np.testing.assert_allclose(h / w, [0.5, 1.0, 2.0] * 2, rtol=1e-5)
  grid = anchors.grid_anchors((2, 3), 16, (32,), (1.0,))
  np.testing.assert_allclose(grid[:3], [[-16, -16, 16, 16], [-16, 0, 16, 32], [-16, 16, 16, 48]])
  np.testing.assert_allclose(grid[3], [0, -16, 32, 16])  # row-major: (row 1, col 0)
  centred = anchors.grid_anchors((2, 3), 16, (32,), (1.0,), offset=0.5)
  np.testing.assert_allclose(boxes.box_centers(centred[:1]), [[8, 8]])
  shapes = anchors.feature_shapes((100, 130), (8, 16))
  assert shapes == [(13, 17), (7, 9)]
  allx, counts = anchors.multilevel_anchors(shapes, (8, 16), ((32,), (64,)), (0.5, 1.0, 2.0))
  assert counts == [13 * 17 * 3, 7 * 9 * 3] and allx.shape == (sum(counts), 4)
  np.testing.assert_allclose(allx[counts[0]:], anchors.grid_anchors((7, 9), 16, (64,),
                                                                    (0.5, 1.0, 2.0)))
