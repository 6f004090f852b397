"""models.layers.Dropout under pmap draws the rows of the one-device mask (the train step's
parity test checks whole runs with dropout on; this checks the masks themselves)."""
import jax
import jax.numpy as jnp
import numpy as np

from models.layers import Dropout


def test_pmap_dropout_masks_are_the_one_device_rows():
  assert jax.device_count() == 4, 'conftest must simulate 4 CPU devices'
  x = jnp.ones((8, 5, 3))
  key = jax.random.PRNGKey(3)

  def apply(axis_name, x):
    return Dropout(0.5, axis_name).apply({}, x, deterministic=False, rngs={'dropout': key})

  one = apply(None, x)
  four = jax.pmap(lambda x: apply('batch', x), axis_name='batch')(x.reshape(4, 2, 5, 3))
  np.testing.assert_array_equal(np.asarray(four).reshape(one.shape), one)
  assert 0 < float(jnp.mean(one == 0)) < 1  # Some units dropped, some kept (x2).
  assert set(np.unique(np.asarray(one)).tolist()) == {0.0, 2.0}
