"""Human pose by joint regression (DeepPose): 14 LSP joints of the first person of each image.

The person box comes with the data (DeepPose's setting: a detector or the dataset gives it), the
model regresses the joints in the box's normalised frame, and `postprocess` maps them back to
pixels. Metrics: PCK@0.2 (torso and box references) and PCP (`metrics/pose.py`); overlays draw
the true and the predicted skeleton.
"""
import numpy as np

from losses.pose import pose_loss
from metrics.pose import pose_metrics
from ops.joints import NUM_JOINTS, SKELETON
from ops.keypoints import from_frame
from tasks import drawing
from tasks.base import Task, freeze_backbone


class PoseTask(Task):
  name = 'pose'

  def setup(self):
    if self.info['num_joints'] != NUM_JOINTS:
      raise ValueError(
          f"The pose task scores the 14 LSP joints (PCK, PCP); {self.config.data.name} has "
          f"{self.info['num_joints']}. Train keypoints of other joint sets with Mask R-CNN's "
          "keypoint head (configs/inst/keypoint_rcnn_*.py), scored by OKS AP.")

  def model_kwargs(self):
    return {'num_joints': NUM_JOINTS, 'frozen_backbone': freeze_backbone(self.config)}

  def model_inputs(self, batch):
    return (batch['image'], batch['boxes'][:, 0]), {}

  def loss(self, outputs, batch):
    return pose_loss(outputs, batch)

  def postprocess(self, outputs, batch):
    del batch
    return {'keypoints': from_frame(outputs['joints'][:, -1], outputs['frame'])}

  def make_evaluator(self):
    return PoseEvaluator()

  def draw_example(self, batch, predictions, i, path):
    """The true | predicted skeleton over the image."""
    image = drawing.to_uint8(batch['image'][i])
    truth = batch['keypoints'][i, 0]
    gt = drawing.draw_skeleton(image, truth[:, :2], SKELETON, labelled=truth[:, 2] > 0)
    pred = drawing.draw_skeleton(image, predictions['keypoints'][i], SKELETON)
    drawing.save_panel([gt, pred], ['ground truth', 'prediction'], path, scale=1)


class PoseEvaluator:
  """Collects predicted and true joints of every image with a person; metrics at the end."""

  def __init__(self):
    self.pred, self.keypoints, self.boxes = [], [], []

  def add(self, batch, predictions):
    keep = np.asarray(batch['example_valid']) & np.asarray(batch['valid'][:, 0])
    self.pred.append(np.asarray(predictions['keypoints'])[keep])
    self.keypoints.append(np.asarray(batch['keypoints'][:, 0])[keep])
    self.boxes.append(np.asarray(batch['boxes'][:, 0])[keep])

  def result(self) -> dict:
    return pose_metrics(np.concatenate(self.pred), np.concatenate(self.keypoints),
                        np.concatenate(self.boxes))
