r"""Runs a trained model on image files: COCO-format predictions, label PNGs and overlays.

  python -m tools.predict --checkpoint runs/mask_rcnn --images photos/ 'more/*.jpg' --out preds
  python -m tools.predict --config configs/inst/mask_rcnn_r50_fpn_torchvision.py \
      --checkpoint converted/ --images a.png b.jpg --out preds [--config.detect.score_threshold=0.3]

`--images`: files, folders (their image files) or globs; any size, aspect ratio and mode
(grayscale, RGBA, palette, 16-bit; EXIF orientation applied). Each image is resized, padded and
batched exactly as the config's eval split is (data/eval_resize.py), so predict and eval.py see
the same detections. OUT receives:
  predictions.json   detection / instance / keypoint models: COCO results in each original
                     image's pixel frame: file_name; image_id (the dataset's for files its eval
                     JSON lists, else past its ids); category_id as the dataset numbers its
                     classes; bbox [x, y, w, h]; score; segmentation (compressed RLE); keypoints
                     [x, y, v, ...]. Loadable with pycocotools' loadRes. Segmentation models:
                     file_name -> label PNG, with the class names.
  labels/NAME.png    segmentation models: the class index of each pixel (palette PNG).
  overlays/NAME.png  the prediction drawn over the image, with a legend of the classes shown.
With a train.py workdir as --checkpoint, --config may be left out (the workdir's config.json).
"""
from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import sys

import cv2
import jax
import numpy as np
import tqdm
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

import data
import tasks
from metrics.coco_protocol import image_results
from tasks import drawing
from training import compile_cache, errors
from training.evaluate import config_for, load_variables
from training.step import jitted_eval_step

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.gif')


def find_images(paths: list[str]) -> list[str]:
  """Image files of `paths` (files, folders, globs), in the given order, folders sorted."""
  out = []
  for path in paths:
    if os.path.isdir(path):
      found = sorted(os.path.join(path, f) for f in os.listdir(path)
                     if f.lower().endswith(IMAGE_EXTENSIONS))
    elif os.path.isfile(path):
      found = [path]
    else:
      found = sorted(glob.glob(path, recursive=True))
    if not found:
      raise FileNotFoundError(f'--images {path}: no such file, and no image files match it')
    out += found
  return list(dict.fromkeys(out))  # Once each, first position wins.


def by_orientation(paths: list[str]) -> list[str]:
  """`paths` with landscape images first, then portrait (stable): batches then rarely mix the
  two, so they take the landscape or portrait eval canvas instead of the larger square one.
  Reads only the headers; unreadable files keep their place for read_image to report."""
  def portrait(path):
    try:
      with Image.open(path) as img:
        w, h = img.size
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF rotation by 90 degrees.
    except Exception:  # PIL raises several types; read_image reports the file later.
      return False
    return (w < h) != turned
  return sorted(paths, key=portrait)


def read_image(path: str) -> np.ndarray:
  """uint8 RGB [H, W, 3] as shown (EXIF orientation applied), whatever the file's mode."""
  try:
    img = Image.open(path)
    img = ImageOps.exif_transpose(img)
    img.load()
  except Exception as e:  # PIL raises several types for unreadable files.
    raise errors.UserError(f'{path} is not a readable image ({e}); remove it from --images') from e
  if img.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):  # 16-bit / float: stretch to 8 bits.
    pixels = np.asarray(img, np.float64)
    low, high = pixels.min(), pixels.max()
    img = Image.fromarray(((pixels - low) / max(high - low, 1e-9) * 255).round().astype(np.uint8))
  if img.mode in ('RGBA', 'LA', 'PA') or (img.mode == 'P' and 'transparency' in img.info):
    img = img.convert('RGBA')
    background = Image.new('RGBA', img.size, (255, 255, 255, 255))  # Transparent -> white.
    img = Image.alpha_composite(background, img)
  return np.asarray(img.convert('RGB'))


def image_ids(paths: list[str], annotation_file: str | None) -> list[int]:
  """Each file's image id: the dataset's where the eval JSON lists its file name (so results
  load against that file), else one past the JSON's largest id plus its position."""
  known = {}
  if annotation_file:
    with open(annotation_file) as f:
      known = {os.path.basename(im['file_name']): int(im['id']) for im in json.load(f)['images']}
  first = max(known.values(), default=-1) + 1
  return [known.get(os.path.basename(p), first + i) for i, p in enumerate(paths)]


class _Images:
  """The images of `paths` as a sequence, read on access; the last `cache` stay in memory."""

  def __init__(self, paths: list[str], cache: int):
    self._paths = paths
    self._read = functools.lru_cache(maxsize=cache)(read_image)

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> np.ndarray:
    return self._read(self._paths[index])


def _names(paths: list[str]) -> list[str]:
  """Output file stems: the base name, made unique with its position when names repeat."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  repeated = {s for s in stems if stems.count(s) > 1}
  return [f'{s}_{i}' if s in repeated else s for i, s in enumerate(stems)]


def _overlay_scale(image) -> int:
  """Small images are drawn enlarged (nearest) so that captions and legends stay readable."""
  return max(1, 320 // max(image.shape[:2]))


def _overlay_detections(image, results, task) -> tuple[np.ndarray, list[int]]:
  names = task.class_names
  label_of = {c: k + 1 for k, c in enumerate(task.info['category_ids'])}
  boxes = np.asarray([[r['bbox'][1], r['bbox'][0], r['bbox'][1] + r['bbox'][3],
                       r['bbox'][0] + r['bbox'][2]] for r in results], np.float32).reshape(-1, 4)
  labels = np.asarray([label_of[r['category_id']] for r in results], np.int64)
  masks = keypoints = None
  if results and 'segmentation' in results[0]:
    masks = np.stack([mask_utils.decode(dict(r['segmentation'],
                                             counts=r['segmentation']['counts'].encode()))
                      for r in results])
  joints = task.info['joints']
  if results and 'keypoints' in results[0]:
    flat = np.asarray([r['keypoints'] for r in results], np.float32).reshape(len(results), -1, 3)
    keypoints = flat[..., [1, 0]] + 0.5  # COCO (x, y) pixel indices -> our (y, x) centres.
  skeleton = dict(edges=joints.skeleton, joint_names=joints.names) if joints else {}
  drawn = drawing.draw_instances(image, boxes, labels, names, masks=masks, keypoints=keypoints,
                                 scores=np.asarray([r['score'] for r in results]),
                                 scale=_overlay_scale(image),
                                 **skeleton)
  return drawn, labels.tolist()


def predict(task, variables, paths: list[str], out: str, *, score_threshold: float,
            batch_size: int, progress: bool = True) -> int:
  """Writes OUT (see the module docstring) for the images at `paths`; returns how many."""
  if not isinstance(task, (tasks.DetectionTask, tasks.SegmentationTask)):
    raise ValueError(f'predict takes detection, instance segmentation and segmentation models; '
                     f'config.task is {task.config.task!r}')
  config, names = task.config, _names(paths)
  segmentation = not isinstance(task, tasks.DetectionTask)
  os.makedirs(os.path.join(out, 'overlays'), exist_ok=True)
  if segmentation:
    os.makedirs(os.path.join(out, 'labels'), exist_ok=True)
  # Read when batched (and again for the overlay): memory stays a few batches, not the folder.
  images = _Images(paths, cache=2 * batch_size)
  eval_step = jitted_eval_step(task)
  ids = image_ids(paths, task.info.get('eval_annotations'))
  paste = getattr(task, 'mask_paste', None)  # Instance models: their own mask pasting.
  results, labels = [], {}
  bar = tqdm.tqdm(total=len(paths), desc='predict', disable=not progress)
  for indices, batch in data.pipeline.image_batches(images, config.data, batch_size=batch_size,
                                                    num_joints=task.info['num_joints']):
    predictions = jax.device_get(eval_step(variables, batch))
    for i, index in enumerate(indices):
      image, name = images[index], names[index]
      h, w = batch['image_hw'][i]
      frame = dict(image_hw=(h, w), orig_hw=image.shape[:2], image_id=ids[index])
      if segmentation:
        label = cv2.resize(np.asarray(predictions['prediction'][i][:h, :w], np.uint8),
                           image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        png = Image.fromarray(label, 'P')
        png.putpalette(drawing.palette(256).reshape(-1).tolist())
        png.save(os.path.join(out, 'labels', f'{name}.png'))
        labels[os.path.basename(paths[index])] = f'labels/{name}.png'
        drawn = drawing.upscale(drawing.blend(image, drawing.colorize(label, task.num_classes)),
                                _overlay_scale(image))
        shown = np.unique(label).tolist()
      else:
        mine = image_results({k: v[i] for k, v in predictions.items()}, **frame,
                             category_ids=task.info['category_ids'],
                             score_threshold=score_threshold, paste=paste,
                             extra={'file_name': os.path.basename(paths[index])})
        results += mine
        drawn, shown = _overlay_detections(image, mine, task)
      drawing.save_panel([drawn], [os.path.basename(paths[index])],
                         os.path.join(out, 'overlays', f'{name}.png'), scale=1,
                         legend=task.info['class_names'], legend_ids=shown)
      bar.update(1)
  bar.close()
  with open(os.path.join(out, 'predictions.json'), 'w') as f:
    listing = {'class_names': task.info['class_names'], 'labels': labels}
    json.dump(listing if segmentation else results, f)
  return len(paths)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                   epilog='Config overrides: --config.a.b=value (as train.py).')
  parser.add_argument('--config', help='Experiment config path[:args] (default: the workdir\'s '
                      'config.json)')
  parser.add_argument('--checkpoint', required=True,
                      help='A train.py workdir or a checkpoint directory (tools/import_weights.py)')
  parser.add_argument('--images', nargs='+', required=True, help='Files, folders or globs')
  parser.add_argument('--out', required=True, help='Output folder')
  parser.add_argument('--score-threshold', type=float, default=None,
                      help='Keep detections scoring at least this (default: the config\'s '
                      'detect.score_threshold, the one eval.py uses)')
  parser.add_argument('--max-images', type=int, default=None, help='Predict on the first N only')
  parser.add_argument('--batch-size', type=int, default=None,
                      help='Images per step (default: the config\'s eval_batch_size)')
  parser.add_argument('--no-progress', action='store_true', help='No progress bars')
  errors.add_verbose_flag(parser)
  args, rest = parser.parse_known_args(argv)
  unknown = [a for a in rest if not a.startswith('--config.')]
  if unknown:
    parser.error(f'unrecognized arguments: {" ".join(unknown)}')
  compile_cache.enable()
  with errors.user_input():  # Missing files, unknown names and unreadable images: one line.
    config = config_for(args.checkpoint, args.config, [a[len('--config.'):] for a in rest])
    paths = by_orientation(find_images(args.images)[:args.max_images])
    task = tasks.get_task(config)
  variables = load_variables(task, args.checkpoint)
  threshold = args.score_threshold
  if threshold is None:
    threshold = config.detect.score_threshold if 'detect' in config else 0.0
  count = predict(task, variables, paths, args.out, score_threshold=threshold,
                  batch_size=args.batch_size or config.eval_batch_size,
                  progress=not args.no_progress)
  print(f'{count} images -> {os.path.join(args.out, "predictions.json")}', file=sys.stderr)


if __name__ == '__main__':
  sys.exit(errors.guard(main)())
