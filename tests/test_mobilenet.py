"""MobileNet v1 backbone (Howard et al. 2017): feature shapes, parameter layout, depthwise conv."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import models
from models import mobilenet

WIDTHS = {'mobilenet_v1': (64, 128, 256, 512, 1024), 'mobilenet_v1_small': (16, 32, 64, 128, 256)}
STEM = {'mobilenet_v1': 32, 'mobilenet_v1_small': 8}


def _init_shapes(name, shape, **kwargs):
  """Parameter and output shapes by tracing only: mobilenet_v1 at full width costs no compute."""
  model = models.get_backbone(name, **kwargs)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return variables, out


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', ['mobilenet_v1', 'mobilenet_v1_small'])
def test_feature_strides_shapes_and_channels(name):
  _, out = _init_shapes(name, (2, 64, 96, 3))
  assert {s: f.shape for s, f in out['features'].items()} == {
      2**k: (2, 64 // 2**k, 96 // 2**k, c) for k, c in enumerate(WIDTHS[name], start=1)}
  # pre_pool (as ResNet's): the map each stride-2 layer downsamples.
  assert out['pre_pool'][2].shape == (2, 64, 96, 3)
  for s in (4, 8, 16, 32):
    assert out['pre_pool'][s].shape == out['features'][s // 2].shape


def test_dtype_reaches_the_outputs():
  _, out = _init_shapes('mobilenet_v1_small', (1, 32, 32, 3), dtype=jnp.bfloat16,
                        bn_axis_name=None)
  assert all(f.dtype == jnp.bfloat16 for f in out['features'].values())


@pytest.mark.parametrize('name', ['mobilenet_v1', 'mobilenet_v1_small'])
def test_blocks_are_depthwise_separable(name):
  variables, _ = _init_shapes(name, (1, 32, 32, 3))
  params = variables['params']
  alpha = WIDTHS[name][0] / 64
  cin = STEM[name]
  assert params['conv0']['kernel'].shape == (3, 3, 3, cin)
  total = 27 * cin + 2 * cin
  for i, (c, _) in enumerate(mobilenet.MOBILENET_V1_BLOCKS, start=1):
    cout = round(c * alpha)
    block = params[f'block{i}']
    assert block['dw']['kernel'].shape == (3, 3, 1, cin)  # flax's depthwise kernel layout.
    # 3x3 per input channel, the 1x1 conv, BN scale and bias after each; no conv biases.
    assert _count(block) == 9 * cin + cin * cout + 2 * cin + 2 * cout
    total += _count(block)
    cin = cout
  assert _count(params) == total
  # Table 1 / Table 6 count the 1000-way classifier too: 4.2M (alpha 1) and 0.5M (alpha 0.25).
  with_fc = _count(params) + cin * 1000 + 1000
  assert round(with_fc / 1e6, 1) == {'mobilenet_v1': 4.2, 'mobilenet_v1_small': 0.5}[name]


@pytest.mark.parametrize('stride', [1, 2])
def test_depthwise_conv_matches_flax_grouped_conv(stride):
  x = jax.random.normal(jax.random.key(1), (2, 9, 8, 6))
  grouped = nn.Conv(6, (3, 3), (stride, stride), padding=[(1, 1)] * 2, feature_group_count=6,
                    use_bias=False)
  ours = mobilenet.DepthwiseConv(stride)
  params = grouped.init(jax.random.key(0), x)
  # Same tree, shapes and initial values: checkpoints move between the implementations.
  jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.key(0), x), params)
  np.testing.assert_allclose(ours.apply(params, x), grouped.apply(params, x), rtol=1e-5,
                             atol=1e-5)
  # The backward passes agree as well (the slices' is XLA's transpose of slicing, not a conv's).
  k = params['params']['kernel']
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k, stride)))
  g_lax = jax.grad(loss(mobilenet.depthwise_conv_lax), argnums=(0, 1))(x, k)
  g_slices = jax.grad(loss(mobilenet.depthwise_conv_slices), argnums=(0, 1))(x, k)
  for a, b in zip(g_lax, g_slices, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_train_updates_batch_stats_and_gradients_are_finite():
  model = models.get_backbone('mobilenet_v1_small')
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  # Jitted: op-by-op init compiles every op on its own, twice as slow here.
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)

  @jax.jit
  def step(params, batch_stats):
    def loss(params):
      out, updates = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                                 mutable=['batch_stats'])
      return sum(jnp.mean(f**2) for f in out['features'].values()), updates['batch_stats']
    return jax.grad(loss, has_aux=True)(params)

  grads, new_stats = step(variables['params'], variables['batch_stats'])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'], new_stats)
  assert all(jax.tree.leaves(changed))  # Every BN layer, mean and var.
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert all(float(jnp.abs(grads[f'block{i}']['dw']['kernel']).sum()) > 0
             for i in range(1, len(mobilenet.MOBILENET_V1_BLOCKS) + 1))
