"""The game's CNN and its jitted train/eval steps, one compiled pair per (width, depth).

Architecture (no batch norm, so Net2Net morphs are exact and need no statistics):
  stem: 3x3 conv stride 2 -> ReLU                     (16x16x width)
  stage 1: ceil(depth/2) x [3x3 conv -> ReLU]         (16x16)
  2x2 max pool                                        (8x8)
  stage 2: floor(depth/2) x [3x3 conv -> ReLU]        (8x8)
  global average pool -> dropout(rate) -> dense(10)
Parameters are named stem, conv_0 .. conv_{depth-1}, head.

Learning rate and weight decay live in the optimizer state (optax.inject_hyperparams) and the
dropout rate is an input array, so changing any of them reuses the compiled step.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


def stage_sizes(depth):
  return (depth + 1) // 2, depth // 2


class HQNet(nn.Module):
  width: int
  depth: int
  num_classes: int = 10

  @nn.compact
  def __call__(self, images, dropout_rate, *, train, dropout_rng=None):
    x = images.astype(jnp.float32) / 255.0
    conv = functools.partial(nn.Conv, self.width, (3, 3), padding="SAME")
    x = nn.relu(conv(strides=(2, 2), name="stem")(x))
    s1, s2 = stage_sizes(self.depth)
    for i in range(s1):
      x = nn.relu(conv(name=f"conv_{i}")(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    for i in range(s1, s1 + s2):
      x = nn.relu(conv(name=f"conv_{i}")(x))
    x = x.mean(axis=(1, 2))
    if train:
      # Inverted dropout with a traced rate: a new rate never triggers a recompile.
      keep = 1.0 - dropout_rate
      mask = jax.random.bernoulli(dropout_rng, keep, x.shape)
      x = jnp.where(mask, x / keep, 0.0)
    return nn.Dense(self.num_classes, name="head")(x)


def make_optimizer(learning_rate, weight_decay):
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum=0.9))


def optimizer(lr, wd):
  return optax.inject_hyperparams(make_optimizer)(learning_rate=lr, weight_decay=wd)


def set_hparams(opt_state, lr, wd):
  """Writes lr / weight decay into the optimizer state (same shapes and dtypes: no recompile)."""
  hp = dict(opt_state.hyperparams)
  hp["learning_rate"] = jnp.asarray(lr, jnp.float32)
  hp["weight_decay"] = jnp.asarray(wd, jnp.float32)
  return opt_state._replace(hyperparams=hp)


def init_params(width, depth, seed):
  model = HQNet(width, depth)
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  return model.init(jax.random.PRNGKey(seed), x, 0.0, train=False)["params"]


def param_shapes(width, depth):
  """Abstract parameter tree for an architecture (a restore target, computed without FLOPs)."""
  return jax.eval_shape(lambda: init_params(width, depth, 0))


@functools.cache
def steps(width, depth):
  """(train_step, eval_step) for one architecture, jitted once and cached."""
  model = HQNet(width, depth)
  tx = optimizer(0.0, 0.0)  # hyperparameters are read from the state, not from here

  def train_step(params, opt_state, images, labels, rng, dropout_rate):
    def loss_fn(p):
      logits = model.apply({"params": p}, images, dropout_rate, train=True, dropout_rng=rng)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, logits
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)
    return params, opt_state, loss, correct

  def eval_step(params, images, labels, weights):
    logits = model.apply({"params": params}, images, 0.0, train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.sum(loss * weights), jnp.sum(correct * weights)

  return jax.jit(train_step, donate_argnums=(0, 1)), jax.jit(eval_step)


def apply_fn(width, depth):
  """Jitted inference logits(params, images) (used by tests of Net2Net)."""
  model = HQNet(width, depth)
  return jax.jit(lambda p, x: model.apply({"params": p}, x, 0.0, train=False))


def train_epoch(params, opt_state, data, hp, batch_size, rng_seed):
  """One pass over the (shuffled) training split; returns params, opt_state and metrics."""
  x, y = data
  train_step, _ = steps(hp["width"], hp["depth"])
  rs = np.random.default_rng(rng_seed)
  perm = rs.permutation(len(x))
  nb = max(1, len(x) // batch_size)
  key = jax.random.PRNGKey(rng_seed)
  rate = jnp.asarray(hp["dropout"], jnp.float32)
  losses, corrects = [], []
  for b in range(nb):
    idx = perm[b * batch_size:(b + 1) * batch_size]
    params, opt_state, loss, correct = train_step(
      params, opt_state, x[idx], y[idx], jax.random.fold_in(key, b), rate)
    losses.append(loss)
    corrects.append(correct)
  n = nb * min(batch_size, len(x))
  loss = float(np.mean(jax.device_get(losses)))
  acc = float(np.sum(jax.device_get(corrects)) / n)
  return params, opt_state, {"train_loss": loss, "train_acc": acc}


def evaluate(params, data, hp, batch_size):
  x, y = data
  _, eval_step = steps(hp["width"], hp["depth"])
  bs = min(batch_size, len(x))
  tot_loss, tot_correct = 0.0, 0.0
  for s in range(0, len(x), bs):
    xb, yb = x[s:s + bs], y[s:s + bs]
    w = np.ones(bs, np.float32)
    if len(xb) < bs:  # pad the last batch to the compiled shape; padding has weight 0
      pad = bs - len(xb)
      w[len(xb):] = 0.0
      xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
      yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
    loss, correct = eval_step(params, xb, yb, w)
    tot_loss += float(loss)
    tot_correct += float(correct)
  return {"val_loss": tot_loss / len(x), "val_acc": tot_correct / len(x)}
