"""Overlay details the README promises: class colours as in the legend, empty detection panels."""
import numpy as np

from tasks import drawing


def test_empty_prediction_panel_says_no_box_passed_the_threshold():
  assert drawing.prediction_title(0, 0.3) == 'prediction: no detection >= 0.3'
  assert drawing.prediction_title(2, 0.3) == 'prediction'


def test_instance_masks_are_drawn_in_their_class_colour():
  image = np.zeros((64, 64, 3), np.uint8)
  masks = np.zeros((2, 64, 64), bool)
  masks[0, :32], masks[1, 32:] = True, True
  names = ['background', 'circle', 'square', 'triangle']
  out = drawing.draw_instances(image, np.asarray([[0, 0, 32, 64], [32, 0, 64, 64]], float),
                               np.asarray([3, 1]), names, masks=masks, scale=1)
  colors = drawing.palette(len(names))
  expected = lambda label: drawing.blend(image[:1, :1], colors[label][None, None])[0, 0]
  # Inside each mask, below the caption and off the box outline.
  np.testing.assert_array_equal(out[25, 32], expected(3))
  np.testing.assert_array_equal(out[57, 32], expected(1))
