"""COCO (pycocotools) and VOC detection metrics."""
import numpy as np
import pytest

from metrics import CocoEvaluator, VocEvaluator, voc_ap

_KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl"}


def _scene(rng, n=6, size=200.0):
  yx = rng.uniform(0, size, (n, 2))
  hw = rng.uniform(20, 80, (n, 2))
  return np.concatenate([yx, yx + hw], 1), rng.integers(1, 4, n)


def _fill(ev, shift=0.0, images=4, pad=3):
  rng = np.random.default_rng(0)
  for image_id in range(images):
    boxes, labels = _scene(rng)
    # Padded like a batch: the last `pad` rows are garbage marked invalid.
    gb = np.concatenate([boxes, rng.uniform(0, 50, (pad, 4))])
    gl = np.concatenate([labels, np.ones(pad, int)])
    gv = np.arange(len(gb)) < len(boxes)
    ev.add(image_id, gt_boxes=gb, gt_labels=gl, gt_valid=gv, det_boxes=gb + shift,
           det_scores=np.linspace(1, 0.5, len(gb)), det_labels=gl, det_valid=gv)


def test_coco_box_ap_is_one_for_perfect_detections(capsys):
  ev = CocoEvaluator("bbox")
  _fill(ev)
  m = ev.compute()
  assert set(m) == _KEYS
  assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
  assert capsys.readouterr().out == ""  # pycocotools stays quiet without debug


def test_coco_box_ap_drops_when_boxes_shift():
  aps = []
  for shift in (0.0, 4.0, 12.0):
    ev = CocoEvaluator("bbox")
    _fill(ev, shift)
    aps.append(ev.compute())
  assert aps[0]["AP"] > aps[1]["AP"] > aps[2]["AP"]
  assert aps[1]["AP50"] == pytest.approx(1.0)  # small shifts still pass IoU 0.5
  assert aps[2]["AP75"] < 1.0


def test_coco_wrong_class_and_missing_detections():
  ev = CocoEvaluator("bbox")
  box = np.array([[10.0, 10.0, 60.0, 60.0], [100.0, 100.0, 150.0, 170.0]])
  ev.add(1, gt_boxes=box, gt_labels=[1, 2], det_boxes=box[:1], det_scores=[0.9],
         det_labels=[1])
  ev.add(2, gt_boxes=box, gt_labels=[1, 1], det_boxes=box, det_scores=[0.9, 0.8],
         det_labels=[2, 1])
  m = ev.compute()
  # Class 1: 2 of 3 found, precision 1 -> AP ~ 2/3 (101-point); class 2: 0 of 1 found.
  assert m["AP50"] == pytest.approx((2 / 3 + 0.0) / 2, abs=0.01)
  with pytest.raises(ValueError, match="twice"):
    ev.add(1, gt_boxes=box, gt_labels=[1, 1], det_boxes=box, det_scores=[1, 1],
           det_labels=[1, 1])


def test_coco_mask_ap():
  rng = np.random.default_rng(1)
  masks = np.zeros((3, 64, 80), np.uint8)
  masks[0, 5:30, 5:40] = 1
  masks[1, 30:60, 40:75] = 1
  masks[2, 10:20, 50:70] = 1
  boxes = np.array([[5, 5, 30, 40], [30, 40, 60, 75], [10, 50, 20, 70]], float)
  ev = CocoEvaluator("segm")
  ev.add(0, gt_boxes=boxes, gt_labels=[1, 1, 2], gt_masks=masks, det_boxes=boxes,
         det_scores=rng.uniform(size=3), det_labels=[1, 1, 2], det_masks=masks)
  assert ev.compute()["AP"] == pytest.approx(1.0)
  eroded = masks.copy()
  eroded[:, :, ::2] = 0  # half of every mask: IoU 0.5
  ev = CocoEvaluator("segm")
  ev.add(0, gt_boxes=boxes, gt_labels=[1, 1, 2], gt_masks=masks, det_boxes=boxes,
         det_scores=rng.uniform(size=3), det_labels=[1, 1, 2], det_masks=eroded)
  m = ev.compute()
  assert m["AP"] < 0.2 and m["AP75"] == 0.0


def test_coco_keypoint_ap_with_custom_sigmas():
  rng = np.random.default_rng(2)
  boxes = np.array([[10.0, 10.0, 110.0, 60.0], [50.0, 100.0, 190.0, 170.0]])
  kp = np.concatenate([rng.uniform(20, 100, (2, 14, 2)), np.full((2, 14, 1), 2.0)], -1)
  sigmas = np.full(14, 0.05)
  def run(noise):
    ev = CocoEvaluator("keypoints", kpt_oks_sigmas=sigmas)
    det = kp.copy()
    det[..., :2] += noise
    det[..., 2] = 1.0
    ev.add(0, gt_boxes=boxes, gt_labels=[1, 1], gt_keypoints=kp, det_boxes=boxes,
           det_scores=[0.9, 0.8], det_labels=[1, 1], det_keypoints=det)
    return ev.compute()
  perfect = run(0.0)
  assert set(perfect) == {"AP", "AP50", "AP75", "APm", "APl"}
  assert perfect["AP"] == pytest.approx(1.0)
  assert run(6.0)["AP"] < perfect["AP"]


def test_coco_no_detections():
  ev = CocoEvaluator("bbox")
  ev.add(0, gt_boxes=[[0, 0, 10, 10]], gt_labels=[1], det_boxes=np.zeros((0, 4)),
         det_scores=[], det_labels=[])
  assert ev.compute()["AP"] == 0.0


def test_voc_ap_hand_computed():
  # One class, 3 ground-truth boxes over 2 images; detections by score:
  # d1 TP, d2 FP (duplicate of d1's box), d3 TP, d4 FP (no overlap); gt 3 is never found.
  g = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
  ev = VocEvaluator()
  ev.add("a", gt_boxes=g, gt_labels=[1, 1],
         det_boxes=np.array([g[0], g[0] + 0.5, [50, 50, 60, 60]]), det_scores=[0.9, 0.8, 0.6],
         det_labels=[1, 1, 1])
  ev.add("b", gt_boxes=g[:1] + 5, gt_labels=[1], det_boxes=g[:1] + 5.5, det_scores=[0.7],
         det_labels=[1])
  # precision/recall after each detection: (1, 1/3), (1/2, 1/3), (2/3, 2/3), (1/2, 2/3).
  # All-point interpolated AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
  m = ev.compute()
  assert m["per_class"][1] == pytest.approx(5 / 9)
  assert m["AP50"] == pytest.approx(5 / 9)


def test_voc_difficult_and_mean_over_classes():
  g = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
  ev = VocEvaluator()
  # Class 1: the difficult box is detected (ignored, not FP) and the other found -> AP 1.
  # Class 2: one of two found, first in rank -> AP 0.5.
  ev.add(0, gt_boxes=np.concatenate([g, g + 40]), gt_labels=[1, 1, 2, 2],
         gt_difficult=[True, False, False, False], det_boxes=np.concatenate([g, g[:1] + 40]),
         det_scores=[0.9, 0.8, 0.7], det_labels=[1, 1, 2])
  m = ev.compute()
  assert m["per_class"] == {1: pytest.approx(1.0), 2: pytest.approx(0.5)}
  assert m["AP50"] == pytest.approx(0.75)
  assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
