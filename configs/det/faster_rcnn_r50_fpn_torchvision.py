r"""torchvision's Faster R-CNN ResNet-50 FPN on COCO 2017, from its published weights.

torchvision's model card (FasterRCNN_ResNet50_FPN_Weights.COCO_V1): 37.0 box AP on COCO val2017.
This config is that model in ours (`configs/det/defaults.torchvision_rcnn`; tests/
test_parity_torchvision.py shows equal outputs on seeded weights): its 91 COCO category ids as
the head's classes: `head_classes='category_ids'` maps each dataset label to its category id
(coco2017's 80, data/coco.py; or a `coco_json` file's, which must use COCO's ids).

  # Where torch is (requirements-bench.txt):
  python -c "import torchvision, safetensors.torch as st; st.save_file(torchvision.models.\
detection.fasterrcnn_resnet50_fpn(weights='COCO_V1').state_dict(), 'frcnn.safetensors')"
  python -m tools.import_weights --arch fasterrcnn_resnet50_fpn frcnn.safetensors \
      --out runs/tv_frcnn
  python eval.py --config configs/det/faster_rcnn_r50_fpn_torchvision.py --checkpoint runs/tv_frcnn

Training from it (`--config.init.checkpoint=runs/tv_frcnn` loads every parameter) follows
configs/det/faster_rcnn_r50_fpn_coco.py's schedule. Arguments: `runlocal` (the same options on a
tiny model, for tests).
"""
from configs import common
from configs.det import defaults, faster_rcnn_r50_fpn_coco


def get_config(arg=None):
  args = common.parse_arg(arg, runlocal=False)
  c = faster_rcnn_r50_fpn_coco.get_config(arg)
  c = defaults.torchvision_rcnn(c)
  c.model.head_classes = 'category_ids'  # tasks/detection.py: (0, *the dataset's ids).
  c.model.head_size = 91  # Also when the dataset lacks id 90.
  if args.runlocal:
    c.model.backbone = 'resnet18'
    c.model.fpn_width = c.model.rpn.width = 16
    c.model.rpn.anchor_sizes = (8.0, 16.0, 32.0, 64.0, 128.0)
    c.model.rpn.pre_nms_topk_train = c.model.rpn.pre_nms_topk_test = 200
    c.model.rpn.post_nms_topk_train = c.model.rpn.post_nms_topk_test = 32
    c.model.roi.batch_size = 16
    c.model.roi.head_hidden = 32
    c.detect.pre_nms_topk = 19 * 32
    c.data.eval_min_size, c.data.eval_max_size = 64, 96
  return c
