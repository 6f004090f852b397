"""Segmentation models: exact parameter counts, output shapes, and a few real forward passes.

Shapes and counts come from `jax.eval_shape` (tracing only), so big backbones cost no compute.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import models
from models.layers import ConvBNReLU
from models.patch_classifier import PatchCNN

RNGS = {'params': jax.random.key(0), 'dropout': jax.random.key(1), 'sample': jax.random.key(2)}
C = 5  # Classes.


def conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def conv_bn(k, cin, cout):
  return conv(k, cin, cout) + 2 * cout


# vgg_small: widths (16, 32, 64, 128, 128), 2 x (conv3x3 + BN) per stage.
VGG_SMALL_CONVS = [(3, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 128),
                   (128, 128), (128, 128), (128, 128)]
VGG_SMALL = sum(conv_bn(3, i, o) for i, o in VGG_SMALL_CONVS)
FCN_HEAD = conv(3, 128, 256) + conv(1, 256, 256) + conv(1, 256, C)  # fc6, fc7, score_fr.
SKIPS = {32: 0, 16: conv(1, 128, C), 8: conv(1, 128, C) + conv(1, 64, C)}  # score_pool4/3.
TRANSPOSE = {32: conv(64, C, C, False), 16: conv(4, C, C, False) + conv(32, C, C, False),
             8: 2 * conv(4, C, C, False) + conv(16, C, C, False)}  # Kernel 2f for factor f.
DECONV_HEAD = conv_bn(3, 128, 256) + conv_bn(1, 256, 256) + conv_bn(3, 256, 128)
# The decoder mirrors every encoder conv (out -> in), except conv1_1 (3 -> 16) becomes 16 -> 16.
DECONV_DECODER = sum(conv_bn(3, o, i) for i, o in VGG_SMALL_CONVS[1:]) + conv_bn(3, 16, 16)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _init_shapes(model, shape, train=True):
  return jax.eval_shape(lambda: model.init(RNGS, jnp.zeros(shape), train=train))


@pytest.mark.parametrize('name,kwargs,expected', [
    # torchvision's numbers: resnet18 11,689,512 and resnet50 25,557,032 with the 1000-way fc.
    ('resnet18', {'num_classes': 1000}, 11_689_512),
    ('resnet50', {'num_classes': 1000}, 25_557_032),
    ('resnet18', {}, 11_689_512 - conv(1, 512, 1000)),
    ('vgg16', {}, 14_723_136),  # torchvision vgg16_bn.features.
    ('vgg_small', {}, VGG_SMALL),
])
def test_backbone_parameter_counts(name, kwargs, expected):
  variables = _init_shapes(models.get_backbone(name, **kwargs), (1, 64, 64, 3))
  assert _count(variables['params']) == expected


def test_backbone_outputs_keyed_by_stride():
  for name in ('vgg_small', 'resnet18'):
    out = jax.eval_shape(lambda name=name: models.get_backbone(name).init_with_output(
        RNGS, jnp.zeros((2, 64, 96, 3)), train=False)[0])
    for stride, feats in out['features'].items():
      assert feats.shape[1:3] == (64 // stride, 96 // stride)
    for stride, pre in out['pre_pool'].items():
      assert pre.shape[1:3] == (128 // stride, 192 // stride)
  assert set(out['features']) == {2, 4, 8, 16, 32}
  assert out['features'][32].shape[-1] == 512


@pytest.mark.parametrize('name,kwargs,expected', [
    ('fcn32s', {}, VGG_SMALL + FCN_HEAD + SKIPS[32] + TRANSPOSE[32]),
    ('fcn16s', {}, VGG_SMALL + FCN_HEAD + SKIPS[16] + TRANSPOSE[16]),
    ('fcn8s', {}, VGG_SMALL + FCN_HEAD + SKIPS[8] + TRANSPOSE[8]),
    ('fcn8s', {'upsample': 'nearest'}, VGG_SMALL + FCN_HEAD + SKIPS[8] + 5 * conv(3, C, C)),
    ('fcn8s', {'upsample': 'bed_of_nails'}, VGG_SMALL + FCN_HEAD + SKIPS[8] + 5 * conv(3, C, C)),
    ('fcn8s', {'upsample': 'max_unpool'}, VGG_SMALL + FCN_HEAD + SKIPS[8] + 5 * conv(3, C, C)),
    ('fcn8s', {'upsample': 'resize_conv'}, VGG_SMALL + FCN_HEAD + SKIPS[8] + 5 * conv(3, C, C)),
    ('fcn8s', {'backbone': 'resnet18', 'upsample': 'nearest'},
     11_176_512 + conv(3, 512, 512) + conv(1, 512, 512) + conv(1, 512, C) + conv(1, 256, C)
     + conv(1, 128, C) + 5 * conv(3, C, C)),
    ('deconvnet', {}, VGG_SMALL + DECONV_HEAD + DECONV_DECODER + conv(1, 16, C)),
    ('patch_classifier', {}, conv_bn(3, 3, 16) + conv_bn(3, 16, 32) + conv_bn(3, 32, 64)
     + 2 * 2 * 64 * 128 + 128 + 128 * C + C),
])
def test_parameter_counts_and_output_shapes(name, kwargs, expected):
  model = models.get_model(name, num_classes=C, **kwargs)
  variables = _init_shapes(model, (2, 64, 96, 3))
  assert _count(variables['params']) == expected
  dense = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 64, 96, 3)), train=False),
                         variables)
  assert (dense.shape, dense.dtype) == ((2, 64, 96, C), jnp.float32)


def test_fcn_max_unpool_runs_and_is_finite():
  model = models.get_model('fcn8s', num_classes=C, upsample='max_unpool')
  images = jax.random.uniform(jax.random.key(0), (2, 32, 64, 3))
  logits, _ = jax.jit(lambda x: model.init_with_output(RNGS, x, train=True))(images)
  assert logits.shape == (2, 32, 64, C)
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Max unpooling alone leaves 3 of 4 pixels at zero per step; the refine conv after each step
  # must fill them in, or most output pixels would get no gradient.
  assert float(jnp.mean(logits == 0)) < 0.1


def test_patch_classifier_train_samples_and_eval_is_per_pixel():
  model = models.get_model('patch_classifier', num_classes=C, patch_size=8, train_pixels=7,
                           pad_mode='zeros')
  images = jax.random.uniform(jax.random.key(0), (2, 8, 12, 3))
  variables = model.init(RNGS, images, train=True)
  out, _ = model.apply(variables, images, train=True, rngs=RNGS, mutable=['batch_stats'])
  assert out['logits'].shape == (2, 7, C) and out['pixels'].dtype == jnp.int32
  assert bool(jnp.all((out['pixels'] >= 0) & (out['pixels'] < jnp.array([8, 12]))))
  dense = model.apply(variables, images, train=False)
  assert dense.shape == (2, 8, 12, C)
  # Pixel (y, x) = (5, 2) of image 1: its 8x8 patch spans rows 1..8 and columns -2..5.
  padded = jnp.pad(images, ((0, 0), (4, 3), (4, 3), (0, 0)))
  patch = padded[1:2, 5:13, 2:10]
  cnn = PatchCNN(C)
  expected = cnn.apply({k: v['cnn'] for k, v in variables.items()}, patch, train=False)
  np.testing.assert_allclose(dense[1, 5, 2], expected[0], rtol=1e-5, atol=1e-5)


def test_bn_axis_name_gives_one_device_batch_stats():
  x = jax.random.normal(jax.random.key(0), (4, 2, 6, 6, 3))  # 4 devices x 2 examples.
  layer = ConvBNReLU(4)
  variables = layer.init(RNGS, x[0], train=False)
  run = lambda model, v: model.apply(variables, v, train=True, mutable=['batch_stats'])[1]
  one = run(layer, x.reshape(8, 6, 6, 3))
  many = jax.pmap(functools.partial(run, ConvBNReLU(4, bn_axis_name='batch')),
                  axis_name='batch')(x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-6), one, many)


def test_bad_names_list_valid_ones():
  with pytest.raises(ValueError,
                     match=r'unknown model fcn99s; valid: deconvnet, .*fcn16s, fcn32s, fcn8s'):
    models.get_model('fcn99s', num_classes=C)
  with pytest.raises(ValueError, match='valid: mobilenet_v1, mobilenet_v1_small, resnet101, '
                                       'resnet18, resnet50, vgg16, vgg_small'):
    models.get_backbone('alexnet')
  with pytest.raises(ValueError, match='unknown upsample kind'):
    models.get_model('fcn8s', num_classes=C, upsample='bilinear')
  with pytest.raises(ValueError, match='needs a VGG backbone'):
    _init_shapes(models.get_model('deconvnet', num_classes=C, backbone='resnet18'),
                 (1, 32, 32, 3))
  with pytest.raises(ValueError, match='divisible by 32'):
    _init_shapes(models.get_model('fcn8s', num_classes=C), (1, 48, 64, 3))


def test_every_dense_model_is_a_flax_module():
  # Models of the other tasks take other arguments; tests/test_configs.py builds every model.
  for name in ('fcn32s', 'fcn16s', 'fcn8s', 'deconvnet', 'patch_classifier'):
    assert isinstance(models.get_model(name, num_classes=C), nn.Module)
