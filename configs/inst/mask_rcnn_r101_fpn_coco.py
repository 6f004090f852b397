r"""Mask R-CNN, ResNet-101 FPN, COCO 2017 instances (He, Gkioxari, Dollar, Girshick, ICCV 2017).

Paper (Table 1, COCO test-dev mask AP): 35.7 with ResNet-101-FPN, 37.1 with ResNeXt-101-FPN
(not built here). Recipe (sec. 3.1): ImageNet-pretrained backbone, images resized to an 800 px
shorter side, 512 sampled RoIs per image with 1:3 positives to negatives, batch 16, SGD momentum
0.9, weight decay 1e-4, learning rate 0.02 for 160k iterations (x0.1 at 120k); 1000 proposals
at test time, the mask branch on the top 100 detections, masks binarised at 0.5. Heads: the
FPN variant (Fig. 4 right): 14x14 RoIAlign, four 256-channel 3x3 convs, a 2x2 stride-2
transpose conv, 28x28 masks, one per class. The box part is configs/det/faster_rcnn_r50_fpn_coco.py
(P2-P6, anchors 32..512, two 1024-d FC layers) with ResNet-101.

  python -m tools.import_weights resnet101.safetensors --arch resnet101
  python train.py --config configs/inst/mask_rcnn_r101_fpn_coco.py --workdir runs/mrcnn_coco \
      --config.init.checkpoint=resnet101.safetensors

Recipe details and our differences are those of the Faster R-CNN config (frozen batch norm, 3
trainable stages, per-level proposals, 800/1333 evaluation; square 800x800 training canvases and
centred anchors). Arguments: `runlocal` (a tiny model on 64x64 inputs, for tests).
"""
from configs import common
from configs.det import faster_rcnn_r50_fpn_coco
from configs.inst import defaults


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  c = defaults.mask_rcnn(faster_rcnn_r50_fpn_coco.get_config(arg), masks=True,
                         head_convs=1 if args.runlocal else 4,
                         head_width=8 if args.runlocal else 256)
  c.model.backbone = 'resnet18' if args.runlocal else 'resnet101'
  c.detect.pre_nms_topk = 1000
  c.detect.max_detections = 10 if args.runlocal else 100  # The masks of the top 100 boxes.
  if not args.runlocal:
    c.total_steps = 160_000
    c.optimizer.step_boundaries = (119 / 159,)  # Step 120k (159k steps after 1000 warmup).
    c.eval_every_steps = 40_000
  return c
