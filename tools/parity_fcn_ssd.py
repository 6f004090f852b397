r"""torchvision's FCN-ResNet and SSD300-VGG16 next to ours: the same seeded weights and images.

  python -m tools.parity_fcn_ssd --arch fcn_resnet50 \
      --fixture tests/fixtures/parity_fcn_resnet50.npz
  python -m tools.parity_fcn_ssd --arch fcn_resnet101 --num-classes 21 --sizes 520x693,520x520
  python -m tools.parity_fcn_ssd --arch ssd300_vgg16 \
      --fixture tests/fixtures/parity_ssd300_vgg16.npz

Run with our virtualenv: the torchvision half runs in a subprocess under `--torch-python` (a
Python with torch and torchvision, requirements-bench.txt; default: tools/torch_side.py)
that calls this module with `torch` as its first argument and writes its outputs to an npz.

Weights: `seeded_state_dict(arch, seed, num_classes)` draws every tensor of torchvision's state
dict (its key names and shapes, checked by torch's strict `load_state_dict`) from a numpy seed, so
no weight file is committed and tests/test_parity_fcn_ssd.py regenerates them.
Images: `make_images(sizes, seed)`, uint8 [H, W, 3] with smooth colour gradients, random
rectangles and ellipses and noise. FCN runs each image at its own size (torchvision's FCN takes any
size; the eval resize to 520 is the data pipeline's). SSD gets them stretched to 300x300 by its
own transform (torchvision's GeneralizedRCNNTransform, fixed_size) and ours by the same bilinear
resize (`resize_300`), detections in the 300x300 frame.

Printed: per image the largest differences (FCN: logits relative to their largest magnitude and
argmax agreement; SSD: boxes, scores, labels). `--fixture PATH` writes torchvision's outputs in the
small form the test reads.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

from tools import parity_weights as weights
from tools import torch_side

ARCHS = ('fcn_resnet50', 'fcn_resnet101', 'ssd300_vgg16')
FCN_SIZES = ((56, 80), (80, 64))  # The fixture's (height, width): small, two aspect ratios.
SSD_SIZES = ((120, 160), (150, 100))
FIXTURE_CLASSES = {'fcn_resnet50': 4, 'fcn_resnet101': 4, 'ssd300_vgg16': 5}
IMAGENET_MEAN = np.asarray((0.485, 0.456, 0.406), np.float32)
IMAGENET_STD = np.asarray((0.229, 0.224, 0.225), np.float32)


def make_images(sizes, seed: int = 0) -> list[np.ndarray]:
  """uint8 images [H, W, 3] of `sizes` (see the module docstring)."""
  rng = np.random.default_rng(seed)
  images = []
  for h, w in sizes:
    yy, xx = np.mgrid[0:h, 0:w] / np.asarray([h, w], np.float64)[:, None, None]
    image = np.stack([rng.uniform(0.2, 0.8) + rng.uniform(-0.3, 0.3) * yy
                      + rng.uniform(-0.3, 0.3) * xx for _ in range(3)], axis=-1)
    for _ in range(8):
      cy, cx, ry, rx = rng.uniform(0, 1, 2).tolist() + rng.uniform(0.08, 0.35, 2).tolist()
      if rng.uniform() < 0.5:
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
      else:
        inside = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
      image[inside] = rng.uniform(0, 1, 3)
    image += rng.normal(0, 0.03, image.shape)
    images.append(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
  return images


def default_sizes(arch: str):
  return SSD_SIZES if arch.startswith('ssd') else FCN_SIZES


# ---------------------------------------------------------------------------------------------
# The torchvision half (run under --torch-python).


def torch_half(arch: str, seed: int, num_classes: int, sizes, out: str):
  """Runs torchvision's `arch` on make_images(sizes, seed); writes its outputs to `out` (npz)."""
  import torch
  from torchvision.models import detection, segmentation

  state = {k: torch.from_numpy(np.asarray(v))
           for k, v in weights.seeded_state_dict(arch, seed, num_classes).items()}
  images = make_images(sizes, seed)
  result = {}
  if arch.startswith('fcn'):
    model = getattr(segmentation, arch)(weights=None, weights_backbone=None,
                                        num_classes=num_classes, aux_loss=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
      for n, image in enumerate(images):
        x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        out_n = model(torch.from_numpy(x).permute(2, 0, 1)[None])
        result[f'logits_{n}'] = out_n['out'][0].permute(1, 2, 0).numpy()
        result[f'aux_logits_{n}'] = out_n['aux'][0].permute(1, 2, 0).numpy()
  else:
    model = detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)
    model.load_state_dict(state, strict=True)
    model.eval()
    stages = {}
    model.head.register_forward_hook(lambda m, i, o: stages.update(head=o))
    model.anchor_generator.register_forward_hook(lambda m, i, o: stages.update(anchors=o[0]))
    with torch.no_grad():
      dets = model([torch.from_numpy(i.astype(np.float32) / 255.0).permute(2, 0, 1)
                    for i in images])
    for n, det in enumerate(dets):  # In each original image's frame, as torchvision returns.
      result[f'boxes_{n}'] = det['boxes'].numpy()[:, [1, 0, 3, 2]]
      result[f'scores_{n}'] = det['scores'].numpy()
      result[f'labels_{n}'] = det['labels'].numpy()
    result['class_logits'] = stages['head']['cls_logits'].numpy()
    result['box_deltas'] = stages['head']['bbox_regression'].numpy()[..., [1, 0, 3, 2]]
    result['anchors'] = stages['anchors'].numpy()[:, [1, 0, 3, 2]]
  np.savez(out, **result)


# ---------------------------------------------------------------------------------------------
# Our half.


def resize_300(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [300, 300, 3] in [0, 1], torchvision's SSD stretch (bilinear,
  half-pixel centres, no antialias: cv2's INTER_LINEAR on float32 is torch's formula)."""
  import cv2
  return cv2.resize(image.astype(np.float32) / 255.0, (300, 300), interpolation=cv2.INTER_LINEAR)


def run_ours(arch: str, seed: int, num_classes: int, sizes) -> dict:
  """Our converted model on make_images(sizes, seed): FCN logits per image, or SSD detections in
  each original frame (yxyx) plus the raw head outputs."""
  import jax
  import jax.numpy as jnp

  from models import get_model, ssd_vgg16
  from models.torchvision_fcn_ssd import convert, model_kwargs

  name, kwargs = model_kwargs(arch, num_classes)
  model = get_model(name, **kwargs)
  variables = convert(weights.seeded_state_dict(arch, seed, num_classes), arch)
  images = make_images(sizes, seed)
  if arch.startswith('fcn'):
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return {f'logits_{n}': np.asarray(forward(variables, jnp.asarray(
        image[None].astype(np.float32) / 255.0))[0]) for n, image in enumerate(images)}

  def forward(v, x):
    out = model.apply(v, x, train=False)
    return out, ssd_vgg16.detect(out, (300, 300))

  out, dets = jax.jit(forward)(variables, jnp.asarray(np.stack([resize_300(i) for i in images])))
  result = {k: np.asarray(out[k]) for k in ('class_logits', 'box_deltas', 'anchors')}
  for n, image in enumerate(images):
    keep = np.asarray(dets['valid'][n])
    scale = np.tile(np.asarray(image.shape[:2], np.float32) / 300.0, 2)
    result[f'boxes_{n}'] = np.asarray(dets['boxes'][n])[keep] * scale
    result[f'scores_{n}'] = np.asarray(dets['scores'][n])[keep]
    result[f'labels_{n}'] = np.asarray(dets['labels'][n])[keep]
  return result


def compare(arch: str, theirs: dict, ours: dict, count: int) -> list[dict]:
  """Largest differences per image (and, for SSD, of the raw head outputs)."""
  rows = []
  if arch.startswith('ssd') and 'anchors' in theirs:
    rows.append({'anchors max px': float(np.abs(theirs['anchors'] - ours['anchors']).max()),
                 'class logits rel': _rel(theirs['class_logits'], ours['class_logits']),
                 'box deltas rel': _rel(theirs['box_deltas'], ours['box_deltas'])})
  for n in range(count):
    if arch.startswith('fcn'):
      ref, got = theirs[f'logits_{n}'], ours[f'logits_{n}']
      rows.append({'image': n, 'size': ref.shape[:2], 'logits rel': _rel(ref, got),
                   'argmax agree': float(np.mean(ref.argmax(-1) == got.argmax(-1)))})
      continue
    row = {'image': n, 'detections': f'{len(ours[f"boxes_{n}"])} vs {len(theirs[f"boxes_{n}"])}'}
    if len(ours[f'boxes_{n}']) == len(theirs[f'boxes_{n}']):
      row['boxes max px'] = float(np.abs(theirs[f'boxes_{n}'] - ours[f'boxes_{n}']).max(initial=0))
      row['scores max'] = float(np.abs(theirs[f'scores_{n}'] - ours[f'scores_{n}']).max(initial=0))
      row['labels equal'] = bool(np.array_equal(theirs[f'labels_{n}'], ours[f'labels_{n}']))
    rows.append(row)
  return rows


def _rel(ref, got) -> float:
  """Largest absolute difference relative to the reference's largest magnitude."""
  return float(np.abs(ref - got).max() / np.abs(ref).max())


# ---------------------------------------------------------------------------------------------
# Fixtures and the command line.


def fixture_arrays(arch: str, theirs: dict, seed: int, num_classes: int, sizes) -> dict:
  """torchvision's outputs in the small form tests/test_parity_fcn_ssd.py reads."""
  keys = ('logits',) if arch.startswith('fcn') else ('boxes', 'scores', 'labels')
  out = {'arch': arch, 'seed': seed, 'num_classes': num_classes, 'sizes': np.asarray(sizes)}
  for n in range(len(sizes)):
    for key in keys:
      value = theirs[f'{key}_{n}']
      out[f'{key}_{n}'] = value.astype(np.int16 if key == 'labels' else np.float32)
  return out


def _sizes(text: str):
  try:
    return tuple(tuple(int(v) for v in s.split('x')) for s in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'--sizes {text!r}: give HxW[,HxW...], e.g. 520x693,520x520') from None


def main():
  if sys.argv[1:2] == ['torch']:  # The torchvision half, in the torch interpreter.
    arch, seed, num_classes, sizes, out = sys.argv[2:]
    torch_half(arch, int(seed), int(num_classes), _sizes(sizes), out)
    return
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--arch', choices=ARCHS, required=True)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num-classes', type=int, help='default: the fixture\'s (FIXTURE_CLASSES)')
  parser.add_argument('--sizes', type=_sizes, help='image sizes HxW,...; default: the fixture\'s')
  parser.add_argument('--fixture', help='write torchvision\'s outputs here')
  parser.add_argument('--torch-python', default=torch_side.default_python(),
                      help='a Python with torch and torchvision')
  args = parser.parse_args()
  num_classes = args.num_classes or FIXTURE_CLASSES[args.arch]
  sizes = args.sizes or default_sizes(args.arch)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'torch.npz')
    subprocess.run([args.torch_python, '-m', 'tools.parity_fcn_ssd', 'torch', args.arch,
                    str(args.seed), str(num_classes), ','.join(f'{h}x{w}' for h, w in sizes),
                    path], check=True, cwd=repo)
    theirs = dict(np.load(path))
  ours = run_ours(args.arch, args.seed, num_classes, sizes)
  print(f'{args.arch}, {num_classes} classes, seed {args.seed}, sizes {sizes}:')
  for row in compare(args.arch, theirs, ours, len(sizes)):
    print('  ' + ', '.join(f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}'
                           for k, v in row.items()))
  if args.fixture:
    np.savez_compressed(args.fixture, **fixture_arrays(args.arch, theirs, args.seed, num_classes,
                                                       sizes))
    print(f'wrote {args.fixture} ({os.path.getsize(args.fixture) // 1024} KB)')


if __name__ == '__main__':
  main()
