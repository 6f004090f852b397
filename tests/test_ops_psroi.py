"""ps_roi_pool against a numpy port of torchvision's CPU kernel; spatial_pyramid_pool's layout."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import psroi
from tests.toy_data import random_rois

K = 3  # bins per side
C_OUT = 2


def _c_round(x):
  # C's round(): halves away from zero.
  return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def _ps_bins(r, k, scale, height, width):
  """torchvision/csrc/ops/cpu/ps_roi_pool_kernel.cpp bin edges of one RoI (y, x order here)."""
  s = [_c_round(np.float32(v) * np.float32(scale)) for v in r[1:]]
  bin_h = np.float32(max(s[2] - s[0], 1)) / np.float32(k)
  bin_w = np.float32(max(s[3] - s[1], 1)) / np.float32(k)
  for ph in range(k):
    for pw in range(k):
      hs = min(max(int(math.floor(np.float32(ph) * bin_h)) + s[0], 0), height - 1)
      he = min(max(int(math.ceil(np.float32(ph + 1) * bin_h)) + s[0], 0), height - 1)
      ws = min(max(int(math.floor(np.float32(pw) * bin_w)) + s[1], 0), width - 1)
      we = min(max(int(math.ceil(np.float32(pw + 1) * bin_w)) + s[1], 0), width - 1)
      yield ph, pw, hs, he, ws, we


def ref_ps_roi_pool(feat, rois, k, scale):
  _, height, width, ch = feat.shape
  c_out = ch // (k * k)
  out = np.zeros((len(rois), k, k, c_out))
  for n, r in enumerate(rois):
    for ph, pw, hs, he, ws, we in _ps_bins(r, k, scale, height, width):
      if he <= hs or we <= ws:
        continue
      for c in range(c_out):
        c_in = (c * k + ph) * k + pw
        out[n, ph, pw, c] = feat[int(r[0]), hs:he, ws:we, c_in].astype(np.float64).mean()
  return out


def ref_ps_roi_pool_grad(shape, rois, k, scale, g):
  """Gradient of sum(ps_roi_pool * g): each bin spreads g / area over its own pixels."""
  _, height, width, _ = shape
  grad = np.zeros(shape)
  for n, r in enumerate(rois):
    for ph, pw, hs, he, ws, we in _ps_bins(r, k, scale, height, width):
      if he <= hs or we <= ws:
        continue
      for c in range(g.shape[-1]):
        grad[int(r[0]), hs:he, ws:we, (c * k + ph) * k + pw] += g[n, ph, pw, c] / (
            (he - hs) * (we - ws))
  return grad


def _rois(rng, n, num_images, height, width, stride):
  r = random_rois(rng, n, num_images, height, width, stride, span=(-0.3, 1.2))
  ih, iw = height * stride, width * stride
  r[4, 1:] = [-9.0, -7.0, 0.6 * ih, 0.5 * iw]  # partly outside, top-left
  r[5, 1:] = [0.4 * ih, 0.5 * iw, 1.3 * ih, 1.4 * iw]  # partly outside, bottom-right
  r[6, 1:] = [2.0, 6.0, 18.5, 22.5]  # exact .5 coordinates exercise the rounding
  return r


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  feat = rng.normal(1.0, 1.0, size=(2, 9, 11, C_OUT * K * K)).astype(np.float32)
  rois = _rois(rng, 16, 2, 9, 11, stride=4)
  return feat, rois


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_ps_roi_pool_matches_torchvision(data, scale):
  feat, rois = data
  got = jax.jit(psroi.ps_roi_pool, static_argnums=(2, 3))(feat, rois, K, scale)
  assert got.shape == (len(rois), K, K, C_OUT)
  np.testing.assert_allclose(np.asarray(got), ref_ps_roi_pool(feat, rois, K, scale),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(got[2]), 0.0)  # RoI outside the map


def test_ps_roi_pool_bin_reads_only_its_channel_group():
  # Group g = i * k + j is the constant g for every output channel, so bin (i, j) must give g.
  rng = np.random.default_rng(1)
  group = np.arange(K * K, dtype=np.float32)
  feat = np.broadcast_to(np.tile(group, C_OUT)[None, None, None], (1, 12, 12, C_OUT * K * K))
  # The last row and column, which torchvision's forward never pools, hold another value so the
  # per-channel means differ from g and the summed-area-table path is exercised.
  feat = np.ascontiguousarray(feat)
  feat[:, -1] = feat[:, :, -1] = 100.0
  # Channel-major (torchvision): input channel (c * k + i) * k + j, so c is the slow index.
  assert feat[0, 0, 0, K * K + 4] == 4
  rois = np.concatenate([np.zeros((6, 1)), rng.uniform(0, 4, (6, 2)),
                         rng.uniform(7, 14, (6, 2))], 1).astype(np.float32)
  got = np.asarray(psroi.ps_roi_pool(feat, rois, K, 1.0))
  want = np.broadcast_to(group.reshape(1, K, K, 1), got.shape)
  # Differences of float32 table entries of size ~1e3 leave ~1e-5 absolute error.
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_ps_roi_pool_gradient(data):
  feat, rois = data
  rng = np.random.default_rng(2)
  g = rng.normal(size=(len(rois), K, K, C_OUT)).astype(np.float32)
  loss = lambda f: jnp.sum(psroi.ps_roi_pool(f, rois, K, 0.5) * g)
  grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(feat)))
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
  np.testing.assert_allclose(grad, ref_ps_roi_pool_grad(feat.shape, rois, K, 0.5, g),
                             rtol=1e-5, atol=1e-5)

  # One output (whole-image RoI 3, bin (1, 2), channel 1) reaches only its own channel, inside
  # its bin: rows [3, 6) of the 9-row extent, columns [7, 11) of 11 clipped to [7, 10).
  one = lambda f: psroi.ps_roi_pool(f, rois, K, 0.25)[3, 1, 2, 1]
  grad = np.asarray(jax.grad(one)(jnp.asarray(feat)))
  want = np.zeros_like(grad)
  want[int(rois[3, 0]), 3:6, 7:10, (1 * K + 1) * K + 2] = 1.0 / 9.0
  np.testing.assert_allclose(grad, want, atol=1e-7)
  np.testing.assert_allclose(grad.sum(), 1.0, rtol=1e-5)  # an average: weights sum to one


def test_ps_roi_pool_rejects_bad_channels(data):
  feat, rois = data
  with pytest.raises(ValueError, match="divisible"):
    psroi.ps_roi_pool(feat[..., :-1], rois, K, 1.0)


def test_spatial_pyramid_pool_fixed_length_and_level_one_is_window_max():
  rng = np.random.default_rng(3)
  levels, ch, scale = (1, 2, 4), 3, 0.5
  rois = np.array([[0, 0, 0, 15, 15], [1, 2, 4, 9, 21], [0, 6, 6, 8, 7], [1, 1, 3, 30, 38]],
                  np.float32)
  lengths = set()
  for height, width in ((10, 12), (17, 21)):
    feat = rng.normal(size=(2, height, width, ch)).astype(np.float32)
    out = np.asarray(jax.jit(lambda f, r: psroi.spatial_pyramid_pool(f, r, levels, scale))(
        feat, rois))
    lengths.add(out.shape)
    for n, r in enumerate(rois):
      y1, x1, y2, x2 = (_c_round(float(v) * scale) for v in r[1:])
      window = feat[int(r[0]), max(y1, 0):y2 + 1, max(x1, 0):x2 + 1]
      np.testing.assert_array_equal(out[n, :ch], window.max(axis=(0, 1)))
  assert lengths == {(len(rois), sum(lvl * lvl for lvl in levels) * ch)}
