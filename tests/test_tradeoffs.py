"""tools/tradeoffs.py: the grid it trains, the resolution overrides and the Pareto front."""
from tools import tradeoffs


def test_size_overrides_rescale_images_and_two_stage_anchors():
  faster = tradeoffs.size_overrides('faster_rcnn', 48)
  assert faster['data.image_size'] == 48
  assert faster['data.augment.scale_min'] == faster['data.augment.scale_max'] == 0.75
  assert faster['model.rpn.anchor_sizes'] == (9.0, 15.0, 24.0)  # 0.75 x (12, 20, 32).
  assert 'model.rpn.anchor_sizes' not in tradeoffs.size_overrides('ssd', 48)  # Relative boxes.


def test_grid_is_the_product_of_extractors_and_sizes():
  trials = tradeoffs.trials_of('rfcn', ['vgg_small', 'mobilenet_v1_small'], [64, 48])
  assert [(t['model.backbone'], t['data.image_size']) for t in trials] == [
      ('vgg_small', 64), ('vgg_small', 48), ('mobilenet_v1_small', 64),
      ('mobilenet_v1_small', 48)]
  assert tradeoffs.trials_of('ssd300', ['vgg_small'], [64, 48]) == [{}]  # Its own config only.


def test_pareto_front_keeps_rows_no_faster_row_beats():
  rows = [{'test_ms_per_image': t, 'AP': ap, 'name': n} for n, t, ap in
          [('a', 1.0, 0.3), ('b', 2.0, 0.2), ('c', 3.0, 0.5), ('d', 3.0, 0.4), ('e', 9.0, 0.6)]]
  assert [r['name'] for r in tradeoffs.pareto(rows)] == ['a', 'c', 'e']
