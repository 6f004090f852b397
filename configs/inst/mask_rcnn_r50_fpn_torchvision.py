r"""torchvision's Mask R-CNN ResNet-50 FPN on COCO 2017 instances, from its published weights.

torchvision's model card (MaskRCNN_ResNet50_FPN_Weights.COCO_V1): 37.9 box AP and 34.6 mask AP
on COCO val2017. The box part is configs/det/faster_rcnn_r50_fpn_torchvision.py; the mask head is
torchvision's (14x14 RoIAlign, aligned=False, four 256-wide 3x3 convs, a 2x2 transpose conv, one
28x28 mask per COCO id) and masks are pasted as torchvision does (`model.mask.paste`).

  python -c "import torchvision, safetensors.torch as st; st.save_file(torchvision.models.\
detection.maskrcnn_resnet50_fpn(weights='COCO_V1').state_dict(), 'mrcnn.safetensors')"
  python -m tools.import_weights --arch maskrcnn_resnet50_fpn mrcnn.safetensors --out runs/tv_mrcnn
  python eval.py --config configs/inst/mask_rcnn_r50_fpn_torchvision.py --checkpoint runs/tv_mrcnn

Arguments: `runlocal` (a tiny model, for tests).
"""
from configs import common
from configs.det import faster_rcnn_r50_fpn_torchvision
from configs.inst import defaults


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  c = defaults.mask_rcnn(faster_rcnn_r50_fpn_torchvision.get_config(arg), masks=True,
                         head_convs=1 if args.runlocal else 4,
                         head_width=8 if args.runlocal else 256)
  c.model.mask.paste = 'torchvision'
  return c
