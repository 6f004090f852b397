r"""DenseCap (Johnson, Karpathy, Fei-Fei, CVPR 2016) on Visual Genome region descriptions.

Paper (Table 1, their VG test split): DenseCap mAP 5.39 for the full model (FCLN) at 720 px.
Their setting (sec. 3-4; densecap's train_opts.lua and LocalizationLayer.lua for the numbers the
paper leaves out): ImageNet VGG-16 conv5_3 features (stride 16) on images rescaled to a 720 px
longest side; 12 anchors (square roots of their areas 64, 128, 256, 512 px, ratios 1:2, 1:1, 2:1);
RPN head of width 512; 256 sampled boxes per image, at most half positive; recognition network
of two 4096-d FC layers; an LSTM with 512 hidden units and 512-d word vectors, the region code as
its first input; Adam, learning rate 1e-5, weight decay 1e-6, one image per iteration; test time:
RPN NMS at 0.7, 300 proposals, NMS at 0.3 between the final boxes. Data (data/visual_genome.py,
the paper's sec. 4): phrases of at most 10 words, images with 20-50 regions, words seen at least
15 times; with densecap's info/densecap_splits.json in the manual dir, its train / val / test.

  python train.py --config configs/densecap/densecap_vg.py --workdir runs/densecap_vg \
      --config.init.checkpoint=vgg16_bn.safetensors   # tools/import_weights.py

Our differences: VGG-16 with BatchNorm (torchvision's vgg16_bn layout); images are not rescaled
to a 720 px longest side (the pipeline scales by a factor, not to a size) but padded into
720 x 720 (larger ones cropped in training, downscaled at evaluation); RoIAlign instead of the
bilinear sampler; RoI positives at IoU >= 0.5 (our heads' threshold; the paper: 0.7, negatives
below 0.3); separate box and caption MLPs on the pooled features (models/densecap.py); the
vocabulary counts the training split only; METEOR without WordNet in the metric. The paper's
training runs until stopped: 500k steps (~6.5 epochs of the 77k training images) is ours.

Arguments: `runlocal` (for tests: a tiny model on 64x64 Shapes `captions_small`, since the
Visual Genome vocabulary exists only once the dataset is prepared from the official files, which
tests do not have; the COCO / VOC configs keep their dataset because their class names need no
data), `beam=K` (beam width of the test-time captions; 1 = greedy).
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, beam=1)
  c = defaults.option_groups(defaults.base_detection_config(), 'rpn', 'roi')
  c.task = 'dense_captioning'
  c.model.name = 'densecap'
  c.model.backbone = 'vgg16'
  c.model.feature_stride = 16
  c.model.rpn.anchor_sizes = (64.0, 128.0, 256.0, 512.0)
  c.model.rpn.anchor_ratios = (0.5, 1.0, 2.0)
  c.model.rpn.width = 512
  c.model.rpn.batch_size = 256
  c.model.rpn.pre_nms_topk_train = c.model.rpn.pre_nms_topk_test = 6000
  c.model.rpn.post_nms_topk_train = 2000
  c.model.rpn.post_nms_topk_test = 300
  c.model.rpn.nms_iou = 0.7
  c.model.roi.batch_size = 256
  c.model.roi.positive_fraction = 0.5
  c.model.roi.pooling = 'align'
  c.model.roi.size = 7
  c.model.roi.head_hidden = 4096
  c.model.region_code = 4096
  c.model.caption_embed = 512
  c.model.caption_hidden = 512
  c.model.caption_cell = 'lstm'
  c.model.beam_size = arg.beam
  c.model.classifier = 'softmax'
  c.loss.caption_weight = 1.0

  c.data.name = 'visual_genome'
  c.data.variant = 'default'
  c.data.train_split = 'train'
  c.data.eval_split = 'test'
  c.data.image_size = 720
  c.data.max_boxes = 50  # Images keep at most 50 regions.
  c.data.augment.flip = True  # Phrases follow: "left" <-> "right" (data/captions.py).

  c.detect.score_threshold = 0.0
  c.detect.nms_iou_threshold = 0.3
  c.detect.pre_nms_topk = 300
  c.detect.max_detections = 300  # DenseCap evaluates every final box.
  c.detect.show_score = 0.5

  c.batch_size = 1
  c.total_steps = 500_000
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 1e-5
  c.optimizer.schedule = 'constant'
  c.optimizer.weight_decay = 1e-6  # Decoupled (AdamW); densecap adds it to the gradients.
  c.log_every_steps = 100
  c.checkpoint_every_steps = 10_000
  c.eval_every_steps = 50_000
  c.eval_batch_size = 8
  if arg.runlocal:
    common.runlocal(c)
    c.data.name, c.data.variant = 'shapes', 'captions_small'
    c.data.eval_split = 'validation'  # Shapes has no test split.
    c.data.max_boxes = 4  # Shapes scenes have at most 3 objects.
    c.model.backbone = 'vgg_small'
    c.model.feature_stride = 8
    c.model.rpn.anchor_sizes = (12.0, 20.0, 32.0)
    c.model.rpn.width = 32
    c.model.rpn.pre_nms_topk_train = c.model.rpn.pre_nms_topk_test = 200
    c.model.rpn.post_nms_topk_train = c.model.rpn.post_nms_topk_test = 32
    c.model.roi.batch_size = 16
    c.model.roi.head_hidden = c.model.region_code = 32
    c.model.caption_embed, c.model.caption_hidden = 8, 16
    c.detect.pre_nms_topk = c.detect.max_detections = 10
  return c
