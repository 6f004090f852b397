"""Human pose conventions (the 14 joints of LSP) and the stick figures of Shapes-people.

Keypoints are float32 [..., 14, 3] rows (y, x, v): continuous pixel coordinates (pixel i spans
[i, i + 1), as boxes do) and the COCO visibility flag v: 0 = not labelled (e.g. cropped out of the
image), 1 = labelled but occluded, 2 = labelled and visible.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

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


def with_midpoints(points: np.ndarray) -> np.ndarray:
  """[..., 14, D] -> [..., 16, D]: appends the shoulder and hip midpoints (indices -2, -1)."""
  shoulders = (points[..., 8, :] + points[..., 9, :]) / 2
  hips = (points[..., 2, :] + points[..., 3, :]) / 2
  return np.concatenate([points, shoulders[..., None, :], hips[..., None, :]], axis=-2)


def _unit(angle: float) -> np.ndarray:
  """(dy, dx) of an angle measured from 'down' (0) towards the image's right (pi / 2)."""
  return np.array([np.cos(angle), np.sin(angle)])


def stick_figure_joints(rng: np.random.Generator, height: float) -> np.ndarray:
  """[14, 2] (y, x) joints of a random pose around the origin (the pelvis), `height` pixels tall.

  The figure faces the viewer, so its right side is on the image's left; the torso leans at most
  ~20 degrees, which keeps left and right decidable from where the limbs attach.
  """
  lean = rng.uniform(-0.35, 0.35)
  up, side = -_unit(lean), _unit(lean + np.pi / 2)  # Towards the head; towards the image right.
  pelvis = np.zeros(2)
  neck = pelvis + up * 0.32 * height
  joints = np.zeros((NUM_JOINTS, 2))
  joints[12] = neck
  joints[13] = neck + up * 0.2 * height + side * rng.uniform(-0.04, 0.04) * height
  joints[8] = neck - side * 0.11 * height - up * 0.03 * height  # Right shoulder (image left).
  joints[9] = neck + side * 0.11 * height - up * 0.03 * height
  joints[2] = pelvis - side * 0.08 * height
  joints[3] = pelvis + side * 0.08 * height
  for shoulder, elbow, wrist, outward in ((8, 7, 6, -1), (9, 10, 11, 1)):
    a = lean + outward * rng.uniform(0.1, 2.8)  # From hanging down to raised overhead.
    joints[elbow] = joints[shoulder] + _unit(a) * 0.17 * height
    joints[wrist] = joints[elbow] + _unit(a + outward * rng.uniform(-0.5, 2.3)) * 0.15 * height
  for hip, knee, ankle, outward in ((2, 1, 0, -1), (3, 4, 5, 1)):
    a = lean + outward * rng.uniform(-0.25, 1.1)
    joints[knee] = joints[hip] + _unit(a) * 0.24 * height
    joints[ankle] = joints[knee] + _unit(a + outward * rng.uniform(-1.6, 0.3)) * 0.22 * height
  return joints


def draw_stick_figure(joints: np.ndarray, height: float, size: int) -> np.ndarray:
  """Boolean [S, S] mask of the figure: limbs as thick lines, a round head, a filled torso."""
  canvas = Image.new('L', (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  xy = lambda j: (float(joints[j, 1]), float(joints[j, 0]))
  width = max(2, int(round(0.055 * height)))
  draw.polygon([xy(8), xy(9), xy(3), xy(2)], fill=1)
  for a, b in SKELETON:
    if b == 13 or 12 not in (a, b):  # The torso polygon already joins neck and shoulders.
      draw.line([xy(a), xy(b)], fill=1, width=width)
  head = (joints[12] + 2 * joints[13]) / 3
  r = 0.075 * height
  draw.ellipse([head[1] - r, head[0] - r, head[1] + r, head[0] + r], fill=1)
  return np.asarray(canvas, dtype=bool)
