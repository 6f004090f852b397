"""Seeded weights in torchvision's state-dict layout of fcn_resnet50/101 and ssd300_vgg16 (numpy).

`state_dict_shapes(arch, num_classes)` lists torchvision's keys and shapes (torch's strict
`load_state_dict` in tools/parity_fcn_ssd.py checks them); `seeded_state_dict` fills them from a
numpy seed, so tests regenerate the weights instead of committing them.
"""
import numpy as np

RESNET_STAGES = {'fcn_resnet50': (3, 4, 6, 3), 'fcn_resnet101': (3, 4, 23, 3)}
# torchvision's vgg16 `features` indices of the convolutions SSD keeps in `backbone.features`.
SSD_FEATURES = {0: 64, 2: 64, 5: 128, 7: 128, 10: 256, 12: 256, 14: 256, 17: 512, 19: 512,
                21: 512}
SSD_CHANNELS = (512, 1024, 512, 256, 256, 256)  # The six maps the heads read.
SSD_BOXES_PER_CELL = (4, 6, 6, 6, 4, 4)


def _bn(shapes: dict, prefix: str, c: int):
  shapes.update({f'{prefix}.{k}': (c,) for k in ('weight', 'bias', 'running_mean', 'running_var')})
  shapes[f'{prefix}.num_batches_tracked'] = ()


def resnet_shapes(prefix: str, stages, *, tracked: bool = True) -> dict:
  """torchvision's bottleneck-ResNet state-dict keys and shapes (stem and layer1-4, `stages`
  blocks each) under `prefix`, in its order; `tracked`: batch norms with num_batches_tracked
  (FrozenBatchNorm2d has none)."""
  shapes = {f'{prefix}conv1.weight': (64, 3, 7, 7)}

  def bn(name, c):
    shapes.update({f'{prefix}{name}.{k}': (c,) for k in
                   ('weight', 'bias', 'running_mean', 'running_var')})
    if tracked:
      shapes[f'{prefix}{name}.num_batches_tracked'] = ()

  bn('bn1', 64)
  cin = 64
  for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), stages, strict=True),
                                          start=1):
    for b in range(blocks):
      p = f'layer{stage}.{b}'
      shapes[f'{prefix}{p}.conv1.weight'] = (width, cin if b == 0 else width * 4, 1, 1)
      shapes[f'{prefix}{p}.conv2.weight'] = (width, width, 3, 3)
      shapes[f'{prefix}{p}.conv3.weight'] = (width * 4, width, 1, 1)
      for i in (1, 2, 3):
        bn(f'{p}.bn{i}', width * (4 if i == 3 else 1))
      if b == 0:
        shapes[f'{prefix}{p}.downsample.0.weight'] = (width * 4, cin, 1, 1)
        bn(f'{p}.downsample.1', width * 4)
    cin = width * 4
  return shapes


def _fcn_shapes(arch: str, num_classes: int) -> dict:
  shapes = resnet_shapes('backbone.', RESNET_STAGES[arch])
  for head, channels in (('classifier', 2048), ('aux_classifier', 1024)):
    shapes[f'{head}.0.weight'] = (channels // 4, channels, 3, 3)
    _bn(shapes, f'{head}.1', channels // 4)
    shapes[f'{head}.4.weight'] = (num_classes, channels // 4, 1, 1)
    shapes[f'{head}.4.bias'] = (num_classes,)
  return shapes


def _ssd_shapes(num_classes: int) -> dict:
  shapes = {'backbone.scale_weight': (512,)}
  conv = lambda name, o, i, k: shapes.update({f'{name}.weight': (o, i, k, k), f'{name}.bias': (o,)})
  cin = 3
  for index, width in SSD_FEATURES.items():
    conv(f'backbone.features.{index}', width, cin, 3)
    cin = width
  for index in (1, 3, 5):  # conv5_1..3 after pool4.
    conv(f'backbone.extra.0.{index}', 512, 512, 3)
  conv('backbone.extra.0.7.1', 1024, 512, 3)  # fc6.
  conv('backbone.extra.0.7.3', 1024, 1024, 1)  # fc7.
  for i, (cin, mid, out) in enumerate(((1024, 256, 512), (512, 128, 256), (256, 128, 256),
                                       (256, 128, 256)), start=1):
    conv(f'backbone.extra.{i}.0', mid, cin, 1)
    conv(f'backbone.extra.{i}.2', out, mid, 3)
  for k, (c, a) in enumerate(zip(SSD_CHANNELS, SSD_BOXES_PER_CELL, strict=True)):
    conv(f'head.classification_head.module_list.{k}', a * num_classes, c, 3)
    conv(f'head.regression_head.module_list.{k}', a * 4, c, 3)
  return shapes


def state_dict_shapes(arch: str, num_classes: int) -> dict:
  """torchvision's state-dict keys and shapes of `arch` with `num_classes` outputs."""
  if arch.startswith('ssd'):
    return _ssd_shapes(num_classes)
  return _fcn_shapes(arch, num_classes)


# Output layers whose weight std sets how spread the scores are.
_OUTPUT_STD = {'classifier.4.weight': 0.05, 'aux_classifier.4.weight': 0.05}
# SSD's input is 0-255 pixels minus the mean (std ~60): its first conv brings that to ~1.
_GAIN = {'backbone.features.0.weight': 1 / 64}


def seeded_state_dict(arch: str, seed: int, num_classes: int) -> dict:
  """Every tensor of torchvision's `arch` state dict drawn from a numpy seed (float32; int64
  `num_batches_tracked`).

  Convolutions: He-normal (std sqrt(2 / fan_in)), so ReLU activations keep their scale through
  VGG's 15 layers without batch norm (SSD's first conv / 64 for its 0-255 input); the last batch
  norm of each residual block scales by ~0.2 so 33 blocks stay in range; running statistics near
  (0, 1); biases small. SSD's class logits then have std ~1.3: scores spread over (0, 0.96), so
  rankings are really compared.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in state_dict_shapes(arch, num_classes).items():
    leaf = key.rpartition('.')[2]
    if leaf == 'num_batches_tracked':
      out[key] = np.zeros(shape, np.int64)
      continue
    if key == 'backbone.scale_weight':
      value = rng.uniform(15, 25, shape)  # torchvision initialises it at 20.
    elif key in _OUTPUT_STD:
      value = rng.normal(0, _OUTPUT_STD[key], shape)
    elif leaf == 'weight' and len(shape) > 1:
      gain = _GAIN.get(key, 1.0)
      value = rng.normal(0, gain * np.sqrt(2.0 / np.prod(shape[1:])), shape)
    else:
      value = batch_norm_or_bias(rng, key, shape)
    out[key] = value.astype(np.float32)
  return out


def batch_norm_or_bias(rng: np.random.Generator, key: str, shape) -> np.ndarray:
  """A batch norm's scale or running statistics, or a bias, as both parity tools draw them: the
  last batch norm of each residual block scales by ~0.2 (so deep stacks stay in range), running
  statistics near (0, 1), biases small. One draw per tensor, so the seeds' fixtures stay valid."""
  leaf = key.rpartition('.')[2]
  if leaf == 'weight':  # Batch norm scale.
    last = key.endswith('bn3.weight') or key.endswith('downsample.1.weight')
    return rng.uniform(0.1, 0.3, shape) if last else rng.uniform(0.8, 1.2, shape)
  if leaf == 'running_mean':
    return rng.normal(0, 0.1, shape)
  if leaf == 'running_var':
    return rng.uniform(0.8, 1.5, shape)
  return rng.normal(0, 0.02, shape)  # Biases.
