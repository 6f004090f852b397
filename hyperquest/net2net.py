"""Function-preserving architecture morphs (Net2Net, Chen et al. 2016) on HQNet parameters.

Net2WiderNet: every conv layer's units are copied by a random mapping g (new unit j copies old
unit g(j)); the next layer's incoming weights from a copied unit are divided by the copy count.
To let the copies diverge during training without changing the function, each copy's outgoing
weight gets zero-sum noise within its copy group (the group's sum stays exactly the original).
Net2DeeperNet: new 3x3 conv layers start as the identity (centre tap = 1); they sit after a ReLU,
so ReLU(identity(x)) = x. New layers are appended at the end of each stage (see model.py).
Shrinking keeps the units with the largest outgoing weight norm / the first layers of each stage;
that changes the function (there is no batch norm to re-estimate: the net has none).
"""
import numpy as np

from hyperquest.model import stage_sizes


def _layer_names(depth):
  return ["stem"] + [f"conv_{i}" for i in range(depth)]


def _np(params):
  return {k: {n: np.asarray(v) for n, v in layer.items()} for k, layer in params.items()}


def widen(params, depth, new_width, rng, noise=0.01):
  """Widens every conv layer to `new_width` units, keeping the network's function."""
  p = _np(params)
  names = _layer_names(depth)
  old = p["stem"]["kernel"].shape[-1]
  if new_width < old:
    raise ValueError("widen() grows; use shrink_width() to narrow")
  consumers = names[1:] + ["head"]
  for name, consumer in zip(names, consumers, strict=True):
    g = np.concatenate([np.arange(old), rng.integers(0, old, size=new_width - old)])
    counts = np.bincount(g, minlength=old).astype(np.float32)
    p[name]["kernel"] = p[name]["kernel"][..., g]
    p[name]["bias"] = p[name]["bias"][g]
    k = p[consumer]["kernel"]
    axis = k.ndim - 2  # input-channel axis: 2 for conv HWIO, 0 for dense
    k = np.take(k, g, axis=axis) / np.expand_dims(counts[g], tuple(range(1, k.ndim - axis)))
    if noise:
      eps = rng.normal(0.0, noise * (np.std(k) + 1e-8), size=k.shape).astype(k.dtype)
      # Subtract the group mean of the noise so each copy group's sum is unchanged.
      onehot = (g[:, None] == np.arange(old)[None, :]).astype(np.float32)  # [new, old]
      e = np.moveaxis(eps, axis, -1)
      mean = (e @ onehot) / counts
      e = e - mean @ onehot.T
      k = k + np.moveaxis(e, -1, axis)
    p[consumer]["kernel"] = k.astype(np.float32)
  return p


def shrink_width(params, depth, new_width):
  """Keeps the `new_width` units of each layer with the largest outgoing weight norm."""
  p = _np(params)
  names = _layer_names(depth)
  consumers = names[1:] + ["head"]
  for name, consumer in zip(names, consumers, strict=True):
    k = p[consumer]["kernel"]
    axis = k.ndim - 2
    norms = np.sqrt((np.moveaxis(k, axis, 0).reshape(k.shape[axis], -1) ** 2).sum(1))
    keep = np.sort(np.argsort(-norms)[:new_width])
    p[name]["kernel"] = p[name]["kernel"][..., keep]
    p[name]["bias"] = p[name]["bias"][keep]
    p[consumer]["kernel"] = np.take(k, keep, axis=axis)
  return p


def _identity_conv(width):
  k = np.zeros((3, 3, width, width), np.float32)
  k[1, 1] = np.eye(width, dtype=np.float32)
  return {"kernel": k, "bias": np.zeros(width, np.float32)}


def set_depth(params, depth, new_depth):
  """Deepens with identity layers (function kept) or drops the last layers of each stage."""
  p = _np(params)
  width = p["stem"]["kernel"].shape[-1]
  old1, old2 = stage_sizes(depth)
  new1, new2 = stage_sizes(new_depth)
  stage1 = [p[f"conv_{i}"] for i in range(old1)]
  stage2 = [p[f"conv_{i}"] for i in range(old1, old1 + old2)]
  stage1 = (stage1 + [_identity_conv(width) for _ in range(new1 - old1)])[:new1]
  stage2 = (stage2 + [_identity_conv(width) for _ in range(new2 - old2)])[:new2]
  out = {"stem": p["stem"], "head": p["head"]}
  for i, layer in enumerate(stage1 + stage2):
    out[f"conv_{i}"] = layer
  return out


def morph(params, old_hp, new_hp, rng, noise=0.01):
  """Moves params from old_hp's architecture to new_hp's (depth first, then width)."""
  p = params
  if new_hp["depth"] != old_hp["depth"]:
    p = set_depth(p, old_hp["depth"], new_hp["depth"])
  if new_hp["width"] > old_hp["width"]:
    p = widen(p, new_hp["depth"], new_hp["width"], rng, noise)
  elif new_hp["width"] < old_hp["width"]:
    p = shrink_width(p, new_hp["depth"], new_hp["width"])
  return p
