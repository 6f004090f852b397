"""DeepPose's L2 loss on joint coordinates normalised to the person frame."""
import jax.numpy as jnp

from ops.keypoints import to_frame


def pose_loss(outputs, batch):
  """`loss(outputs, batch) -> (scalar, aux)` for the first person of each image.

  Squared distance between predicted and true joints in frame coordinates, summed over the cascade
  stages and averaged over the labelled joints (v > 0; occluded joints are labelled and count, as
  in DeepPose on LSP).
  """
  keypoints = batch['keypoints'][:, 0]  # [B, J, 3] (y, x, v).
  labelled = (keypoints[..., 2] > 0) & batch['valid'][:, :1]
  target = to_frame(keypoints[..., :2], outputs['frame'])
  errors = jnp.sum(jnp.square(outputs['joints'] - target[:, None]), -1)  # [B, stages, J].
  count = jnp.maximum(jnp.sum(labelled), 1)
  per_stage = jnp.sum(errors * labelled[:, None], axis=(0, 2)) / count
  aux = {f'stage{s + 1}_loss': per_stage[s] for s in range(per_stage.shape[0])}
  return jnp.sum(per_stage), aux
