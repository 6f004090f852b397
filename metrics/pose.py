"""Pose metrics on the LSP joints: PCK@alpha and PCP (numpy, on the host).

PCK (percentage of correct keypoints): a joint is correct within alpha x a reference length of the
truth. The reference is the torso size, the distance from the left shoulder to the right hip (the
LSP convention, `ops.joints.TORSO`), or, with `reference='box'`, the longer side of the person
box (Yang & Ramanan's). PCP (percentage of correct parts, strict): a body part is correct when both
predicted endpoints lie within half the true part length of their true positions, over the 10
parts of `ops.joints.PCP_LIMBS`. Only labelled joints (v > 0) and parts with both ends labelled
count.
"""
import numpy as np

from ops.joints import JOINT_NAMES, PCP_LIMBS, TORSO, with_midpoints


def pck(pred: np.ndarray, gt: np.ndarray, labelled: np.ndarray, reference: np.ndarray,
        alpha: float = 0.2) -> tuple[float, np.ndarray]:
  """(overall PCK, per-joint PCK [J]) for pred/gt [N, J, 2], labelled [N, J], reference [N]."""
  dist = np.linalg.norm(pred - gt, axis=-1)
  correct = (dist <= alpha * reference[:, None]) & labelled
  per_joint = correct.sum(0) / np.maximum(labelled.sum(0), 1)
  return float(correct.sum() / max(labelled.sum(), 1)), per_joint


def torso_size(gt: np.ndarray) -> np.ndarray:
  """[N] distance from the left shoulder to the right hip of gt [N, 14, 2]."""
  return np.linalg.norm(gt[:, TORSO[0]] - gt[:, TORSO[1]], axis=-1)


def pcp(pred: np.ndarray, gt: np.ndarray, labelled: np.ndarray) -> tuple[float, dict]:
  """(mean PCP over parts, {part: PCP}) for pred/gt [N, 14, 2], labelled [N, 14]."""
  pred, gt = with_midpoints(pred), with_midpoints(gt)
  labelled = with_midpoints(labelled[..., None].astype(float))[..., 0] >= 1  # Midpoints: both.
  per_part = {}
  for name, (a, b) in PCP_LIMBS.items():
    length = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    ok = ((np.linalg.norm(pred[:, a] - gt[:, a], axis=-1) <= 0.5 * length)
          & (np.linalg.norm(pred[:, b] - gt[:, b], axis=-1) <= 0.5 * length))
    counted = labelled[:, a] & labelled[:, b]
    per_part[name] = float((ok & counted).sum() / max(counted.sum(), 1))
  return float(np.mean(list(per_part.values()))), per_part


def pose_metrics(pred: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray,
                 alpha: float = 0.2) -> dict:
  """All pose metrics for pred [N, 14, 2] (y, x), true keypoints [N, 14, 3], person boxes [N, 4]."""
  gt, labelled = keypoints[..., :2], keypoints[..., 2] > 0
  pck_torso, per_joint = pck(pred, gt, labelled, torso_size(gt), alpha)
  pck_box, _ = pck(pred, gt, labelled, np.max(boxes[:, 2:] - boxes[:, :2], axis=1), alpha)
  mean_pcp, per_part = pcp(pred, gt, labelled)
  return {f'pck@{alpha}': pck_torso, f'pck@{alpha}_box': pck_box, 'pcp': mean_pcp,
          'per_joint_pck': dict(zip(JOINT_NAMES, per_joint.tolist(), strict=True)),
          'per_part_pcp': per_part, 'num_people': len(pred)}
