"""Tiny hand-made detection batches shared by the detector tests."""
import numpy as np


def toy_detection_batch(n: int = 2, size: int = 64, num_proposals: int = 0) -> dict:
  """Coloured squares on noise, two per image: the boxes are exact, so a few steps fit them.

  With `num_proposals`, 'proposals' holds the objects jittered, then random boxes; the last two
  are padding ('proposal_valid' False).
  """
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 0.3, (n, size, size, 3)).astype(np.float32)
  boxes = np.zeros((n, 4, 4), np.float32)
  labels = np.zeros((n, 4), np.int32)
  for i in range(n):
    for j, (y, x, s, c) in enumerate([(8 + 20 * i, 10, 18, 1), (36, 30 - 10 * i, 22, 2)]):
      image[i, y:y + s, x:x + s, c - 1] = 1.0
      boxes[i, j], labels[i, j] = (y, x, y + s, x + s), c
  batch = {'image': image, 'boxes': boxes, 'labels': labels, 'valid': labels > 0}
  if num_proposals:
    yx = rng.uniform(0, 40, (n, num_proposals, 2))
    proposals = np.concatenate([yx, yx + rng.uniform(8, 24, (n, num_proposals, 2))], -1)
    proposals[:, :2] = boxes[:, :2] + rng.normal(0, 2, (n, 2, 4))
    batch['proposals'] = proposals.astype(np.float32)
    batch['proposal_valid'] = np.arange(num_proposals)[None].repeat(n, 0) < num_proposals - 2
  return batch
