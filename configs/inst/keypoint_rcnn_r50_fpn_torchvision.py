r"""torchvision's Keypoint R-CNN ResNet-50 FPN on COCO 2017 person keypoints, published weights.

torchvision's model card (KeypointRCNN_ResNet50_FPN_Weights.COCO_V1): 54.6 box AP and 65.0
keypoint AP on COCO val2017. The box part is configs/det/faster_rcnn_r50_fpn_torchvision.py with
two classes (background, person); the keypoint head is torchvision's (14x14 RoIAlign, eight
512-wide 3x3 convs, a 4x4 stride-2 transpose conv and 2x bilinear upsampling to 17 56x56
heatmaps) and keypoints are decoded as torchvision does (`model.keypoint.decode`: each heatmap
resized bicubically to its box, the argmax pixel and its value).

  python -c "import torchvision, safetensors.torch as st; st.save_file(torchvision.models.\
detection.keypointrcnn_resnet50_fpn(weights='COCO_V1').state_dict(), 'kprcnn.safetensors')"
  python -m tools.import_weights --arch keypointrcnn_resnet50_fpn kprcnn.safetensors \
      --out runs/tv_kprcnn
  python eval.py --config configs/inst/keypoint_rcnn_r50_fpn_torchvision.py \
      --checkpoint runs/tv_kprcnn

Arguments: `runlocal` (a tiny model, for tests).
"""
from configs import common
from configs.det import faster_rcnn_r50_fpn_torchvision
from configs.inst import defaults


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  c = defaults.mask_rcnn(faster_rcnn_r50_fpn_torchvision.get_config(arg), masks=False,
                         num_keypoints=17, head_convs=1 if args.runlocal else 8,
                         head_width=8 if args.runlocal else 512)
  with c.ignore_type():
    c.model.head_classes = ()  # The dataset's own two classes.
  c.model.head_size = 0
  c.data.variant = 'person_keypoints'
  c.model.keypoint.decode = 'torchvision'
  return c
