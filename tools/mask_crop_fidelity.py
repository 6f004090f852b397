r"""How close Mask R-CNN's targets from per-box mask crops are to those from the full masks.

  python -m tools.mask_crop_fidelity --config configs/inst/mask_rcnn_shapes.py --images 200
  python -m tools.mask_crop_fidelity --config configs/inst/mask_rcnn_r101_fpn_coco.py \
      --set data.manual_dir=/tmp/cocolike/manual --set data.data_dir=/tmp/cocolike/tfds \
      --set data.augment.min_size=800 --set data.augment.max_size=1333 --crop_sizes 28 56 112

Takes the first `--images` train examples through the train augmentation, then for each
instance and `--rois` proposal-like RoIs (the box itself and boxes jittered to IoU >= 0.5 with
it, as the mask head's positive RoIs are) compares the 28x28 targets of `ops.masks.crop_targets`
(from the element's `instance_crops` of each `--crop_sizes` S) with RoIAlign (aligned,
`--samples` x `--samples` per bin, threshold 0.5) of the instance's full-resolution binary mask:
2, the targets before crops; more, closer to each bin's exact coverage (then the row 'full 2x2'
compares the targets before crops with that reference too). Prints per S the mean and 1st
percentile of the per-RoI IoU and the share of target cells that differ.
"""
import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

import data
from configs import loader
from data import augment, pipeline
from ops.boxes import iou
from ops.masks import crop_targets
from ops.roi import roi_align

_SIZE = 28  # Mask R-CNN's target size.


def proposal_like(boxes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
  """[K, count, 4]: each box, then count - 1 jittered copies with IoU >= 0.5 with it."""
  hw = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, -1)
  out = np.repeat(boxes[:, None], count, 1).astype(np.float32)
  for k in range(len(boxes)):
    filled = 1
    while filled < count:
      cand = boxes[k] + rng.normal(0, 0.12, 4) * hw[k]
      if cand[2] > cand[0] and cand[3] > cand[1] and iou(boxes[k:k + 1], cand[None])[0, 0] >= 0.5:
        out[k, filled] = cand
        filled += 1
  return out


@functools.partial(jax.jit, static_argnames='samples')
def _full_targets(masks, rois, matched, samples):
  rows = jnp.concatenate([matched[:, None].astype(jnp.float32), rois], -1)
  out = roi_align(masks[..., None].astype(jnp.float32), rows, (_SIZE, _SIZE), 1.0, samples,
                  True, method='einsum')
  return (out[..., 0] >= 0.5).astype(jnp.float32)


def compare(config, images: int, crop_sizes, rois_per_box: int, samples: int,
            seed: int = 0) -> dict:
  cfg = config.data
  source = pipeline.decoded_source(cfg, cfg.get('train_split', 'train'))
  rng = np.random.default_rng(seed)
  rows = [*crop_sizes, *(['full 2x2'] if samples != 2 else [])]
  ious = {s: [] for s in rows}
  differ = {s: 0.0 for s in rows}
  cells = 0
  for i in range(min(images, len(source))):
    aug = pipeline.train_example(i, source[i], cfg=cfg, seed=seed, process_index=0)
    full = pipeline.to_element(aug, cfg.max_boxes, targets=('instances',))
    n = int(full['valid'].sum())
    if not n:
      continue
    boxes = full['boxes'][:n]
    masks = augment.ids_to_masks(full['instance_ids'], n)
    keep = masks.reshape(n, -1).any(1) & np.all(boxes[:, 2:] > boxes[:, :2], 1)
    rois = proposal_like(boxes, rois_per_box, rng)[keep].reshape(-1, 4)
    matched = np.repeat(np.flatnonzero(keep), rois_per_box).astype(np.int32)
    want = np.asarray(_full_targets(jnp.asarray(masks), jnp.asarray(rois), jnp.asarray(matched),
                                    samples))
    cells += want.size
    for s in rows:
      if s == 'full 2x2':
        got = np.asarray(_full_targets(jnp.asarray(masks), jnp.asarray(rois),
                                       jnp.asarray(matched), 2))
      else:
        crops = pipeline.to_element(aug, cfg.max_boxes, targets=('instances',),
                                    crop_size=s)['instance_crops'][:n]
        got = np.asarray(crop_targets(jnp.asarray(crops), jnp.asarray(boxes), jnp.asarray(rois),
                                      jnp.asarray(matched), _SIZE))
      inter = (got * want).sum((1, 2))
      union = np.maximum(got, want).sum((1, 2))
      ious[s] += list(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
      differ[s] += float((got != want).sum())
  return {s: dict(rois=len(ious[s]), mean_iou=float(np.mean(ious[s])),
                  p1_iou=float(np.percentile(ious[s], 1)), cells_differ=differ[s] / cells)
          for s in rows}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='Config file (path[:args]).')
  parser.add_argument('--set', action='append', default=[], help='Override, e.g. data.x=1.')
  parser.add_argument('--images', type=int, default=100)
  parser.add_argument('--rois', type=int, default=4, help='RoIs per instance.')
  parser.add_argument('--crop_sizes', type=int, nargs='+', default=[28, 56, 112])
  parser.add_argument('--samples', type=int, default=2,
                      help='RoIAlign samples per bin and axis of the full-mask reference: 2 is '
                      'what Mask R-CNN used before crops; more approaches the exact area.')
  args = parser.parse_args()
  config = loader.override(loader.load(args.config), args.set)
  data.ensure_prepared(config.data)
  for s, r in compare(config, args.images, args.crop_sizes, args.rois, args.samples).items():
    print(f"| {s} | {r['rois']} | {r['mean_iou']:.4f} | {r['p1_iou']:.4f} | "
          f"{100 * r['cells_differ']:.2f}% |", flush=True)


if __name__ == '__main__':
  main()
