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


def random_rois(rng, n: int, num_images: int, height: int, width: int, stride: int, *,
                span=(-0.2, 1.1)) -> np.ndarray:
  """RoI rows [n, 5] (batch index, y1, x1, y2, x2) in image pixels for RoI-op tests: random
  corners in `span` x the image size (so some hang off it), then rows 0-3 set to a zero-size, an
  inverted, an entirely outside and a whole-image RoI (n >= 4)."""
  ih, iw = height * stride, width * stride
  y = rng.uniform(span[0] * ih, span[1] * ih, (n, 2))
  x = rng.uniform(span[0] * iw, span[1] * iw, (n, 2))
  r = np.stack([rng.integers(0, num_images, n), y.min(1), x.min(1), y.max(1), x.max(1)], 1)
  r[0, 1:] = [3.0, 4.0, 3.0, 4.0]  # zero size
  r[1, 1:] = [20.0, 20.0, 10.0, 12.0]  # inverted
  r[2, 1:] = [-50.0, -50.0, -30.0, -20.0]  # entirely outside: empty pooling bins
  r[3, 1:] = [0.0, 0.0, ih - 1.0, iw - 1.0]  # whole image
  return r.astype(np.float32)
