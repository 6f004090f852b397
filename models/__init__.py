"""Model names -> flax modules (a plain dict, as scenic's model_lib) and their lookup.

Dense models: `model.apply(variables, images, train=...)` -> logits float32 [B, H, W, num_classes]
(the patch classifier's train mode returns sampled pixels instead; see its docstring). Every
model takes dtype and bn_axis_name; FCNs and DeconvNet take backbone; FCNs upsample. Detectors:
`yolo`, `ssd`, `sliding_window`, `rcnn`, `spp_net`, `fast_rcnn`, `faster_rcnn`, `rfcn`
(tasks/detection.py), `mask_rcnn` (tasks/instance.py) and `densecap` (tasks/densecap.py); the
task finds a detector's loss, batch inputs and decoder on its class (`model_class(name)`).
Regression models: `localizer` (images -> class logits + one box) and `deeppose` (images, person
boxes -> joints); see their modules.
Captioning: `image_captioner` (images, caption tokens -> word logits; decodes when not training).
"""
import functools
from collections.abc import Callable

from flax import linen as nn

from models.backbones import BACKBONES, get_backbone, lookup
from models.captioner import ImageCaptioner
from models.deconvnet import DeconvNet
from models.deeppose import DeepPose
from models.densecap import DenseCap
from models.faster_rcnn import FasterRCNN
from models.fcn import FCN
from models.fcn_resnet import FCNResNet
from models.localizer import Localizer
from models.mask_rcnn import MaskRCNN
from models.patch_classifier import PatchClassifier
from models.rcnn import RCNN, FastRCNN, SlidingWindow, SPPNet
from models.rfcn import RFCN
from models.ssd import SSD
from models.ssd_vgg16 import SSDVGG16Detector
from models.yolo import YOLOv1

MODELS: dict[str, Callable[..., nn.Module]] = {
    'fcn32s': functools.partial(FCN, finest_stride=32),
    'fcn16s': functools.partial(FCN, finest_stride=16),
    'fcn8s': functools.partial(FCN, finest_stride=8),
    'fcn_resnet': FCNResNet,  # torchvision's fcn_resnet50/101.
    'deconvnet': DeconvNet,
    'patch_classifier': PatchClassifier,
    'yolo': YOLOv1,
    'ssd': SSD,
    'ssd_vgg16': SSDVGG16Detector,  # torchvision's ssd300_vgg16.
    'sliding_window': SlidingWindow,
    'rcnn': RCNN,
    'spp_net': SPPNet,
    'fast_rcnn': FastRCNN,
    'faster_rcnn': FasterRCNN,
    'rfcn': RFCN,
    'mask_rcnn': MaskRCNN,
    'densecap': DenseCap,
    'localizer': Localizer,
    'deeppose': DeepPose,
    'image_captioner': ImageCaptioner,
}


# Compute dtypes a config may name (`config.model.dtype`); parameters stay float32.
DTYPES = ('float32', 'bfloat16', 'float16')


def get_model(name: str, /, **kwargs) -> nn.Module:
  """Builds model `name` with kwargs; ValueError listing the valid names (of the model or of its
  compute dtype) if one is unknown."""
  dtype = kwargs.get('dtype')
  if isinstance(dtype, str) and dtype not in DTYPES:
    raise ValueError(f'unknown model.dtype {dtype!r}; valid: {", ".join(DTYPES)}')
  return lookup(MODELS, name, 'model')(**kwargs)


def model_class(name: str) -> type[nn.Module]:
  """The module class registered as `name` (through a functools.partial, e.g. fcn8s).

  Detectors carry what their task needs as class attributes (`loss_family`, `batch_inputs`,
  `decode_outputs`; see `models.roi_heads.RoIDetector`).
  """
  built = lookup(MODELS, name, 'model')
  return built.func if isinstance(built, functools.partial) else built


__all__ = ['BACKBONES', 'DTYPES', 'MODELS', 'get_backbone', 'get_model', 'model_class']
