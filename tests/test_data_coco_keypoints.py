"""COCO person keypoints: the joint sets, and the `coco2017/person_keypoints` builder on a tiny
annotation file written here, through the pipeline and a flip."""
import numpy as np
import pytest

import data
from data import augment, pipeline
from ops.joints import COCO_17, COCO_FLIP_PERMUTATION, COCO_JOINT_NAMES, COCO_SKELETON, LSP_14
from tests.coco_files import compressed_rle, data_config, rect, uncompressed_rle, write_coco
from training.state import example_batch

# One 40 x 50 image: person A (polygon, x 10..30, y 5..25), person B (compressed RLE) and a crowd
# of people (uncompressed RLE, no keypoints), none overlapping.
_B = rect(40, 50, 20, 32, 35, 47)
_CROWD = rect(40, 50, 30, 0, 40, 20)
# Person A's joints as COCO's (x, y, v) per joint: some unlabelled (v = 0, stored as 0, 0, 0).
_A_XYV = np.zeros((17, 3))
_A_XYV[:11] = [[20, 8, 2], [22, 7, 2], [18, 7, 1], [0, 0, 0], [15, 8, 2], [26, 12, 2],
               [14, 12, 2], [28, 17, 1], [12, 17, 2], [0, 0, 0], [11, 22, 2]]
_B_XYV = np.zeros((17, 3))
_B_XYV[[5, 6, 15]] = [[43, 22, 2], [35, 22, 2], [44, 34, 1]]


def _annotation(ann_id, bbox, segmentation, keypoints, iscrowd=0):
  return {'id': ann_id, 'image_id': 5, 'category_id': 1, 'iscrowd': iscrowd,
          'area': float(bbox[2] * bbox[3]), 'bbox': bbox, 'segmentation': segmentation,
          'keypoints': keypoints.astype(int).ravel().tolist(),
          'num_keypoints': int(np.sum(keypoints[:, 2] > 0))}


def _coco_json(folder):
  del folder  # Both splits hold the same image.
  skeleton = [[a + 1, b + 1] for a, b in COCO_SKELETON]  # The files count from 1.
  return {
      'images': [{'id': 5, 'file_name': f'{5:012d}.jpg', 'height': 40, 'width': 50}],
      'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person',
                      'keypoints': list(COCO_JOINT_NAMES), 'skeleton': skeleton}],
      'annotations': [
          _annotation(1, [10, 5, 20, 20], [[10, 5, 30, 5, 30, 25, 10, 25]], _A_XYV),
          _annotation(2, [32, 20, 15, 15], compressed_rle(_B), _B_XYV),
          _annotation(3, [0, 30, 20, 10], uncompressed_rle(_CROWD), np.zeros((17, 3)), iscrowd=1),
      ],
  }


def _expected(xyv):
  """Our (y, x, v): COCO's pixel indices + 0.5 (pixel centres), unlabelled joints all 0."""
  labelled = xyv[:, 2:] > 0
  return np.where(labelled, np.stack([xyv[:, 1] + 0.5, xyv[:, 0] + 0.5, xyv[:, 2]], 1), 0)


@pytest.mark.parametrize('joints', [LSP_14, COCO_17])
def test_flip_maps_swap_left_and_right(joints):
  for i, j in enumerate(joints.flip_permutation):
    mirrored = joints.names[i].replace('left', 'LEFT').replace('right', 'left').replace(
        'LEFT', 'right')
    assert joints.names[j] == mirrored
    assert joints.oks_sigmas[i] == joints.oks_sigmas[j]  # Sigmas depend on the joint type only.


def test_person_keypoints_builder_and_flip(tmp_path):
  write_coco(tmp_path / 'manual', 'person_keypoints', _coco_json)
  cfg = data_config(tmp_path, 'coco2017', 'person_keypoints')
  batch = next(iter(data.make_eval_batches(cfg, batch_size=2)))
  info = data.dataset_info(cfg)
  assert info['class_names'] == ['background', 'person']
  assert info['joints'] is COCO_17 and info['num_joints'] == 17
  assert example_batch(info)['keypoints'].shape == (1, 4, 17, 3)

  assert batch['keypoints'].shape == (2, 4, 17, 3)  # The padding example too.
  np.testing.assert_array_equal(batch['example_valid'], [True, False])
  np.testing.assert_array_equal(batch['labels'][0], [1, 1, 1, 0])
  np.testing.assert_array_equal(batch['difficult'][0], [False, False, True, False])
  keypoints = batch['keypoints'][0]  # The image is padded into 64 x 64, not scaled.
  np.testing.assert_allclose(keypoints[0], _expected(_A_XYV))
  np.testing.assert_allclose(keypoints[0, 2], [7.5, 18.5, 1])  # right_eye: x 18, y 7, occluded.
  np.testing.assert_allclose(keypoints[1], _expected(_B_XYV))
  assert not keypoints[2:].any()  # The crowd and the padding box have none.
  masks = augment.ids_to_masks(batch['instance_ids'][0], 4)[:, :40, :50].astype(bool)
  assert masks[0, 5:25, 10:30].all() and not masks[0, :, 31:].any() and not masks[0, 26:].any()
  np.testing.assert_array_equal(masks[1], _B.astype(bool))  # Compressed RLE, exactly.
  np.testing.assert_array_equal(masks[2], _CROWD.astype(bool))  # Uncompressed RLE.

  ex = pipeline.DecodedSource(cfg, 'validation')[0]
  assert ex['keypoint_flip'] == COCO_FLIP_PERMUTATION
  ex = dict(ex, image=ex['image'].astype(np.float32) / 255)
  flipped = augment.transform(ex, flip=True, out_hw=(40, 50), oy=0, ox=0, crop_hw=(40, 50))
  before, after = ex['keypoints'][0], flipped['keypoints'][0]
  for joint, mirror in enumerate(COCO_FLIP_PERMUTATION):
    labelled = before[mirror, 2] > 0
    expected = [before[mirror, 0], 50 - before[mirror, 1], before[mirror, 2]] if labelled else 0
    np.testing.assert_allclose(after[joint], expected)
  np.testing.assert_allclose(after[1], [7.5, 31.5, 1])  # left_eye <- the occluded right_eye.
  np.testing.assert_allclose(after[0], [8.5, 29.5, 2])  # The nose stays the nose.

  train = next(data.make_train_iterator(cfg, global_batch_size=1, seed=0))
  assert train['keypoints'].shape == (1, 4, 17, 3)
