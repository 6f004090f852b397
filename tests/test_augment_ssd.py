"""data/augment_ssd.py: SSD's recipe keeps boxes, labels, instance ids and pixels together."""
import numpy as np
import pytest

from data import augment_ssd

# Three solid rectangles of their own colour on a grey 96x128 image (y1, x1, y2, x2).
BOXES = np.asarray([[10, 8, 50, 40], [30, 60, 90, 120], [60, 20, 80, 50]], np.float32)
COLOURS = np.asarray([[250, 0, 0], [0, 250, 0], [0, 0, 250]], np.uint8)
OUT_HW = (64, 64)


def _example() -> dict:
  image = np.full((96, 128, 3), 128, np.uint8)
  ids = np.zeros((96, 128), np.uint8)
  for k, (y1, x1, y2, x2) in enumerate(BOXES.astype(int)):
    image[y1:y2, x1:x2], ids[y1:y2, x1:x2] = COLOURS[k], k + 1
  return dict(image=image, instance_ids=ids, mask=np.zeros((96, 128), np.uint8), boxes=BOXES,
              labels=np.asarray([3, 1, 2], np.int32),
              annotated_boxes=True)  # Boxes move geometrically, not as the ids' tight boxes.


def test_boxes_labels_and_pixels_stay_together(monkeypatch):
  # Colours untouched here (the distortion is a per-pixel colour map, tested below), so each
  # object's pixels can be recognised after the geometric steps.
  monkeypatch.setattr(augment_ssd, 'photometric_distort', lambda image, rng: image)
  seen = dict(zoomed=0, dropped=0, flipped=0)
  for seed in range(40):
    out = augment_ssd.ssd_augment(_example(), np.random.default_rng(seed), out_hw=OUT_HW)
    assert out['image'].shape == (*OUT_HW, 3) and out['instance_ids'].shape == OUT_HW
    np.testing.assert_array_equal(out['labels'], [3, 1, 2])  # Dropped by box_valid, not removed.
    seen['zoomed'] += bool(np.all(out['image'] == augment_ssd.FILL, -1).any())
    seen['dropped'] += bool(not out['box_valid'].all())
    for k in np.flatnonzero(out['box_valid']):
      pixels = out['instance_ids'] == k + 1
      assert pixels.any(), (seed, k)
      ys, xs = np.nonzero(pixels)
      np.testing.assert_allclose(out['boxes'][k], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1],
                                 atol=3.5)  # Nearest-resized ids vs exact boxes, stretched <= 3x.
      colour = np.median(out['image'][pixels], 0)
      np.testing.assert_array_equal(colour, COLOURS[k])
      seen['flipped'] += bool(k == 0 and out['boxes'][0, 1] > out['boxes'][1, 1])
    for k in np.flatnonzero(~out['box_valid']):  # A dropped object leaves no instance pixels.
      assert not (out['instance_ids'] == k + 1).any() and not out['boxes'][k].any()
  assert min(seen.values()) > 0, seen  # Every step happened in some of the draws.


def test_iou_crop_windows_follow_the_sampler():
  rng = np.random.default_rng(0)
  for _ in range(50):
    crop = augment_ssd.iou_crop(BOXES, 96, 128, rng)
    if crop is None:
      continue
    (top, left, h, w), keep = crop
    assert 0.3 * 96 - 1 <= h <= 96 and 0.3 * 128 - 1 <= w <= 128 and 0.5 <= w / h <= 2
    assert 0 <= top <= 96 - h and 0 <= left <= 128 - w
    cy, cx = BOXES[:, [0, 2]].mean(1), BOXES[:, [1, 3]].mean(1)
    np.testing.assert_array_equal(keep, (top < cy) & (cy < top + h) & (left < cx) & (cx < left + w))
  assert augment_ssd.iou_crop(np.zeros((0, 4), np.float32), 96, 128, rng) is None  # No boxes.


def test_photometric_distort_changes_colours_only():
  image = _example()['image']
  outs = [augment_ssd.photometric_distort(image, np.random.default_rng(s)) for s in range(8)]
  assert any(not np.array_equal(o, image) for o in outs)
  for out in outs:  # Equal input pixels stay equal: no geometry, no noise.
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 4


def test_unknown_recipe_names_the_valid_ones():
  with pytest.raises(ValueError, match=r"recipe='yolo': valid: ssd"):
    augment_ssd.recipe('yolo')
