r"""Mask R-CNN's keypoint head, ResNet-50 FPN, COCO 2017 person keypoints (He et al., ICCV 2017).

Paper (Table 4, COCO test-dev keypoint AP, ResNet-50-FPN): 62.7 keypoint-only, 63.1 with the mask
head trained as well. Recipe (sec. 5): eight 3x3 512-channel convs on 14x14 RoIAlign features, a
4x4 stride-2 transpose conv and 2x bilinear upsampling to one 56x56 heatmap per joint (17),
softmax cross-entropy over the positions of each visible joint; 90k iterations at learning rate
0.02 (x0.1 at 60k and 80k), batch 16, image scale sampled from [640, 800] px, box NMS at 0.5.
Flips swap left and right joints (`ops.joints.COCO_17`). Keypoint AP uses COCO's OKS sigmas.

  python train.py --config configs/inst/keypoint_rcnn_r50_fpn_coco.py --workdir runs/kprcnn_coco \
      --config.init.checkpoint=resnet50.safetensors   # tools/import_weights.py

The box part is configs/det/faster_rcnn_r50_fpn_coco.py, with its differences (square 800x800
padded inputs; the [640, 800] scale range as a random 0.8-1.0 rescale of them).
Arguments: `runlocal` (a tiny model on 64x64 inputs, for tests).
"""
from configs import common
from configs.det import faster_rcnn_r50_fpn_coco
from configs.inst import defaults


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  c = defaults.mask_rcnn(faster_rcnn_r50_fpn_coco.get_config(arg), masks=False, num_keypoints=17,
                         head_convs=1 if args.runlocal else 8,
                         head_width=8 if args.runlocal else 512)
  c.detect.pre_nms_topk = 1000
  c.detect.max_detections = 10 if args.runlocal else 100
  c.data.variant = 'person_keypoints'
  c.data.augment.scale_min = 0.8  # 640 / 800.
  c.data.augment.scale_max = 1.0
  return c
