"""Pose: the Shapes `people` variant, flips that swap left and right joints, PCK / PCP against
hand-computed cases, the cascade model, and one train + eval run."""
import os

import jax
import numpy as np

import train
from configs import loader
from data import augment, shapes
from metrics.pose import pck, pcp, pose_metrics, torso_size
from models import get_model
from ops.joints import FLIP_PERMUTATION, JOINT_NAMES
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained

PEOPLE = next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == 'people_small')


def test_people_have_14_labelled_joints_near_their_box():
  for i in range(8):
    ex = shapes.render(PEOPLE, 'train', i)
    assert ex['keypoints'].shape == (1, 14, 3) and set(ex['keypoints'][0, :, 2]) <= {1.0, 2.0}
    y1, x1, y2, x2 = ex['boxes'][0]
    points = ex['keypoints'][0, :, :2]
    assert np.all(points >= [y1 - 4, x1 - 4]) and np.all(points <= [y2 + 4, x2 + 4])
    # The figure faces the viewer: the right shoulder is on the image's left.
    assert points[8, 1] < points[9, 1]


def test_flip_swaps_left_and_right_joints():
  ex = shapes.render(PEOPLE, 'train', 0)
  ex = dict(ex, image=ex['image'].astype(np.float32) / 255)
  flipped = augment.transform(ex, flip=True, out_hw=(64, 64), oy=0, ox=0, crop_hw=(64, 64))
  before, after = ex['keypoints'][0], flipped['keypoints'][0]
  for joint, mirror in enumerate(FLIP_PERMUTATION):
    np.testing.assert_allclose(after[joint], [before[mirror, 0], 64 - before[mirror, 1],
                                              before[mirror, 2]], rtol=1e-6)
  assert after[9, 1] < after[8, 1] or before[8, 1] < before[9, 1]
  # Cropped out of the window: unlabelled.
  shifted = augment.transform(ex, flip=False, out_hw=(64, 64), oy=0, ox=32, crop_hw=(64, 64))
  outside = before[:, 1] < 32
  assert np.all(shifted['keypoints'][0, outside, 2] == 0)
  np.testing.assert_allclose(shifted['keypoints'][0, ~outside, 1], before[~outside, 1] - 32)


def _skeleton():
  """A person with a 10-pixel torso (left shoulder (0, 6) to right hip (8, 0))."""
  gt = np.zeros((14, 2))
  gt[[0, 1, 2, 3, 4, 5]] = [[24, 0], [16, 0], [8, 0], [8, 6], [16, 6], [24, 6]]
  gt[[6, 7, 8, 9, 10, 11]] = [[0, -12], [0, -6], [0, 0], [0, 6], [0, 12], [0, 18]]
  gt[[12, 13]] = [[-2, 3], [-6, 3]]
  return gt[None]


def test_pck_hand_computed():
  gt = _skeleton()
  assert torso_size(gt)[0] == 10
  pred = gt.copy()
  pred[0, 0] += [2, 0]  # Exactly 0.2 x torso: correct.
  pred[0, 1] += [0, 2.5]  # Beyond: wrong.
  labelled = np.ones((1, 14), bool)
  labelled[0, 13] = False  # Not counted even though it is far off.
  pred[0, 13] += 50
  overall, per_joint = pck(pred, gt, labelled, torso_size(gt))
  assert overall == 12 / 13 and per_joint[1] == 0 and per_joint[0] == 1


def test_pcp_hand_computed():
  gt = _skeleton()
  pred = gt.copy()
  pred[0, 0] += [4, 0]  # Lower right leg is 8 long: an endpoint 4 off is still correct.
  pred[0, 6] += [0, 3.5]  # Lower right arm is 6 long: 3.5 off breaks it.
  pred[0, 12] += [0, 10]  # Neck far off: breaks the head part only (torso uses midpoints).
  mean, parts = pcp(pred, gt, np.ones((1, 14), bool))
  assert parts['right_lower_leg'] == 1 and parts['right_lower_arm'] == 0
  assert parts['head'] == 0 and parts['torso'] == 1
  assert mean == 0.8
  m = pose_metrics(pred, np.concatenate([gt, np.full((1, 14, 1), 2.0)], -1),
                   np.array([[-6.0, -12.0, 24.0, 18.0]]))
  assert m['pcp'] == 0.8
  assert m['pck@0.2'] == 11 / 14  # 0.2 x torso 10 = 2 pixels: the three moved joints miss.
  assert m['pck@0.2_box'] == 13 / 14  # 0.2 x 30 = 6 pixels: only the neck (10 off) misses.


def test_cascade_refines_each_joint_within_its_window():
  model = get_model('deeppose', backbone='vgg_small', input_size=32, feature_stride=8, hidden=16,
                    cascade=True, refine_size=16, refine_stride=4)
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3))
  boxes = np.array([[8, 8, 56, 40], [0, 0, 64, 64]], np.float32)
  variables = jax.jit(lambda: model.init(jax.random.PRNGKey(1), images, boxes, train=False))()
  out = jax.jit(lambda v: model.apply(v, images, boxes, train=False))(variables)
  assert out['joints'].shape == (2, 2, 14, 2)
  np.testing.assert_allclose(out['frame'][0], [32, 24, 48 * 1.2])
  step = np.abs(out['joints'][:, 1] - out['joints'][:, 0])
  assert float(step.max()) > 0 and 'refine_backbone' in variables['params']


def test_train_and_evaluate(tfds_dir, tmp_path):
  config = loader.load('configs/pose/deeppose_shapes.py:runlocal')
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  state, metrics = train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  assert int(state.step) == config.total_steps and metrics['num_people'] == 16
  assert 0 <= metrics['pck@0.2'] <= 1 and 0 <= metrics['pcp'] <= 1
  assert set(metrics['per_joint_pck']) == set(JOINT_NAMES)
  assert os.path.exists(tmp_path / 'eval' / 'overlay_000.png')
