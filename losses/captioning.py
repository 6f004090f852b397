"""Caption cross-entropy: the mean over real target tokens (END included, PAD excluded)."""
import jax
import jax.numpy as jnp
import optax

from ops.tokens import PAD


def caption_loss(logits: jax.Array, targets: jax.Array,
                 weights: jax.Array | None = None) -> tuple[jax.Array, dict]:
  """logits float32 [..., T, V], targets int32 [..., T], weights [...] (one per sequence, e.g. 0
  for unused regions) -> (mean token cross-entropy, {'caption_loss', 'token_accuracy'}).

  Every counted token weighs the same, so long captions count more than short ones, as in
  Show-and-Tell and DenseCap; with no counted token both values are 0.
  """
  mask = (targets != PAD).astype(jnp.float32)
  if weights is not None:
    mask = mask * weights.astype(jnp.float32)[..., None]
  count = jnp.maximum(jnp.sum(mask), 1.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  loss = jnp.sum(ce * mask) / count
  accuracy = jnp.sum((jnp.argmax(logits, -1) == targets) * mask) / count
  return loss, {'caption_loss': loss, 'token_accuracy': accuracy}
