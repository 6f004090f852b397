r"""FCN-ResNet50 as torchvision's `fcn_resnet50` on COCO's VOC-category subset (its reference).

torchvision's published weights (FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1): 60.5 mean IoU,
91.4 pixel accuracy on COCO val2017's VOC-category subset (ResNet-101: 63.7 / 91.9,
configs/seg/fcn_resnet101_torchvision.py). Recipe (torchvision references/segmentation): ImageNet
ResNet-50 with layer3/layer4 dilated (output stride 8), FCN head + auxiliary head on layer3 (loss
weight 0.5), batch 32 (8 GPUs x 4), SGD momentum 0.9, weight decay 1e-4, lr 0.02 with a poly
decay (power 0.9) over 30 epochs; train images resized to a random shorter side in [260, 1040],
flipped, cropped to 480; evaluation at shorter side 520, ImageNet normalisation (in the model).

Evaluate torchvision's weights (README, "Reproduce torchvision's numbers"):

  python -m tools.import_weights fcn_resnet50.safetensors --arch fcn_resnet50 --out runs/fcn50_tv
  python eval.py --config configs/seg/fcn_resnet50_torchvision.py --checkpoint runs/fcn50_tv

Train it (`--config.init.checkpoint=resnet50.safetensors` for the ImageNet backbone):

  python train.py --config configs/seg/fcn_resnet50_torchvision.py --workdir runs/fcn50

Where ours differs: a cosine learning-rate decay (no poly schedule in training/optim.py); square
train crops of 480 from a scale jitter of 0.5-2.0 instead of a random shorter side; the eval
resize to a shorter side of 520 is `data.eval_min_size` (the eval-resize path of the "own data"
work; without it, eval images are fitted into `data.image_size` and padded with the ignore
label), and mean IoU is counted in that frame, as torchvision's reference counts it at 520.
Arguments: `shapes` (the same network on 128x128 Shapes, for tools/tradeoffs.py-style
comparisons on a CPU), `runlocal` (ResNet-18, 64x64 Shapes, for tests), `backbone=NAME`.
"""
from configs import common


def torchvision_fcn_config(arg, backbone: str):
  """The config of torchvision's fcn_`backbone` (resnet50 / resnet101), see the docstring."""
  arg = common.parse_arg(arg, runlocal=False, shapes=False, backbone=backbone)
  c = common.base_config()
  c.task = 'segmentation'
  c.model.name = 'fcn_resnet'
  c.model.backbone = arg.backbone
  c.model.aux_loss = True  # The auxiliary FCN head on layer3.
  c.model.dropout_rate = 0.1
  c.model.pixel_mean = (0.485, 0.456, 0.406)  # ImageNet's, applied in the model to [0, 1] input.
  c.model.pixel_std = (0.229, 0.224, 0.225)
  c.model.pixel_scale = 1.0
  c.loss.aux_weight = 0.5  # torchvision's reference: loss = out + 0.5 * aux.

  c.data.name = 'coco_voc_segmentation'
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.image_size = 520
  c.data.eval_min_size = 520  # Shorter side 520 at eval (torchvision's SemanticSegmentation).
  c.data.max_boxes = 64
  c.data.augment.flip = True
  c.data.augment.scale_min = 0.5  # 260..1040 around 520.
  c.data.augment.scale_max = 2.0
  c.data.augment.crop_size = 480

  c.batch_size = 32
  # 30 epochs of COCO train2017's 118,287 images; the VOC-category subset keeps fewer, so
  # this is an upper bound: set 30 * N / 32 with N the size tfds reports for the built set.
  c.total_steps = 30 * 118_287 // 32
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 0.02
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = 'cosine'
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  c.eval_every_steps = 20_000
  c.eval_batch_size = 8
  if arg.shapes or arg.runlocal:
    c.data.name = 'shapes'
    c.data.variant = 'large'
    c.data.image_size = 128
    del c.data['eval_min_size']
    c.data.max_boxes = 8
    c.data.augment.scale_min = c.data.augment.scale_max = 1.0
    c.data.augment.crop_size = None
    c.batch_size = 16
    c.total_steps = 3000
    c.optimizer.name = 'adamw'
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 100
    c.checkpoint_every_steps = 500
    c.eval_every_steps = 0
    c.eval_batch_size = 16
  if arg.runlocal:
    common.runlocal(c)
    c.model.backbone = 'resnet18'  # Dilated basic blocks: a small stand-in for the test.
  return c


def get_config(arg=None):
  return torchvision_fcn_config(arg, 'resnet50')
