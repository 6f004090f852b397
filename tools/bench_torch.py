"""PyTorch twins of our models, for `tools/bench.py --compare-torch` (bench-only: needs
`requirements-bench.txt`; nothing in training or the tests imports this module).

Each twin has the same layers, the same parameter count (asserted by the caller), the same batch,
dtype (float32) and optimizer as our config, in PyTorch's default NCHW layout. Losses are the
same kind where that is cheap to write (pixel / class cross-entropy, L2 / smooth-L1 boxes); the
detectors' target assignment (SSD matching and hard negatives, Faster R-CNN's anchor labels,
proposals, NMS and RoI sampling) exists only on our side, so their ratios are lower bounds.
"""
import json
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tools import bench_torchvision


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
  return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True))


class VGG(nn.Module):
  """models/vgg.py: stages of (conv 3x3 + BN + ReLU) x n then 2x2 max pool; maps per stride."""

  def __init__(self, widths=(16, 32, 64, 128, 128), convs_per_stage=2):
    super().__init__()
    stages, cin = [], 3
    for width in widths:
      layers = []
      for _ in range(convs_per_stage):
        layers.append(conv_bn_relu(cin, width))
        cin = width
      stages.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
    self.stages = nn.ModuleList(stages)

  def forward(self, x):
    features = {}
    for i, stage in enumerate(self.stages, start=1):
      x = stage(x)
      features[2**i] = x
    return features


class FCN8s(nn.Module):
  """models/fcn.py with backbone vgg_small and upsample='transpose_conv'."""

  def __init__(self, num_classes: int, width: int = 256, dropout: float = 0.1):
    super().__init__()
    c = num_classes
    self.backbone = VGG()
    self.head = nn.Sequential(nn.Conv2d(128, width, 3, padding=1), nn.ReLU(), nn.Dropout(dropout),
                              nn.Conv2d(width, width, 1), nn.ReLU(), nn.Dropout(dropout),
                              nn.Conv2d(width, c, 1))
    self.up32 = nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False)
    self.score_pool4 = nn.Conv2d(128, c, 1)
    self.up16 = nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False)
    self.score_pool3 = nn.Conv2d(64, c, 1)
    self.up8 = nn.ConvTranspose2d(c, c, 16, 8, 4, bias=False)

  def forward(self, x):
    f = self.backbone(x)
    score = self.up32(self.head(f[32])) + self.score_pool4(f[16])
    score = self.up16(score) + self.score_pool3(f[8])
    return self.up8(score)


class BasicBlock(nn.Module):
  def __init__(self, cin: int, width: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = (nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False),
                                     nn.BatchNorm2d(width))
                       if stride != 1 or cin != width else nn.Identity())

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.downsample(x) + self.bn2(self.conv2(y)))


class ResNet18(nn.Module):
  """torchvision's resnet18 trunk (models/resnet.py RESNET18): maps at strides 16 and 32."""

  def __init__(self):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                              nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    layers, cin = [], 64
    for stage in range(4):
      width = 64 * 2**stage
      layers.append(nn.Sequential(BasicBlock(cin, width, 1 if stage == 0 else 2),
                                  BasicBlock(width, width, 1)))
      cin = width
    self.layers = nn.ModuleList(layers)

  def forward(self, x):
    x = self.stem(x)
    features = {}
    for stage, layer in enumerate(self.layers):
      x = layer(x)
      features[4 * 2**stage] = x
    return features


class Localizer(nn.Module):
  """models/localizer.py with backbone resnet18: pooled class head + flattened box MLP."""

  def __init__(self, num_classes: int, box_in: int, feature_stride: int, hidden: int = 256):
    super().__init__()
    self.backbone = ResNet18()
    self.feature_stride = feature_stride
    self.class_head = nn.Linear(512, num_classes)
    self.box_head = nn.Sequential(nn.Flatten(), nn.Linear(box_in, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 4))

  def forward(self, x):
    f = self.backbone(x)
    return self.class_head(f[32].mean((2, 3))), self.box_head(f[self.feature_stride])


class SSD(nn.Module):
  """models/ssd.py with backbone vgg_small, levels at strides 8, 16, 32 and one extra level."""

  def __init__(self, num_classes: int, boxes_per_cell=(4, 6, 6, 4), extra_width: int = 128):
    super().__init__()
    self.num_classes = num_classes
    self.backbone = VGG()
    self.extra = nn.Sequential(conv_bn_relu(128, extra_width // 2, 1),
                               conv_bn_relu(extra_width // 2, extra_width, 3, 2))
    widths = (64, 128, 128, extra_width)
    self.cls = nn.ModuleList(nn.Conv2d(w, a * num_classes, 3, padding=1)
                             for w, a in zip(widths, boxes_per_cell, strict=True))
    self.box = nn.ModuleList(nn.Conv2d(w, a * 4, 3, padding=1)
                             for w, a in zip(widths, boxes_per_cell, strict=True))

  def forward(self, x):
    f = self.backbone(x)
    maps = [f[8], f[16], f[32]]
    maps.append(self.extra(maps[-1]))
    n = len(x)
    logits = torch.cat([c(m).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
                        for c, m in zip(self.cls, maps, strict=True)], 1)
    deltas = torch.cat([b(m).permute(0, 2, 3, 1).reshape(n, -1, 4)
                        for b, m in zip(self.box, maps, strict=True)], 1)
    return logits, deltas


def roi_align(features, rois, size: int, stride: int, sampling: int = 2):
  """features [B, C, H, W], rois [B, R, 4] (y1, x1, y2, x2) pixels -> [B, R, C, size, size].

  Plain-torch RoIAlign (torchvision's aligned=False, fixed sampling ratio): bilinear samples
  on a (size * sampling)^2 grid per RoI by `grid_sample`, averaged per bin.
  """
  b, r, _ = rois.shape
  _, c, h, w = features.shape
  n = size * sampling
  frac = (torch.arange(n, dtype=features.dtype) + 0.5) / n
  y1, x1, y2, x2 = (rois / stride).unbind(-1)
  ys = y1[..., None] + frac * (y2 - y1)[..., None]  # [B, R, n] pixel coordinates.
  xs = x1[..., None] + frac * (x2 - x1)[..., None]
  # grid_sample's align_corners=False maps -1..1 to the pixel edges: pixel centre i at i + 0.5.
  gy = (2 * ys + 1) / h - 1
  gx = (2 * xs + 1) / w - 1
  grid = torch.stack(torch.broadcast_tensors(gx[..., None, :], gy[..., :, None]), -1)
  samples = F.grid_sample(features, grid.reshape(b, r * n, n, 2), align_corners=False)
  samples = samples.reshape(b, c, r, size, sampling, size, sampling).mean((4, 6))
  return samples.permute(0, 2, 1, 3, 4)


class FasterRCNN(nn.Module):
  """models/faster_rcnn.py (vgg_small, one level): RPN head + Fast R-CNN box head on given RoIs."""

  def __init__(self, num_classes: int, anchors_per_cell: int = 9, rpn_width: int = 128,
               stride: int = 8, roi_size: int = 7, hidden: int = 256):
    super().__init__()
    self.stride, self.roi_size = stride, roi_size
    self.backbone = VGG()
    cin = 64  # vgg_small's stride-8 width.
    self.rpn_conv = nn.Conv2d(cin, rpn_width, 3, padding=1)
    self.objectness = nn.Conv2d(rpn_width, anchors_per_cell, 1)
    self.rpn_deltas = nn.Conv2d(rpn_width, anchors_per_cell * 4, 1)
    self.head = nn.Sequential(nn.Flatten(2), nn.Linear(cin * roi_size**2, hidden), nn.ReLU(),
                              nn.Linear(hidden, hidden), nn.ReLU())
    self.class_logits = nn.Linear(hidden, num_classes)
    self.box_deltas = nn.Linear(hidden, (num_classes - 1) * 4)

  def forward(self, x, rois):
    fmap = self.backbone(x)[self.stride]
    y = F.relu(self.rpn_conv(fmap))
    hidden = self.head(roi_align(fmap, rois, self.roi_size, self.stride))
    return (self.objectness(y), self.rpn_deltas(y), self.class_logits(hidden),
            self.box_deltas(hidden))


def twin(name: str, params: dict, batch: dict, config):
  """-> (module, inputs tuple, loss(outputs) -> scalar) for our model `name` built as `params`."""
  images = bench_torchvision.nchw(batch['image'])
  n = len(images)
  gen = torch.Generator().manual_seed(0)
  if name == 'fcn8s':
    classes = params['score_fr']['kernel'].shape[-1]
    mask = torch.from_numpy(batch['mask'].astype(np.int64))
    return (FCN8s(classes, params['fc6']['kernel'].shape[-1], config.model.dropout_rate),
            (images,), lambda out: F.cross_entropy(out, mask, ignore_index=255))
  if name == 'localizer':
    classes = params['class_head']['kernel'].shape[-1]
    box_in = params['box_head']['hidden']['kernel'].shape[0]
    labels = torch.randint(0, classes, (n,), generator=gen)
    box = torch.rand(n, 4, generator=gen)
    weight = config.loss.box_weight
    return (Localizer(classes, box_in, config.model.feature_stride, config.model.hidden),
            (images,), lambda out: F.cross_entropy(out[0], labels) + weight * F.mse_loss(
                out[1], box))
  if name == 'ssd':
    per_cell = tuple(params[f'box_head{k}']['kernel'].shape[-1] // 4 for k in range(4))
    classes = params['class_head0']['kernel'].shape[-1] // per_cell[0]
    model = SSD(classes, per_cell, config.model.extra_widths[0]).eval()
    with torch.no_grad():
      logits, _ = model(images[:1])
    anchors = logits.shape[1]
    labels = torch.randint(0, classes, (n, anchors), generator=gen)
    targets = torch.randn(n, anchors, 4, generator=gen)
    return model, (images,), lambda out: (F.cross_entropy(out[0].flatten(0, 1), labels.flatten())
                                          + F.smooth_l1_loss(out[1], targets))
  if name == 'faster_rcnn':
    classes = params['box_head']['class_logits']['kernel'].shape[-1]
    per_cell = params['rpn']['objectness']['kernel'].shape[-1]
    model = FasterRCNN(classes, per_cell, config.model.rpn.width, config.model.feature_stride,
                       config.model.roi.size, config.model.roi.head_hidden).eval()
    r = config.model.roi.batch_size
    size = images.shape[-1]
    yx = torch.rand(n, r, 2, generator=gen) * size * 0.7
    rois = torch.cat([yx, yx + torch.rand(n, r, 2, generator=gen) * size * 0.3 + 2], -1)
    labels = torch.randint(0, classes, (n * r,), generator=gen)
    with torch.no_grad():
      anchor_logits = model(images[:1], rois[:1])[0]
    obj = (torch.rand(anchor_logits.shape[1:], generator=gen) > 0.5).float().expand(n, -1, -1, -1)
    box_targets = torch.randn(n, r, (classes - 1) * 4, generator=gen)

    def loss(out):
      return (F.binary_cross_entropy_with_logits(out[0], obj)
              + F.smooth_l1_loss(out[1], torch.zeros_like(out[1]))
              + F.cross_entropy(out[2].flatten(0, 1), labels)
              + F.smooth_l1_loss(out[3], box_targets))

    return model, (images, rois), loss
  raise ValueError(f'no PyTorch twin of {name!r}; have fcn8s, localizer, ssd, faster_rcnn, '
                   'fcn_resnet, ssd_vgg16')


def num_params(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def make_optimizer(module: nn.Module, config) -> torch.optim.Optimizer:
  """The config's optimizer at its peak learning rate (the schedule costs nothing per step)."""
  opt = config.optimizer
  if opt.name == 'adamw':
    return torch.optim.AdamW(module.parameters(), opt.learning_rate, betas=(opt.b1, opt.b2),
                             weight_decay=opt.weight_decay)
  return torch.optim.SGD(module.parameters(), opt.learning_rate, momentum=opt.momentum,
                         nesterov=opt.nesterov, weight_decay=opt.weight_decay)


def _median_seconds(fn, steps: int, warmup: int = 1) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def bench(module: nn.Module, inputs: tuple, loss_fn, config, steps: int) -> dict:
  """Median train step (forward, backward, optimizer) and inference forward, in seconds."""
  optimizer = make_optimizer(module, config)

  def train_step():
    optimizer.zero_grad(set_to_none=True)
    loss_fn(module(*inputs)).backward()
    optimizer.step()

  module.train()
  train_s = _median_seconds(train_step, steps)
  module.eval()
  detections = []  # torchvision's detectors in eval mode return a list of per-image dicts.

  def infer():
    out = module(*inputs)
    if isinstance(out, list):
      detections[:] = [len(image['boxes']) for image in out]

  with torch.inference_mode():
    infer_s = _median_seconds(infer, steps)
  result = {'train_s': train_s, 'infer_s': infer_s}
  if detections:
    result['detections_per_image'] = float(np.mean(detections))
  return result


class _Config(dict):
  """Our config from its JSON (`config.to_dict()`): attribute access like ml_collections'."""
  __getattr__ = dict.__getitem__


def main(workdir: str):
  """The PyTorch side of `tools/bench.py --compare-torch`, in its own process: reads our side's
  batch.npz and spec.json from `workdir`, prints one JSON line (seconds per step, peak RSS)."""
  with open(f'{workdir}/spec.json') as f:
    spec = json.load(f, object_hook=_Config)
  torch.set_num_threads(spec.threads)
  torch.manual_seed(0)
  batch = dict(np.load(f'{workdir}/batch.npz'))
  config = spec.config
  # Shape-only stand-ins for our parameters: the twins read their sizes from them.
  params = _shapes(spec.param_shapes)
  if spec.torchvision:
    module, inputs, loss_fn = bench_torchvision.twin(spec.torchvision, params, batch, config)
  else:
    module, inputs, loss_fn = twin(config.model.name, params, batch, config)
  result = bench(module, inputs, loss_fn, config, spec.steps)
  print(json.dumps({**result, 'model': spec.torchvision or f'twin ({config.model.name})',
                    'params': num_params(module),
                    'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


def _shapes(tree):
  if isinstance(tree, dict):
    return {k: _shapes(v) for k, v in tree.items()}
  return np.broadcast_to(np.float32(0), tree)


if __name__ == '__main__':
  main(sys.argv[1])
