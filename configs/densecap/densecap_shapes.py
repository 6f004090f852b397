r"""DenseCap (Johnson, Karpathy, Fei-Fei, CVPR 2016) on Shapes `captions` (64x64, named colours).

  python train.py --config configs/densecap/densecap_shapes.py --workdir runs/densecap_shapes
  python train.py --config configs/densecap/densecap_shapes.py:runlocal --workdir /tmp/densecap

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`backbone=NAME`, `beam=K` (beam width of the test-time captions; 1 = greedy), `cell=lstm|rnn`,
`context=S` (the captioner also reads the region's box scaled by S about its centre, where the
phrases' neighbours are; 0 = the paper's region-only features).

The box part is configs/det/faster_rcnn_shapes.py's Faster R-CNN (stride-8 map, 3x3 anchors,
RoIAlign) with one foreground class, 'region'. The paper's choices kept: RoIs sampled from the
RPN's proposals with IoU >= 0.5 positives at most a quarter of the minibatch (the paper: 256 per
image, half positive), RPN NMS at 0.7, the LSTM conditioned on the region code as its first
input; test time: NMS at 0.3 between final regions (sec. 3.5: "we apply NMS at 0.3 IoU") and the
captions of the kept regions. Metric: DenseCap mAP (metrics/densecap.py; METEOR without WordNet).
"""
from configs import common
from configs.det import faster_rcnn_shapes


def get_config(arg=None):
  args = common.parse_arg(arg, **faster_rcnn_shapes.ARGS, beam=1, cell='lstm', context=2.0)
  c = faster_rcnn_shapes.get_config(','.join(
      f'{k}={getattr(args, k)}' for k in faster_rcnn_shapes.ARGS))
  c.task = 'dense_captioning'
  c.model.name = 'densecap'
  c.model.roi.pooling = 'align'  # The paper's bilinear sampling of each region.
  c.model.region_code = 32 if args.runlocal else 256
  c.model.caption_embed = 8 if args.runlocal else 64
  c.model.caption_hidden = 16 if args.runlocal else 256
  c.model.caption_cell = args.cell
  c.model.beam_size = args.beam
  c.model.context_scale = args.context  # 0: the paper's region-only captions.
  c.loss.caption_weight = 1.0

  if not (args.demo or args.runlocal):
    c.total_steps = 5000  # At 2000 the relations are still at chance (BENCHMARKS.md).
  c.data.variant = 'captions_small' if args.runlocal else 'captions'
  c.data.max_boxes = 4  # Scenes have at most 3 objects.
  c.detect.score_threshold = 0.05
  c.detect.nms_iou_threshold = 0.3
  c.detect.max_detections = 10  # Captions are decoded for every one of them.
  c.detect.show_score = 0.5
  return c
