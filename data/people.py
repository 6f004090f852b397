"""The stick figures of Shapes-people, in the LSP joint order (`ops.joints`)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ops.joints import NUM_JOINTS, SKELETON


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
