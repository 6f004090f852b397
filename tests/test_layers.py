"""Fast paths of models.layers and ResNet equal the lax / flax operations they replace."""
import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from models import layers, resnet
from models.upsample import max_pool_with_argmax


@pytest.mark.parametrize('size, stride, padding, k, channels', [
    (2, 1, 'SAME', 3, (3, 5)), (1, 1, 'SAME', 3, (3, 5)), (4, 2, ((1, 1), (1, 1)), 3, (3, 5)),
    (3, 1, 'VALID', 3, (3, 5)), (5, 2, 'SAME', 3, (3, 5)), (9, 1, 'SAME', 1, (3, 5)),
    (9, 2, 'VALID', 1, (3, 5)), (7, 2, ((1, 0), (0, 1)), 1, (3, 5)),
    (10, 1, 'SAME', 3, (128, 136)), (20, 2, ((1, 0), (2, 1)), 3, (80, 64)),
    (14, 1, 'VALID', 5, (64, 64)), (15, (2, 1), 'SAME', 3, (64, 64)),
    (10, 1, 'SAME', 3, (16, 32)), (10, 1, 'SAME', 3, (32, 16)),
    (10, 1, 'SAME', 3, (16, 16))])
def test_matmul_conv_matches_lax_forward_and_gradients(size, stride, padding, k, channels,
                                                       monkeypatch):
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (2, size, size + 1, channels[0]))
  kernel = jax.random.normal(kk, (k, k, *channels))
  dims = lax.conv_dimension_numbers(x.shape, kernel.shape, ('NHWC', 'HWIO', 'NHWC'))

  def loss(conv, x, kernel):
    y = conv(x, kernel, (stride,) * 2 if isinstance(stride, int) else stride, padding,
             dimension_numbers=dims)
    return (y * np.arange(y.size, dtype=np.float32).reshape(y.shape)).sum(), y

  def lax_and_ours(x):
    want = jax.value_and_grad(lambda x, k: loss(lax.conv_general_dilated, x, k), (0, 1),
                              has_aux=True)(x, kernel)
    got = jax.value_and_grad(lambda x, k: loss(layers.conv_general_dilated, x, k), (0, 1),
                             has_aux=True)(x, kernel)
    return want, got

  # At top level: XLA's convolutions, or `_custom_grad_conv` with jax's gradients where inference
  # takes Winograd (from the smallest map on: the 3x3 stride-1 case of 128 channels); in a
  # loop body (the microbatch scan's): `_custom_grad_conv` with its HWIO gradient forms.
  for winograd_from, in_loop in ((None, False), (1, False), (None, True)):
    if winograd_from:
      monkeypatch.setattr(layers, '_WINOGRAD_MIN_POSITIONS', winograd_from)
    with layers.convolutions_in_loop_body() if in_loop else contextlib.nullcontext():
      ((_, want), want_grads), ((_, got), got_grads) = lax_and_ours(x)
    monkeypatch.undo()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
      # float32 sums of terms up to ~1e4 (the loss weights): absolute error relative to the scale.
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 * float(np.abs(w).max()))


def test_scanned_resnet_stages_trace_in_loop_body(monkeypatch):
  """The scanned stages mark their body: XLA:CPU's gradient convolutions inside a loop lose
  their fast kernels (`layers._weight_grad`)."""
  seen = []
  conv = layers._custom_grad_conv
  monkeypatch.setattr(layers, '_custom_grad_conv',
                      lambda *args: seen.append((args[1].shape, args[-1])) or conv(*args))
  model = resnet.ResNet(stage_sizes=(3, 3, 1, 1), frozen_bn=True)
  x = jnp.ones((2, 64, 64, 3))
  variables = jax.eval_shape(functools.partial(model.init, train=True), jax.random.key(0), x)
  seen.clear()
  jax.eval_shape(lambda v: jax.grad(lambda v: model.apply(v, x, train=True)['features'][32].sum())(
      v), variables)
  # layer1 and layer2 (strides 4 and 8): one unrolled block (XLA's convolutions: no Winograd at
  # this size), then two scanned, whose body (two 3x3 convolutions) the scan traces once.
  assert len(seen) == 2 * 2 and all(in_loop for _, in_loop in seen), seen
  assert {kernel[2] for kernel, in_loop in seen if in_loop} == {64, 128}


@pytest.mark.parametrize('shape', [(2, 7, 9, 5), (1, 4, 4, 3), (1, 12, 6, 8)])
def test_winograd_conv3x3_matches_lax(shape):
  kx, kk = jax.random.split(jax.random.key(2))
  x = jax.random.normal(kx, shape)
  kernel = jax.random.normal(kk, (3, 3, shape[-1], 6))
  want = lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(jax.jit(layers.winograd_conv3x3)(x, kernel), want,
                             rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_inference_takes_winograd_and_training_xlas_convolution(monkeypatch):
  monkeypatch.setattr(layers, '_WINOGRAD_MIN_POSITIONS', 1)
  x = jax.random.normal(jax.random.key(0), (2, 10, 11, 128))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 128, 128))
  dims = lax.conv_dimension_numbers(x.shape, kernel.shape, ('NHWC', 'HWIO', 'NHWC'))
  conv = lambda x, k: layers.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=dims)
  want = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=dims)
  hlo = jax.jit(conv).lower(x, kernel).as_text()
  assert 'convolution' not in hlo and 'dot_general' in hlo  # Winograd's matmuls.
  np.testing.assert_allclose(jax.jit(conv)(x, kernel), want, rtol=1e-4, atol=1e-4)
  grad_hlo = jax.jit(jax.grad(lambda x: jnp.sum(conv(x, kernel)))).lower(x).as_text()
  assert 'convolution' in grad_hlo
  narrow = kernel[..., :layers._WINOGRAD_MIN_CHANNELS - 1]  # Too narrow to earn its transforms.
  assert 'convolution' in jax.jit(conv).lower(x, narrow).as_text()


def test_conv_keeps_flax_parameters():
  x = np.ones((1, 2, 2, 4), np.float32)
  ours, theirs = layers.Conv(8, (3, 3), name='c'), nn.Conv(8, (3, 3), name='c')
  params = theirs.init(jax.random.key(0), x)
  assert jax.tree.map(np.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(np.shape, params)
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-6)


def test_sibling_1x1_convs_are_the_convs_with_their_parameters():
  class Siblings(nn.Module):
    fused: bool

    @nn.compact
    def __call__(self, x):
      if not self.fused:
        return [nn.Conv(n, (1, 1), name=name)(x) for name, n in (('a', 2), ('b', 5))]
      return layers.sibling_1x1_convs(x, [layers.ConvParams(n, (1, 1), name=name)(x.shape[-1])
                                          for name, n in (('a', 2), ('b', 5))])

  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 6))
  params = Siblings(False).init(jax.random.key(1), x)
  assert (jax.tree.map(np.shape, Siblings(True).init(jax.random.key(1), x))
          == jax.tree.map(np.shape, params))
  params = jax.tree.map(lambda p: p + 0.1, params)  # Nonzero biases.
  loss = lambda fused, p: sum(jnp.sum(y * y) for y in Siblings(fused).apply(p, x))
  np.testing.assert_allclose(loss(True, params), loss(False, params), rtol=1e-5)
  for got, want in zip(jax.tree.leaves(jax.grad(functools.partial(loss, True))(params)),
                       jax.tree.leaves(jax.grad(functools.partial(loss, False))(params)),
                       strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_resnet_stem_pool_matches_flax_max_pool():
  """ResNet's stem pools by the running max of models.upsample; flax's reduce-window reference."""
  x = jax.random.normal(jax.random.key(1), (2, 9, 8, 3))

  def ours(x):
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return max_pool_with_argmax(x, 3, 2)[0]

  def flax_pool(x):
    return nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1)] * 2)

  weights = jax.random.normal(jax.random.key(2), flax_pool(x).shape)
  np.testing.assert_array_equal(ours(x), flax_pool(x))
  # Where two windows pick one pixel their gradients add up, in either order.
  np.testing.assert_allclose(jax.grad(lambda v: (ours(v) * weights).sum())(x),
                             jax.grad(lambda v: (flax_pool(v) * weights).sum())(x), rtol=1e-6)
