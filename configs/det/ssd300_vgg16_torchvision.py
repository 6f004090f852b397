r"""SSD300-VGG16 as torchvision's `ssd300_vgg16` on COCO 2017 (Liu et al., ECCV 2016).

torchvision's published weights (SSD300_VGG16_Weights.COCO_V1): 25.1 box AP on COCO val2017.
Recipe (torchvision references/detection): VGG16 (ImageNet features, no batch norm), conv4_3
L2Norm, fc6/fc7 as dilated convolutions, four extra blocks; default boxes of scales 0.07 ... 1.05
and steps 8 ... 300; inputs stretched to 300x300, 0-255 minus the mean; matching at IoU 0.5,
3:1 hard negatives; batch 32 (4 GPUs x 8), SGD lr 0.002, momentum 0.9, weight decay 5e-4, 120
epochs with x0.1 at epochs 80 and 110; augmentation: photometric distortion, zoom-out, SSD
random IoU crops and flips (`data.augment.recipe='ssd'`, data/augment_ssd.py); post-processing:
scores > 0.01, 400 per class, NMS 0.45, 200 per image (`models.ssd_vgg16.select_detections`).

Evaluate torchvision's weights (README, "Reproduce torchvision's numbers"):

  python -m tools.import_weights ssd300_vgg16.safetensors --arch ssd300_vgg16 --out runs/ssd_tv
  python eval.py --config configs/det/ssd300_vgg16_torchvision.py --checkpoint runs/ssd_tv

torchvision's head has 91 classes (COCO's ids with the unused ones); `model.head_classes` maps
our 81 contiguous labels onto them, and scores are its softmax over all 91, as there.
Evaluation is torchvision's protocol: each image stretched to 300x300 (`data.eval_fixed_size`,
data/eval_resize.py), boxes mapped back to the original image per axis before COCO evaluation
(tests/test_reference_eval_ssd.py: box AP 1.0 on torchvision's own detections).
Where ours differs: the eval images are rounded to uint8 after the stretch (the batch contract),
torchvision keeps them float. Arguments: `shapes` (the same network, widths / 4, on the 64x64
Shapes stretched to 300x300, for tools/tradeoffs.py), `runlocal` (widths / 16, for tests).
"""
from configs import common
from configs.det import defaults

# torchvision's head class (COCO category id) of each of our coco2017 labels, background first.
COCO_IDS = (0, *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
            *range(72, 83), *range(84, 91))


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, shapes=False)
  c = defaults.base_detection_config()
  c.model.name = 'ssd_vgg16'
  c.model.pixel_mean = (0.48235, 0.45882, 0.40784)  # torchvision's: (x - mean) * 255.
  c.model.pixel_std = (1 / 255,) * 3
  c.model.pixel_scale = 1.0
  c.model.width_divisor = 1
  c.model.head_classes = COCO_IDS
  c.loss.iou_threshold = 0.5
  c.loss.neg_pos_ratio = 3
  c.loss.alpha = 1.0
  c.detect.score_threshold = 0.01
  c.detect.nms_iou_threshold = 0.45
  c.detect.pre_nms_topk = 400  # Per class for ssd_vgg16 (torchvision's topk_candidates).
  c.detect.max_detections = 200

  c.data.name = 'coco2017'
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.image_size = 300
  c.data.max_boxes = 100
  # torchvision's "ssd" recipe (data/augment_ssd.py), then stretched to crop_size x crop_size.
  c.data.augment.recipe = 'ssd'
  c.data.augment.flip = True
  c.data.augment.crop_size = 300
  c.data.eval_fixed_size = (300, 300)  # torchvision's fixed_size: stretched, aspect not kept.

  c.batch_size = 32
  c.total_steps = 120 * 118_287 // 32  # 120 epochs of COCO train2017.
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 0.002
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = 'step'
  c.optimizer.step_boundaries = (80 / 120, 110 / 120)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  c.eval_every_steps = 50_000
  c.eval_batch_size = 16
  if arg.shapes or arg.runlocal:
    # The 64x64 Shapes of tools/tradeoffs.py's plot, stretched to the network's fixed 300x300
    # (its 1x1 last map needs 300) in training (x 300 / 64) and eval (evaluated at 64x64).
    c.data.name = 'shapes'
    c.data.variant = 'default'
    c.data.image_size = 300
    c.data.max_boxes = 8
    c.data.augment.recipe = None  # Flips only, as the other Shapes detectors of the plot.
    c.data.augment.scale_min = c.data.augment.scale_max = 300 / 64
    c.model.head_classes = ()
    c.model.width_divisor = 4  # A CPU-sized VGG16 (widths / 4) for the speed/accuracy plot.
    c.batch_size = 16
    c.total_steps = 3000
    c.optimizer.name = 'adamw'
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = 'cosine'
    c.optimizer.warmup_steps = 200
    c.checkpoint_every_steps = 500
    c.eval_every_steps = 0
  if arg.runlocal:
    common.runlocal(c)
    c.data.image_size = 300
    c.model.width_divisor = 16
    c.data.augment.recipe = 'ssd'  # The recipe's path through the pipeline, in the config tests.
  return c
