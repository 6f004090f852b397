r"""FCN-ResNet101 as torchvision's `fcn_resnet101` on COCO's VOC-category subset.

torchvision's published weights (FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1): 63.7 mean IoU,
91.9 pixel accuracy on COCO val2017's VOC-category subset. Everything else, the recipe and where
ours differs, is configs/seg/fcn_resnet50_torchvision.py's.

  python -m tools.import_weights fcn_resnet101.safetensors --arch fcn_resnet101 \
      --out runs/fcn101_tv
  python eval.py --config configs/seg/fcn_resnet101_torchvision.py --checkpoint runs/fcn101_tv

Arguments: `shapes`, `runlocal`, `backbone=NAME` (as the ResNet-50 config's).
"""
from configs.seg.fcn_resnet50_torchvision import torchvision_fcn_config


def get_config(arg=None):
  return torchvision_fcn_config(arg, 'resnet101')
