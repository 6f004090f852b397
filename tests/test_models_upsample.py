"""Upsampling layers: the lecture's worked examples exactly, and ConvTranspose against lax/flax."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from models import upsample
from models.upsample import ConvTranspose, Upsample


def _img(rows):
  """A 2-D list -> [1, H, W, 1] float32 (the lecture's single-channel examples)."""
  return jnp.asarray(rows, jnp.float32)[None, :, :, None]


def test_lecture_max_pool_and_max_unpool():
  y, switches = upsample.max_pool_with_argmax(
      _img([[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]), 2, 2)
  np.testing.assert_array_equal(y[0, ..., 0], [[5, 6], [7, 8]])
  np.testing.assert_array_equal(switches[0, ..., 0], [[3, 0], [2, 3]])  # i * 2 + j in window.
  out = upsample.max_unpool(_img([[1, 2], [3, 4]]), switches, 2, 2)
  np.testing.assert_array_equal(
      out[0, ..., 0], [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]])


def test_lecture_nearest_and_bed_of_nails():
  x = _img([[1, 2], [3, 4]])
  np.testing.assert_array_equal(
      upsample.nearest_unpool(x, 2)[0, ..., 0],
      [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
  np.testing.assert_array_equal(
      upsample.bed_of_nails_unpool(x, 2)[0, ..., 0],
      [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])


def test_max_pool_ties_pick_first_and_switches_broadcast():
  _, switches = upsample.max_pool_with_argmax(jnp.ones((1, 2, 2, 3)), 2, 2)
  np.testing.assert_array_equal(switches, 0)
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  spatial = upsample.spatial_switches(x, 2, 2)
  assert spatial.shape == (2, 2, 3, 1)
  out = upsample.max_unpool(jnp.ones((2, 2, 3, 5)), spatial, 2, 2)
  assert out.shape == (2, 4, 6, 5)
  np.testing.assert_array_equal(out.sum(axis=(1, 2)), 6)  # One nail per window and channel.


@pytest.mark.parametrize('window,stride,size',
                         [(3, 2, 7), (3, 2, 8), (2, 2, 7), (3, 1, 5), (12, 1, 13)])
def test_max_pool_gradient_is_xlas_and_max_unpool_its_adjoint(window, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 3))
  y, switches = upsample.max_pool_with_argmax(x, window, stride)
  g = jax.random.normal(jax.random.key(1), y.shape)
  (grad,) = jax.vjp(lambda v: upsample.max_pool_with_argmax(v, window, stride)[0], x)[1](g)
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  xla_pool = lambda v: lax.reduce_window(v, -jnp.inf, lax.max, dims, strides, 'VALID')
  np.testing.assert_array_equal(y, xla_pool(x))
  # Where windows share a maximum their gradients add up, in another order than XLA's.
  np.testing.assert_allclose(grad, jax.vjp(xla_pool, x)[1](g)[0], rtol=1e-6, atol=1e-6)
  unpooled = upsample.max_unpool(g, switches, window, stride)
  np.testing.assert_allclose(grad[:, :unpooled.shape[1], :unpooled.shape[2]], unpooled)


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
  (grad,) = jax.vjp(lambda v: upsample.max_pool_with_argmax(v, 2, 2)[0], jnp.ones((1, 4, 4, 1)))[
      1](jnp.ones((1, 2, 2, 1)))
  np.testing.assert_array_equal(grad[0, :, :, 0], [[1, 0, 1, 0], [0, 0, 0, 0]] * 2)


def _transpose_conv_1d(a, kernel, stride, padding=0, output_padding=0):
  """Runs ConvTranspose on a length-n signal; the kernel is flipped because flax/lax's transpose
  conv (transpose_kernel=False) is the transpose of the conv with the spatially flipped kernel."""
  layer = ConvTranspose(1, (1, len(kernel)), (1, stride), (0, padding), (0, output_padding),
                        use_bias=False)
  params = {'params': {'kernel': jnp.asarray(kernel[::-1], jnp.float32).reshape(1, -1, 1, 1)}}
  out = layer.apply(params, jnp.asarray(a, jnp.float32).reshape(1, 1, -1, 1))
  return np.asarray(out[0, 0, :, 0])


@pytest.mark.parametrize('stride', [1, 2])
def test_lecture_1d_transpose_conv_is_multiplication_by_x_transposed(stride):
  rng = np.random.default_rng(stride)
  x, y, z = rng.normal(size=3)
  n = 4 if stride == 1 else 2
  a = rng.normal(size=n)
  # The conv matrix X of kernel [x, y, z] on a length-6 signal (lecture: pad 1 around a..d).
  conv_matrix = np.zeros((n, 6))
  for i in range(n):
    conv_matrix[i, stride * i:stride * i + 3] = [x, y, z]
  if stride == 1:
    formula = [a[0] * x, a[0] * y + a[1] * x, a[0] * z + a[1] * y + a[2] * x,
               a[1] * z + a[2] * y + a[3] * x, a[2] * z + a[3] * y, a[3] * z]
    out = _transpose_conv_1d(a, [x, y, z], 1)
  else:  # Lecture: [ax, ay, az + bx, by, bz, 0]; the trailing 0 is PyTorch's output_padding=1.
    formula = [a[0] * x, a[0] * y, a[0] * z + a[1] * x, a[1] * y, a[1] * z, 0]
    out = _transpose_conv_1d(a, [x, y, z], 2, output_padding=1)
  np.testing.assert_allclose(out, formula, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, conv_matrix.T @ a, rtol=1e-5, atol=1e-6)


def test_lecture_3x3_stride2_pad1_maps_2x2_to_4x4():
  x = jnp.ones((1, 2, 2, 1))
  # (2 - 1) * 2 - 2 * 1 + 3 = 3 rows; PyTorch's output_padding=1 adds the 4th, as the lecture.
  for output_padding, size in ((0, 3), (1, 4)):
    layer = ConvTranspose(1, 3, 2, 1, output_padding)
    assert layer.init_with_output(jax.random.key(0), x)[0].shape == (1, size, size, 1)


COMBOS = [  # (kernel, stride, padding, output_padding)
    (4, 2, 1, 0), (3, 2, 1, 1), (3, 1, 1, 0), (5, 3, 2, 2), (2, 2, 0, 0), (16, 8, 4, 0),
    (3, 2, 0, 0)]


@pytest.mark.parametrize('kernel,stride,padding,output_padding', COMBOS)
def test_conv_transpose_phase_equals_lax_and_flax(kernel, stride, padding, output_padding):
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
  layers = [ConvTranspose(4, kernel, stride, padding, output_padding, impl=impl)
            for impl in ('phase', 'lax')]
  layers.append(nn.ConvTranspose(4, (kernel, kernel), (stride, stride),
                                 upsample.transpose_padding(kernel, padding, output_padding)))
  params = layers[0].init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, layers[2].init(
      jax.random.key(1), x))
  outs, grads = [], []
  for layer in layers:
    loss = lambda p, v, layer=layer: jnp.sum(jnp.sin(layer.apply(p, v)))
    outs.append(layer.apply(params, x))
    grads.append(jax.grad(loss, argnums=(0, 1))(params, x))
  for out, grad in zip(outs[1:], grads[1:], strict=True):
    np.testing.assert_allclose(outs[0], out, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), grads[0], grad)


def test_bilinear_transpose_conv_keeps_constants():
  layer = Upsample('transpose_conv', 4)
  out, params = layer.init_with_output(jax.random.key(0), jnp.ones((1, 4, 4, 2)))
  assert out.shape == (1, 16, 16, 2)
  np.testing.assert_allclose(out[0, 4:-4, 4:-4], 1, atol=1e-6)  # Borders see zero padding.
  kernel = params['params']['conv']['kernel']
  np.testing.assert_array_equal(kernel[:, :, 0, 1], 0)  # No cross-channel mixing.


@pytest.mark.parametrize('kind', upsample.UPSAMPLE_KINDS)
def test_upsample_kinds_shapes(kind):
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  _, switches = upsample.max_pool_with_argmax(jax.random.normal(jax.random.key(1), (2, 8, 12, 3)),
                                               2, 2)
  layer = Upsample(kind, 2, features=5 if kind in ('transpose_conv', 'resize_conv') else None)
  out, _ = layer.init_with_output(jax.random.key(2), x, switches)
  assert out.shape == (2, 8, 12, 5 if layer.features else 3)


def test_resize_conv_methods_and_bad_kind():
  x = jnp.ones((1, 3, 3, 2))
  for method in ('bilinear', 'nearest'):
    assert upsample.ResizeConv(4, 2, method).init_with_output(
        jax.random.key(0), x)[0].shape == (1, 6, 6, 4)
  with pytest.raises(ValueError, match='valid: nearest, bed_of_nails, max_unpool'):
    Upsample('bilinear_magic')
  with pytest.raises(ValueError, match='needs the pooling switches'):
    Upsample('max_unpool').init(jax.random.key(0), x)
