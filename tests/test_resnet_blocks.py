"""models.resnet.scan_blocks: a stage's repeated blocks as one scan equal them one by one."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from models.resnet import _Block, scan_blocks

NAMES = ('layer2_1', 'layer2_2', 'layer2_3')


class _Stage(nn.Module):
  """Three frozen-BN bottlenecks (64 -> 16 -> 64 channels), scanned or one by one."""
  scan: bool

  @nn.compact
  def __call__(self, x):
    block = functools.partial(_Block, 16, 1, True, frozen_bn=True)
    kwargs = dict(train=True, extent=jnp.array([[40, 48]]), stride=8)
    if self.scan and not self.is_initializing():
      return scan_blocks(self, block, NAMES, x, **kwargs)
    for name in NAMES:
      x = block(name=name)(x, **kwargs)
    return x


def test_scanned_blocks_match_the_unrolled_ones_in_value_and_gradient():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 7, 64))
  variables = _Stage(scan=False).init(jax.random.PRNGKey(1), x)
  # Statistics away from (0, 1), so that a block that read another's would show.
  stats = jax.tree.map(lambda v: v + jax.random.uniform(jax.random.PRNGKey(2), v.shape),
                       variables['batch_stats'])
  outputs = {}
  for scan in (False, True):
    def loss(params, x, scan=scan):
      y = _Stage(scan).apply({'params': params, 'batch_stats': stats}, x)
      return jnp.sum(jnp.sin(y)), y
    outputs[scan] = jax.grad(loss, argnums=(0, 1), has_aux=True)(variables['params'], x)
  (unrolled_grads, unrolled), (scanned_grads, scanned) = outputs[False], outputs[True]
  np.testing.assert_allclose(scanned, unrolled, rtol=1e-5, atol=1e-5)
  assert set(scanned_grads[0]) == set(NAMES)
  for a, b in zip(jax.tree.leaves(unrolled_grads), jax.tree.leaves(scanned_grads), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
