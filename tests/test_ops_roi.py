"""roi_pool / roi_align against numpy ports of torchvision's CPU kernels (NHWC here)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import roi
from tests.toy_data import random_rois


def _c_round(x):
  # C's round(): halves away from zero.
  return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def ref_roi_pool(feat, rois, out_size, scale):
  """Port of torchvision/csrc/ops/cpu/roi_pool_kernel.cpp; also returns the argmax map."""
  _, height, width, ch = feat.shape
  oh, ow = out_size
  out = np.zeros((len(rois), oh, ow, ch), np.float32)
  arg = np.full((len(rois), oh, ow, ch, 2), -1, np.int64)
  for k, r in enumerate(rois):
    b = int(r[0])
    sh, sw = _c_round(np.float32(r[1]) * np.float32(scale)), _c_round(
        np.float32(r[2]) * np.float32(scale))
    eh, ew = _c_round(np.float32(r[3]) * np.float32(scale)), _c_round(
        np.float32(r[4]) * np.float32(scale))
    bin_h = np.float32(max(eh - sh + 1, 1)) / np.float32(oh)
    bin_w = np.float32(max(ew - sw + 1, 1)) / np.float32(ow)
    for ph in range(oh):
      for pw in range(ow):
        hs = min(max(int(math.floor(np.float32(ph) * bin_h)) + sh, 0), height)
        he = min(max(int(math.ceil(np.float32(ph + 1) * bin_h)) + sh, 0), height)
        ws = min(max(int(math.floor(np.float32(pw) * bin_w)) + sw, 0), width)
        we = min(max(int(math.ceil(np.float32(pw + 1) * bin_w)) + sw, 0), width)
        if he <= hs or we <= ws:
          continue
        # The kernel's strict `>` scan in (h, w) order keeps the first maximum: np.argmax's.
        region = feat[b, hs:he, ws:we].reshape(-1, ch)
        first = region.argmax(0)
        out[k, ph, pw] = region[first, np.arange(ch)]
        arg[k, ph, pw] = np.stack([hs + first // (we - ws), ws + first % (we - ws)], -1)
  return out, arg


def _bilinear(img, y, x):
  height, width = img.shape[:2]
  if y < -1.0 or y > height or x < -1.0 or x > width:
    return np.zeros(img.shape[-1])
  y, x = max(y, 0.0), max(x, 0.0)
  y_low, x_low = int(y), int(x)
  if y_low >= height - 1:
    y_high = y_low = height - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= width - 1:
    x_high = x_low = width - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1.0 - ly, 1.0 - lx
  return (hy * hx * img[y_low, x_low] + hy * lx * img[y_low, x_high]
          + ly * hx * img[y_high, x_low] + ly * lx * img[y_high, x_high])


def ref_roi_align(feat, rois, out_size, scale, sampling_ratio, aligned):
  """Port of torchvision/csrc/ops/cpu/roi_align_kernel.cpp (fixed sampling_ratio > 0)."""
  feat = feat.astype(np.float64)
  oh, ow = out_size
  out = np.zeros((len(rois), oh, ow, feat.shape[-1]))
  off = 0.5 if aligned else 0.0
  for k, r in enumerate(rois):
    img = feat[int(r[0])]
    y1, x1 = r[1] * scale - off, r[2] * scale - off
    rh, rw = r[3] * scale - off - y1, r[4] * scale - off - x1
    if not aligned:
      rh, rw = max(rh, 1.0), max(rw, 1.0)
    bh, bw = rh / oh, rw / ow
    for ph in range(oh):
      for pw in range(ow):
        acc = 0.0
        for iy in range(sampling_ratio):
          y = y1 + ph * bh + (iy + 0.5) * bh / sampling_ratio
          for ix in range(sampling_ratio):
            x = x1 + pw * bw + (ix + 0.5) * bw / sampling_ratio
            acc = acc + _bilinear(img, y, x)
        out[k, ph, pw] = acc / (sampling_ratio * sampling_ratio)
  return out


def _rois(rng, k, num_images, height, width, stride):
  r = random_rois(rng, k, num_images, height, width, stride, span=(-0.2, 1.1))
  r[4, 1:] = [2.0, 2.0, 2.5, 2.5]  # exact .5 coordinates exercise the rounding
  return r


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  feat = rng.normal(size=(2, 11, 13, 3)).astype(np.float32)
  rois = _rois(rng, 24, 2, 11, 13, stride=4)
  return feat, rois


@pytest.mark.parametrize("out_size,scale", [((3, 3), 0.25), ((2, 4), 0.5)])
def test_roi_pool_matches_torchvision(data, out_size, scale):
  feat, rois = data
  got = jax.jit(roi.roi_pool, static_argnums=(2, 3))(feat, rois, out_size, scale)
  want, _ = ref_roi_pool(feat, rois, out_size, scale)
  np.testing.assert_array_equal(np.asarray(got), want)


def test_roi_pool_float_bin_edges_match_torchvision():
  # With 7 bins, float32 puts e.g. ceil(7 * (57 / 7)) at 58 and floor(7 * (31 / 7)) at 30; the
  # exact rational answer differs, and so would XLA's reciprocal-multiply division.
  rng = np.random.default_rng(3)
  feat = rng.normal(size=(1, 64, 64, 2)).astype(np.float32)
  rois = np.array([[0, 0, 0, 30, 56], [0, 3, 1, 59, 31], [0, 0, 0, 62, 62]], np.float32)
  got = roi.roi_pool(feat, rois, (7, 7), 1.0)
  want, _ = ref_roi_pool(feat, rois, (7, 7), 1.0)
  np.testing.assert_array_equal(np.asarray(got), want)


def test_roi_pool_empty_bins_are_zero(data):
  feat, rois = data
  got = roi.roi_pool(feat, rois[2:3], (3, 3), 0.25)
  np.testing.assert_array_equal(np.asarray(got), 0.0)


def test_roi_pool_gradient_goes_to_argmax(data):
  feat, rois = data
  rng = np.random.default_rng(1)
  g = rng.normal(size=(len(rois), 3, 3, feat.shape[-1])).astype(np.float32)
  grad = jax.grad(lambda f: jnp.sum(roi.roi_pool(f, rois, (3, 3), 0.25) * g))(jnp.asarray(feat))
  _, arg = ref_roi_pool(feat, rois, (3, 3), 0.25)
  want = np.zeros_like(feat)
  for k, ph, pw, c in np.ndindex(*arg.shape[:4]):
    h, w = arg[k, ph, pw, c]
    if h >= 0:
      want[int(rois[k, 0]), h, w, c] += g[k, ph, pw, c]
  np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["einsum", "gather"])
@pytest.mark.parametrize("aligned,sampling_ratio,scale", [(False, 2, 0.25), (True, 1, 0.25),
                                                          (True, 3, 0.5)])
def test_roi_align_matches_torchvision(data, method, aligned, sampling_ratio, scale):
  feat, rois = data
  fn = jax.jit(lambda f, r: roi.roi_align(f, r, (3, 4), scale, sampling_ratio, aligned,
                                          method=method))
  got = fn(feat, rois)
  want = ref_roi_align(feat, rois, (3, 4), scale, sampling_ratio, aligned)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["einsum", "gather"])
def test_roi_align_gradient_is_the_adjoint(data, method):
  # roi_align is linear in the features, so <grad of <out, g>, f2> must equal <ref(f2), g>.
  feat, rois = data
  rng = np.random.default_rng(2)
  g = rng.normal(size=(len(rois), 2, 2, feat.shape[-1]))
  f2 = rng.normal(size=feat.shape).astype(np.float32)
  loss = lambda f: jnp.sum(roi.roi_align(f, rois, (2, 2), 0.25, 2, True, method=method) * g)
  grad = np.asarray(jax.grad(loss)(jnp.asarray(feat)))
  assert np.abs(grad).sum() > 0
  want = np.sum(ref_roi_align(f2, rois, (2, 2), 0.25, 2, True) * g)
  np.testing.assert_allclose(np.sum(grad * f2), want, rtol=1e-4)


def test_roi_align_rejects_adaptive_sampling(data):
  feat, rois = data
  with pytest.raises(ValueError, match="sampling_ratio"):
    roi.roi_align(feat, rois, (2, 2), 0.25, 0)


def test_roi_ops_under_vmap(data):
  # One set of RoIs per image of a batch, each against a one-image feature map.
  feat, rois = data
  per_image = np.stack([rois[:6], rois[6:12]])
  per_image[:, :, 0] = 0
  feats = feat[:, None]
  for fn in (lambda f, r: roi.roi_align(f, r, (2, 2), 0.25, 2, True),
             lambda f, r: roi.roi_pool(f, r, (2, 2), 0.25)):
    got = jax.jit(jax.vmap(fn))(feats, per_image)
    want = np.stack([jax.jit(fn)(feats[i], per_image[i]) for i in range(2)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_roi_align_levels_equals_roi_align_on_each_rois_level():
  # Two images, three levels of different sizes; each RoI is read at the level it names only.
  rng = np.random.default_rng(3)
  levels = [rng.normal(size=(2, h, w, 3)).astype(np.float32) for h, w in [(12, 14), (6, 7),
                                                                          (3, 4)]]
  rows = random_rois(rng, 20, 2, 12, 14, stride=2)
  rows = rows[np.argsort(rows[:, 0], kind="stable")]  # 10 RoIs per image.
  rows[:, 0] = np.repeat([0, 1], 10)
  rois, level = rows[:, 1:].reshape(2, 10, 4), rng.integers(0, 3, (2, 10))
  scales = [0.5, 0.25, 0.125]
  pool = jax.jit(lambda f: roi.roi_align_levels(f, [(rois, level, (2, 3))], scales, 2, False)[0])
  got = np.asarray(pool(levels)).reshape(20, 2, 3, 3)
  for index, (fmap, scale) in enumerate(zip(levels, scales, strict=True)):
    want = np.asarray(jax.jit(lambda f, s=scale: roi.roi_align(f, rows, (2, 3), s, 2, False))(
        fmap))
    here = level.reshape(-1) == index
    np.testing.assert_array_equal(got[here], want[here])
  # Linear in the features: the scatter-add backward is the adjoint of the gathers.
  g = rng.normal(size=(2, 10, 2, 3, 3)).astype(np.float32)
  f2 = [rng.normal(size=f.shape).astype(np.float32) for f in levels]
  grads = jax.jit(jax.grad(lambda f: jnp.sum(pool(f) * g)))(levels)
  np.testing.assert_allclose(sum(np.sum(a * b) for a, b in zip(grads, f2, strict=True)),
                             np.sum(np.asarray(pool(f2)) * g), rtol=1e-4)


def test_roi_align_levels_backward_in_chunks_is_the_same(monkeypatch):
  # The scatter-add backward in chunks of RoIs (7 chunks of 3, the last padded) against one chunk.
  rng = np.random.default_rng(4)
  levels = [rng.normal(size=(2, h, w, 3)).astype(np.float32) for h, w in [(12, 14), (6, 7)]]
  rows = random_rois(rng, 20, 2, 12, 14, stride=2)
  rois, level = rows[:, 1:].reshape(2, 10, 4), rng.integers(0, 2, (2, 10))
  g = rng.normal(size=(2, 10, 2, 3, 3)).astype(np.float32)

  def grads():
    return jax.jit(jax.grad(lambda f: jnp.sum(
        roi.roi_align_levels(f, [(rois, level, (2, 3))], [0.5, 0.25], 2, False)[0] * g)))(
            levels)

  whole = grads()
  monkeypatch.setattr(roi, '_SCATTER_CHUNK_BYTES', 3 * 16 * 6 * 3 * 4)  # 3 RoIs' updates.
  for got, want in zip(grads(), whole, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('chunk_bytes', [None, 5 * 16 * 6 * 3 * 4])
def test_roi_align_levels_groups_are_each_alone(monkeypatch, chunk_bytes):
  # Mask R-CNN's box RoIs at one size and the first of them at another, in one call: the same
  # outputs as two calls, and one backward pass whose table gradient is the sum of theirs (in
  # one scatter chunk, or in 9: 3 box and 1 head RoIs each, both padded).
  rng = np.random.default_rng(5)
  levels = [rng.normal(size=(2, h, w, 3)).astype(np.float32) for h, w in [(12, 14), (6, 7)]]
  rows = random_rois(rng, 20, 2, 12, 14, stride=2)
  rois, level = rows[:, 1:].reshape(2, 10, 4), rng.integers(0, 2, (2, 10))
  groups = [(rois, level, (2, 3)), (rois[:, :4], level[:, :4], (4, 4))]
  gs = [rng.normal(size=(2, 10, 2, 3, 3)), rng.normal(size=(2, 4, 4, 4, 3))]

  def loss(f, groups):
    return sum(jnp.sum(o * g) for o, g in zip(roi.roi_align_levels(f, groups, [0.5, 0.25]), gs,
                                              strict=True))

  together = jax.jit(lambda f: roi.roi_align_levels(f, groups, [0.5, 0.25]))(levels)
  for got, group in zip(together, groups, strict=True):
    alone = jax.jit(lambda f, g=group: roi.roi_align_levels(f, [g], [0.5, 0.25])[0])(levels)
    assert got.shape == (2, group[1].shape[1], *group[2], 3)
    np.testing.assert_array_equal(got, alone)
  if chunk_bytes:
    monkeypatch.setattr(roi, '_SCATTER_CHUNK_BYTES', chunk_bytes)
  grads = jax.jit(jax.grad(lambda f: loss(f, groups)))(levels)
  apart = [jax.jit(jax.grad(lambda f, i=i: jnp.sum(
      roi.roi_align_levels(f, [groups[i]], [0.5, 0.25])[0] * gs[i])))(levels) for i in (0, 1)]
  assert np.abs(apart[1][0]).sum() > 0  # The second group reads the first level too.
  for got, a, b in zip(grads, *apart, strict=True):
    np.testing.assert_allclose(got, a + b, rtol=1e-5, atol=1e-6)

