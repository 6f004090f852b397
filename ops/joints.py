"""Human pose conventions: the joint sets of LSP and COCO, shared by data, models, metrics, tasks.

Keypoints are float32 [..., J, 3] rows (y, x, v): continuous pixel coordinates (pixel i spans
[i, i + 1), as boxes do) and the COCO visibility flag v: 0 = not labelled (e.g. cropped out of the
image), 1 = labelled but occluded, 2 = labelled and visible. Which J joints, in which order, is a
property of the dataset: a `JointSet` (`LSP_14` or `COCO_17`), which `data.dataset_info` reports.
The module-level JOINT_NAMES ... PCP_LIMBS are LSP's, used by the PCK / PCP metrics and the figures.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Leeds Sports Pose order (Johnson & Everingham 2010); "right" is the person's right.
JOINT_NAMES = ('right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle',
               'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder', 'left_elbow',
               'left_wrist', 'neck', 'head_top')
NUM_JOINTS = len(JOINT_NAMES)
# A horizontal flip turns the person's right side into the left: joint i takes the label of
# FLIP_PERMUTATION[i].
FLIP_PERMUTATION = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13)
# Torso size for PCK (the LSP convention): distance from the left shoulder to the right hip.
TORSO = (9, 2)
# The 10 body parts of PCP. Joint pairs; -1 / -2 stand for the hip / shoulder midpoints, so the
# torso stick joins the middle of the hips to the middle of the shoulders.
HIP_MID, SHOULDER_MID = -1, -2
PCP_LIMBS = {
    'right_lower_leg': (0, 1), 'right_upper_leg': (1, 2), 'left_upper_leg': (3, 4),
    'left_lower_leg': (4, 5), 'right_lower_arm': (6, 7), 'right_upper_arm': (7, 8),
    'left_upper_arm': (9, 10), 'left_lower_arm': (10, 11), 'torso': (HIP_MID, SHOULDER_MID),
    'head': (12, 13),
}
# Sticks drawn for a skeleton (the figure itself, not the PCP parts).
SKELETON = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (9, 10), (10, 11),
            (8, 2), (9, 3), (12, 13), (8, 12), (9, 12))
# OKS sigmas (per-joint falloff of the object keypoint similarity) in LSP order: CrowdPose's
# 14-joint set (Li et al., CVPR 2019) takes COCO's value for each limb joint type and 0.079 for
# the head top and the neck.
LSP_OKS_SIGMAS = (0.089, 0.087, 0.107, 0.107, 0.087, 0.089, 0.062, 0.072, 0.079, 0.079, 0.072,
                  0.062, 0.079, 0.079)

# COCO person keypoints in the annotation files' order.
COCO_JOINT_NAMES = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                    'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                    'right_ankle')
COCO_FLIP_PERMUTATION = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
# The person category's `skeleton` of the annotation files, 0-based.
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
                 (4, 6))
# https://cocodataset.org/#keypoints-eval (also pycocotools' COCOeval default kpt_oks_sigmas).
COCO_OKS_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                   0.107, 0.107, 0.087, 0.087, 0.089, 0.089)


@dataclasses.dataclass(frozen=True)
class JointSet:
  """The joints of a dataset's keypoints: names (their order), the flip map, sticks, OKS sigmas.

  flip_permutation: after a horizontal flip joint i takes the label of joint flip_permutation[i]
  (the person's right becomes their left). skeleton: joint pairs to draw. oks_sigmas: for
  COCOeval's `kpt_oks_sigmas`.
  """
  names: tuple[str, ...]
  flip_permutation: tuple[int, ...]
  skeleton: tuple[tuple[int, int], ...]
  oks_sigmas: tuple[float, ...]

  def __post_init__(self):
    j = len(self.names)
    if len(self.oks_sigmas) != j or sorted(self.flip_permutation) != list(range(j)):
      raise ValueError(f'{j} joints need {j} OKS sigmas and a permutation of 0..{j - 1} to flip')
    if any(self.flip_permutation[k] != i for i, k in enumerate(self.flip_permutation)):
      raise ValueError('Flipping twice must give the joints back: pairs swap or stay')
    if not all(0 <= a < j and 0 <= b < j for a, b in self.skeleton):
      raise ValueError(f'Skeleton joints must be in 0..{j - 1}')

  @property
  def num_joints(self) -> int:
    return len(self.names)


LSP_14 = JointSet(JOINT_NAMES, FLIP_PERMUTATION, SKELETON, LSP_OKS_SIGMAS)
COCO_17 = JointSet(COCO_JOINT_NAMES, COCO_FLIP_PERMUTATION, COCO_SKELETON, COCO_OKS_SIGMAS)


def with_midpoints(points: np.ndarray) -> np.ndarray:
  """[..., 14, D] -> [..., 16, D]: appends the shoulder and hip midpoints (indices -2, -1)."""
  shoulders = (points[..., 8, :] + points[..., 9, :]) / 2
  hips = (points[..., 2, :] + points[..., 3, :]) / 2
  return np.concatenate([points, shoulders[..., None, :], hips[..., None, :]], axis=-2)
