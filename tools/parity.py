r"""torchvision's COCO R-CNNs next to ours: the same seeded weights, the same images, every stage.

  python -m tools.parity --arch fasterrcnn_resnet50_fpn [--min-size 800 --max-size 1333]
  python -m tools.parity --arch maskrcnn_resnet50_fpn --min-size 320 --max-size 512 \
      --fixture tests/fixtures/parity_maskrcnn_resnet50_fpn.npz

Run with our virtualenv: the torchvision half runs in a subprocess under `--torch-python` (a
Python with torch and torchvision, requirements-bench.txt; default: tools/torch_side.py),
which calls this module with `torch` as the first argument and writes its outputs to an npz.

Weights: `seeded_state_dict(arch, seed)` draws every tensor of torchvision's state dict (its key
names and shapes, checked by torch's strict `load_state_dict`) from a numpy seed, so nothing is
committed and the test regenerates them; the classifier and the RPN objectness are scaled so that
scores spread and rankings are really compared. Batch norm is torchvision's FrozenBatchNorm2d with
eps 0, as in its published COCO weights.

Images (`make_images`): one photo-like 640x480 image (smooth colour gradients, random ellipses
and rectangles, Gaussian noise) and two smaller ones at other aspect ratios, uint8, from a numpy
seed. Each is scaled to [0, 1] and resized as torchvision's GeneralizedRCNNTransform (shorter
side `min_size`, longer at most `max_size`; `resize`). torchvision runs each image alone, as its
COCO evaluation does (padded to the image's own multiple of 32); ours runs the three as one batch
in the fixed canvas eval.py picks for them (larger than each image's padded size), with
`per_image_canvas` and per-image anchors (`rpn.anchor_canvas='image'`), as eval.py does.

Printed: per image and stage the largest differences (FPN maps within the image's padded size
relative to their scale, RPN proposals, final boxes, scores, labels, masks IoU, keypoints).
`--fixture PATH` writes torchvision's final outputs (small: boxes, scores, labels, packed masks,
keypoints) for tests/test_parity_torchvision.py and tests/test_reference_eval.py.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from typing import NamedTuple

import numpy as np

from tools import torch_side
from tools.parity_weights import batch_norm_or_bias, resnet_shapes

ARCHS = ('fasterrcnn_resnet50_fpn', 'maskrcnn_resnet50_fpn', 'keypointrcnn_resnet50_fpn')
IMAGE_SIZES = ((480, 640), (300, 200), (250, 400))  # (height, width)


class Settings(NamedTuple):
  """A run: the seed of weights and images, torchvision's resize, and its test-time RPN top-k
  (pre and post NMS, per level and per image) and detections per image (torchvision's keywords
  rpn_{pre,post}_nms_top_n_test and box_detections_per_img; fixtures use fewer, for speed)."""
  seed: int = 0
  min_size: int = 800
  max_size: int = 1333
  proposals: int = 1000
  detections: int = 100


# ---------------------------------------------------------------------------------------------
# Shared by both halves (numpy only).


def make_images(seed: int = 0) -> list[np.ndarray]:
  """Photo-like uint8 images [H, W, 3] of IMAGE_SIZES (see the module docstring)."""
  rng = np.random.default_rng(seed)
  images = []
  for h, w in IMAGE_SIZES:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy / h, xx / w
    image = np.stack([rng.uniform(0.2, 0.8) + rng.uniform(-0.3, 0.3) * yy
                      + rng.uniform(-0.3, 0.3) * xx
                      + 0.1 * np.sin(rng.uniform(2, 8) * xx + rng.uniform(0, 6)) for _ in range(3)],
                     axis=-1)
    for _ in range(12):
      colour = rng.uniform(0, 1, 3)
      cy, cx = rng.uniform(0, 1, 2)
      ry, rx = rng.uniform(0.05, 0.3, 2)
      if rng.uniform() < 0.5:
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
      else:
        inside = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
      shade = 1 - 0.3 * (yy - cy)  # A little shading so shapes are not flat.
      image[inside] = (colour * shade[..., None])[inside]
    image += rng.normal(0, 0.03, image.shape)
    images.append(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
  return images


def image_digest(image: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def resized_size(hw, min_size: int, max_size: int) -> tuple[int, int]:
  """torchvision's GeneralizedRCNNTransform size (SHARED_CONTRACT's rule)."""
  h, w = hw
  scale = min(min_size / min(h, w), max_size / max(h, w))
  return int(np.floor(h * scale)), int(np.floor(w * scale))


def resize(image: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [h, w, 3] in [0, 1] at torchvision's size, as eval.py resizes
  (`data.eval_resize.bilinear`: torch's arithmetic, within 1.2e-7 of it)."""
  from data import eval_resize
  return eval_resize.bilinear(image.astype(np.float32) / 255.0,
                              *resized_size(image.shape[:2], min_size, max_size))


def state_dict_shapes(arch: str) -> dict:
  """torchvision's state-dict keys and shapes of `arch` (FrozenBatchNorm2d backbone)."""
  shapes = resnet_shapes('backbone.body.', (3, 4, 6, 3), tracked=False)  # FrozenBatchNorm2d.
  for i, c in enumerate((256, 512, 1024, 2048)):
    shapes.update({f'backbone.fpn.inner_blocks.{i}.0.weight': (256, c, 1, 1),
                   f'backbone.fpn.inner_blocks.{i}.0.bias': (256,),
                   f'backbone.fpn.layer_blocks.{i}.0.weight': (256, 256, 3, 3),
                   f'backbone.fpn.layer_blocks.{i}.0.bias': (256,)})
  shapes.update({'rpn.head.conv.0.0.weight': (256, 256, 3, 3), 'rpn.head.conv.0.0.bias': (256,),
                 'rpn.head.cls_logits.weight': (3, 256, 1, 1), 'rpn.head.cls_logits.bias': (3,),
                 'rpn.head.bbox_pred.weight': (12, 256, 1, 1), 'rpn.head.bbox_pred.bias': (12,)})
  k = 2 if arch.startswith('keypoint') else 91
  shapes.update({'roi_heads.box_head.fc6.weight': (1024, 256 * 7 * 7),
                 'roi_heads.box_head.fc6.bias': (1024,),
                 'roi_heads.box_head.fc7.weight': (1024, 1024),
                 'roi_heads.box_head.fc7.bias': (1024,),
                 'roi_heads.box_predictor.cls_score.weight': (k, 1024),
                 'roi_heads.box_predictor.cls_score.bias': (k,),
                 'roi_heads.box_predictor.bbox_pred.weight': (4 * k, 1024),
                 'roi_heads.box_predictor.bbox_pred.bias': (4 * k,)})
  if arch.startswith('mask'):
    for i in range(4):
      shapes.update({f'roi_heads.mask_head.{i}.0.weight': (256, 256, 3, 3),
                     f'roi_heads.mask_head.{i}.0.bias': (256,)})
    shapes.update({'roi_heads.mask_predictor.conv5_mask.weight': (256, 256, 2, 2),
                   'roi_heads.mask_predictor.conv5_mask.bias': (256,),
                   'roi_heads.mask_predictor.mask_fcn_logits.weight': (91, 256, 1, 1),
                   'roi_heads.mask_predictor.mask_fcn_logits.bias': (91,)})
  if arch.startswith('keypoint'):
    for i in range(8):
      shapes.update({f'roi_heads.keypoint_head.{2 * i}.weight': (512, 256 if i == 0 else 512, 3, 3),
                     f'roi_heads.keypoint_head.{2 * i}.bias': (512,)})
    shapes.update({'roi_heads.keypoint_predictor.kps_score_lowres.weight': (512, 17, 4, 4),
                   'roi_heads.keypoint_predictor.kps_score_lowres.bias': (17,)})
  return shapes


# Output layers whose scale sets how spread the scores are (std of the weights).
_OUTPUT_STD = {'rpn.head.cls_logits.weight': 0.15, 'rpn.head.bbox_pred.weight': 0.01,
               'roi_heads.box_predictor.cls_score.weight': 0.1,
               'roi_heads.box_predictor.bbox_pred.weight': 0.003}


def seeded_state_dict(arch: str, seed: int = 0) -> dict:
  """Every tensor of torchvision's `arch` state dict drawn from a numpy seed (float32).

  Convolutions and FC layers: He-normal (std sqrt(2 / fan_in)); the last batch norm of each
  residual block scales by ~0.2 so 16 blocks keep their activations in range; running statistics
  near (0, 1); biases small. The output layers in _OUTPUT_STD are scaled for spread-out scores.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in state_dict_shapes(arch).items():
    leaf = key.rpartition('.')[2]
    if key in _OUTPUT_STD:
      value = rng.normal(0, _OUTPUT_STD[key], shape)
      # Zero-mean rows: ReLU features share a large positive mean, which would otherwise pick
      # the same class (or anchor) everywhere.
      value -= value.reshape(shape[0], -1).mean(1).reshape(-1, *[1] * (len(shape) - 1))
    elif leaf == 'weight' and len(shape) > 1:
      fan_in = int(np.prod(shape[1:])) if 'conv5_mask' not in key and 'kps_score' not in key \
          else shape[0] * int(np.prod(shape[2:]))
      value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
    else:
      value = batch_norm_or_bias(rng, key, shape)
    out[key] = value.astype(np.float32)
  return out


# ---------------------------------------------------------------------------------------------
# The torchvision half (run under --torch-python).


def _torch_model(arch: str, state_dict: dict, run: Settings):
  import torch
  from torchvision.models import resnet50
  from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
  from torchvision.models.detection._utils import overwrite_eps
  from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
  from torchvision.ops.misc import FrozenBatchNorm2d

  # As torchvision's *_resnet50_fpn builders with pretrained weights: frozen batch norm (eps 0,
  # as overwrite_eps sets for the COCO weights) and 3 trainable layers.
  backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
  cls = {'fasterrcnn_resnet50_fpn': FasterRCNN, 'maskrcnn_resnet50_fpn': MaskRCNN,
         'keypointrcnn_resnet50_fpn': KeypointRCNN}[arch]
  kwargs = dict(num_classes=2, num_keypoints=17) if cls is KeypointRCNN else dict(num_classes=91)
  model = cls(backbone, min_size=run.min_size, max_size=run.max_size,
              rpn_pre_nms_top_n_test=run.proposals, rpn_post_nms_top_n_test=run.proposals,
              box_detections_per_img=run.detections, **kwargs)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
  overwrite_eps(model, 0.0)
  return model.eval()


def torch_half(arch: str, run: Settings, out: str):
  """Runs torchvision on each of make_images(run.seed) alone, as its COCO evaluation does (a
  batch of one, padded to the image's own multiple of 32); writes its stages to `out` (npz)."""
  import torch
  import torch.nn.functional as F

  model = _torch_model(arch, seeded_state_dict(arch, run.seed), run)
  images = [torch.from_numpy(i.astype(np.float32) / 255.0).permute(2, 0, 1)
            for i in make_images(run.seed)]
  size = lambda image: resized_size(image.shape[1:], run.min_size, run.max_size)
  stages = {}
  model.backbone.register_forward_hook(lambda m, i, o: stages.update(fpn=o))
  model.rpn.register_forward_hook(lambda m, i, o: stages.update(proposals=o[0]))
  # Copies: the transform's postprocess rewrites these dicts in place (to the original frame).
  model.roi_heads.register_forward_hook(
      lambda m, i, o: stages.update(heads=[dict(d) for d in o[0]]))
  result = {'image_hw': np.asarray([size(i) for i in images], np.int32)}
  for n, image in enumerate(images):
    with torch.no_grad():
      final = model([image])[0]
      # torch's own resize (the transform's), to compare with ours.
      resized = F.interpolate(image[None], size=size(image), mode='bilinear',
                              align_corners=False)[0]
    result[f'torch_resized_{n}'] = resized.permute(1, 2, 0).numpy()
    for level, fmap in stages['fpn'].items():
      result[f'fpn_{level}_{n}'] = fmap[0].permute(1, 2, 0).numpy()
    result[f'proposals_{n}'] = stages['proposals'][0].numpy()
    for key, value in stages['heads'][0].items():
      result[f'heads_{key}_{n}'] = value.numpy()
    for key, value in final.items():
      result[f'final_{key}_{n}'] = value.numpy()
  np.savez(out, **result)


# ---------------------------------------------------------------------------------------------
# Our half.


def xyxy_to_yxyx(boxes):
  return np.asarray(boxes)[..., [1, 0, 3, 2]]


def our_model(arch: str, run: Settings):
  """Our model of torchvision's `arch` with `run`'s top-k and detections: (name, module)."""
  from models import get_model
  from models.torchvision_detection import DETECT, model_kwargs

  name, kwargs = model_kwargs(arch)
  kwargs['rpn'] = {**kwargs['rpn'], 'pre_nms_topk_test': run.proposals,
                   'post_nms_topk_test': run.proposals}
  if name == 'mask_rcnn':
    kwargs.update(max_detections=run.detections, pre_nms_topk=19 * run.proposals)
  return name, get_model(name, **kwargs), dict(DETECT, max_detections=run.detections,
                                              pre_nms_topk=19 * run.proposals)


def run_ours(arch: str, run: Settings, *, stages: bool = False):
  """Our converted model on make_images(run.seed) as one batch in the canvas eval.py would pad
  it to (`data.eval_resize`: the square one for mixed orientations, larger than every image's
  padded size): the detections (resized frame, yxyx) per image, plus the FPN maps and proposals
  when `stages`."""
  import jax
  import jax.numpy as jnp

  from data import eval_resize
  from models.torchvision_detection import convert
  from ops.masks import paste_masks_torchvision

  name, model, detect = our_model(arch, run)
  variables = convert(seeded_state_dict(arch, run.seed))
  originals = make_images(run.seed)
  resized = [resize(i, run.min_size, run.max_size) for i in originals]
  image_hw = np.asarray([r.shape[:2] for r in resized], np.int32)
  canvas = eval_resize.canvas_for(image_hw, eval_resize.canvases(run.min_size, run.max_size, 32))
  batch = np.zeros((len(resized), *canvas, 3), np.float32)
  for n, r in enumerate(resized):
    batch[n, :r.shape[0], :r.shape[1]] = r

  def forward(v, x, hw):
    out, state = model.apply(v, x, train=False, image_hw=hw, capture_intermediates=(
        lambda mdl, method: stages and mdl.name == 'fpn' and method == '__call__'))
    if name == 'faster_rcnn':
      from models.roi_heads import decode
      from ops.nms import select_batch_detections
      kw = dict(detect)
      kw['iou_threshold'] = kw.pop('nms_iou_threshold')
      out['detections'] = select_batch_detections(*decode(out, hw), hw, **kw)
    fpn = state['intermediates']['fpn']['__call__'][0] if stages else {}
    return out, fpn

  out, fpn = jax.jit(forward)(variables, jnp.asarray(batch), jnp.asarray(image_hw))
  results = []
  for n in range(len(resized)):
    det = {k: np.asarray(v[n]) for k, v in out['detections'].items()}
    keep = det.pop('valid')
    det = {k: v[keep] for k, v in det.items()}
    if 'masks' in det:  # Pasted in the original frame, as torchvision's transform does.
      ratio = np.asarray(originals[n].shape[:2], np.float32) / image_hw[n].astype(np.float32)
      boxes = det['boxes'] * np.tile(ratio, 2)
      det['pasted'] = np.asarray(paste_masks_torchvision(
          jnp.asarray(det['masks']), jnp.asarray(boxes), originals[n].shape[:2])) > 0.5
    if stages:
      det['proposals'] = np.asarray(out['proposals'][n])[np.asarray(out['proposal_valid'][n])]
      det['fpn'] = {s: np.asarray(f[n]) for s, f in fpn.items()}
    results.append(det)
  return results, resized


def mask_iou(a, b):
  inter = np.logical_and(a, b).sum((-1, -2))
  union = np.logical_or(a, b).sum((-1, -2))
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def compare(theirs: dict, ours: list[dict], resized: list[np.ndarray]) -> list[dict]:
  """Largest differences per image and stage (theirs: torch_half's npz arrays)."""
  rows = []
  for n, det in enumerate(ours):
    row = {'image': n, 'resized_hw': tuple(resized[n].shape[:2])}
    if f'torch_resized_{n}' in theirs:
      row['resize ours-torch'] = float(np.abs(theirs[f'torch_resized_{n}'] - resized[n]).max())
    if 'fpn' in det:
      for level, (stride, ours_map) in zip(('0', '1', '2', '3', 'pool'),
                                           sorted(det['fpn'].items()), strict=True):
        ref = theirs[f'fpn_{level}_{n}']  # The image alone: its padded size.
        within = ours_map[:ref.shape[0], :ref.shape[1]]
        row[f'P{int(np.log2(stride))} rel'] = float(np.abs(ref - within).max() / np.abs(ref).max())
      props = xyxy_to_yxyx(theirs[f'proposals_{n}'])
      row['proposals'] = f'{len(det["proposals"])} vs {len(props)}'
      # As sets, each of ours against its nearest.
      nearest = np.abs(props[None] - det['proposals'][:, None]).max(-1).min(1, initial=np.inf)
      row['proposals unmatched'] = int(np.sum(nearest > 1e-2))
      row['proposals max px'] = float(nearest[nearest <= 1e-2].max(initial=0))
    heads = {k[len('heads_'):-len(f'_{n}')]: theirs[k] for k in theirs
             if k.startswith('heads_') and k.endswith(f'_{n}')}
    row['detections'] = f'{len(det["boxes"])} vs {len(heads["boxes"])}'
    if len(det['boxes']) == len(heads['boxes']):
      row['boxes max px'] = float(np.abs(xyxy_to_yxyx(heads['boxes']) - det['boxes']).max(
          initial=0))
      row['scores max'] = float(np.abs(heads['scores'] - det['scores']).max(initial=0))
      row['labels equal'] = bool(np.array_equal(heads['labels'], det['labels']))
      if 'pasted' in det:
        row['mask IoU min'] = float(mask_iou(theirs[f'final_masks_{n}'][:, 0] > 0.5,
                                             det['pasted']).min(initial=1))
      if 'keypoints' in det:
        kp = heads['keypoints'][..., [1, 0]]
        row['keypoints max px'] = float(np.abs(kp - det['keypoints'][..., :2]).max(initial=0))
        row['keypoint scores max'] = float(np.abs(heads['keypoints_scores']
                                                  - det['keypoints'][..., 2]).max(initial=0))
    rows.append(row)
  return rows


# ---------------------------------------------------------------------------------------------
# Fixtures and the command line.

FIXTURE_MASKS = 20  # Pasted masks kept per image (the best detections), to keep the file small.


def fixture_arrays(theirs: dict, run: Settings) -> dict:
  """torchvision's final outputs in the small form tests/test_parity_torchvision.py reads."""
  out = {**run._asdict(), 'digests': np.asarray([image_digest(i) for i in make_images(run.seed)])}
  for n in range(len(IMAGE_SIZES)):
    out[f'boxes_{n}'] = xyxy_to_yxyx(theirs[f'heads_boxes_{n}']).astype(np.float32)
    out[f'scores_{n}'] = theirs[f'heads_scores_{n}'].astype(np.float32)
    out[f'labels_{n}'] = theirs[f'heads_labels_{n}'].astype(np.int16)
    if f'final_masks_{n}' in theirs:
      out[f'masks_{n}'] = np.packbits(theirs[f'final_masks_{n}'][:FIXTURE_MASKS, 0] > 0.5, axis=-1)
    if f'heads_keypoints_{n}' in theirs:
      out[f'keypoints_{n}'] = np.concatenate(
          [theirs[f'heads_keypoints_{n}'][..., [1, 0]],
           theirs[f'heads_keypoints_scores_{n}'][..., None]], axis=-1).astype(np.float32)
  return out


def main():
  if sys.argv[1:2] == ['torch']:  # The torchvision half, in the torch interpreter.
    arch, *values, out = sys.argv[2:]
    torch_half(arch, Settings(*map(int, values)), out)
    return
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--arch', choices=ARCHS, action='append',
                      help='default: all three')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--min-size', type=int, default=800)
  parser.add_argument('--max-size', type=int, default=1333)
  parser.add_argument('--proposals', type=int, default=1000,
                      help='RPN top-k at test time (pre-NMS per level and post-NMS)')
  parser.add_argument('--detections', type=int, default=100, help='per image')
  parser.add_argument('--fixture', help='write torchvision\'s outputs here (one --arch)')
  parser.add_argument('--torch-python', default=torch_side.default_python(),
                      help='a Python with torch and torchvision')
  args = parser.parse_args()
  archs = args.arch or list(ARCHS)
  if args.fixture and len(archs) != 1:
    parser.error('--fixture writes one model\'s outputs: give one --arch')
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  run = Settings(args.seed, args.min_size, args.max_size, args.proposals, args.detections)
  for arch in archs:
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, 'torch.npz')
      subprocess.run([args.torch_python, '-m', 'tools.parity', 'torch', arch,
                      *map(str, run), path], check=True, cwd=repo)
      theirs = dict(np.load(path))
    ours, resized = run_ours(arch, run, stages=True)
    print(f'{arch}, {run}:')
    for row in compare(theirs, ours, resized):
      print('  ' + ', '.join(f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}'
                             for k, v in row.items()))
    if args.fixture:
      np.savez_compressed(args.fixture, **fixture_arrays(theirs, run))
      print(f'wrote {args.fixture} ({os.path.getsize(args.fixture) // 1024} KB)')


if __name__ == '__main__':
  main()
