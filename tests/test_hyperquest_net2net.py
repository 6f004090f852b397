"""Net2WiderNet / Net2DeeperNet keep the network's function; shrinking gives valid shapes."""
import jax
import numpy as np
import pytest

from hyperquest import model, net2net

X = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3)).astype(np.uint8)


def trained_like(width, depth, seed=0):
  """Random params with non-zero biases (a fresh init has zero biases, which hides bugs)."""
  p = model.init_params(width, depth, seed)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: np.asarray(a) + 0.05 * rng.normal(size=a.shape).astype(a.dtype), p)


def out(params, width, depth):
  return np.asarray(model.apply_fn(width, depth)(params, X))


@pytest.mark.parametrize("old,new", [((16, 1), (32, 1)), ((32, 2), (64, 2)), ((32, 1), (32, 2)),
                                     ((32, 2), (32, 4)), ((16, 2), (32, 8)),
                                     ((32, 4), (32, 16))])
def test_growth_keeps_outputs(old, new):
  p = trained_like(*old)
  q = net2net.morph(p, {"width": old[0], "depth": old[1]}, {"width": new[0], "depth": new[1]},
                    np.random.default_rng(1), noise=0.05)
  assert q["stem"]["kernel"].shape[-1] == new[0]
  assert sum(k.startswith("conv_") for k in q) == new[1]
  before, after = out(p, *old), out(q, *new)
  np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)
  assert np.abs(before).max() > 1e-2  # the comparison is not trivially between zeros


def test_widen_copies_units_and_splits_outgoing_weights():
  p = trained_like(16, 1)
  q = net2net.widen(p, 1, 32, np.random.default_rng(0), noise=0.0)
  old_k, new_k = np.asarray(p["conv_0"]["kernel"]), q["conv_0"]["kernel"]
  stem_old, stem_new = np.asarray(p["stem"]["kernel"]), q["stem"]["kernel"]
  # Every new unit is an exact copy of an old unit (g), and the outgoing weights of each old
  # unit's copy group sum to that unit's original outgoing weights.
  g = [next(i for i in range(16) if np.allclose(stem_new[..., j], stem_old[..., i]))
       for j in range(32)]
  assert g[:16] == list(range(16))
  for i in range(16):
    group = [j for j in range(32) if g[j] == i]
    np.testing.assert_allclose(new_k[:, :, group, :16].sum(2), old_k[:, :, i, :], atol=1e-5)


def test_shrinking_gives_a_working_smaller_net():
  p = trained_like(64, 4)
  q = net2net.morph(p, {"width": 64, "depth": 4}, {"width": 32, "depth": 2}, None)
  assert q["stem"]["kernel"].shape == (3, 3, 3, 32) and set(q) == {"stem", "conv_0", "conv_1",
                                                                   "head"}
  y = out(q, 32, 2)
  assert y.shape == (6, 10) and np.isfinite(y).all()
