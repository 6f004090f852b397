r"""The mean IoU ceiling of predicting class scores at a coarse stride and upsampling them.

  python -m tools.stride_ceiling --variant large --image_size 128 --stride 8

Averages the one-hot ground truth over stride x stride cells (the best a stride-s score map can
know), upsamples it bilinearly (what FCN's upsampling starts from), takes the argmax, and scores
that against the ground truth on the validation split. It explains why FCN-8s trains on 128x128
Shapes: at 64x64 this ceiling is 0.73 mean IoU.
"""
import argparse

import jax
import numpy as np

from configs import common
from data import pipeline, source
from metrics.segmentation import confusion_matrix, segmentation_metrics


def stride_ceiling(data_config, stride: int) -> dict:
  info = pipeline.dataset_info(data_config)
  num_classes = info['num_classes']
  confusion = np.zeros((num_classes, num_classes))
  for batch in pipeline.make_eval_batches(data_config, batch_size=50):
    mask = batch['mask']
    one_hot = np.eye(num_classes, dtype=np.float32)[np.minimum(mask, num_classes - 1)]
    b, h, w, c = one_hot.shape
    coarse = one_hot.reshape(b, h // stride, stride, w // stride, stride, c).mean((2, 4))
    upsampled = jax.image.resize(coarse, (b, h, w, c), 'bilinear')
    confusion += np.asarray(confusion_matrix(mask, upsampled.argmax(-1), num_classes,
                                             example_valid=batch['example_valid']))
  return segmentation_metrics(confusion, info['class_names'])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--dataset', default='shapes')
  parser.add_argument('--variant', default='large')
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--stride', type=int, default=8)
  args = parser.parse_args()
  cfg = common.data_config()
  cfg.name, cfg.variant, cfg.image_size = args.dataset, args.variant, args.image_size
  source.ensure_prepared(cfg)
  metrics = stride_ceiling(cfg, args.stride)
  print(f'{args.dataset}/{args.variant} stride {args.stride}: mean IoU ceiling '
        f'{metrics["mean_iou"]:.3f}, pixel accuracy {metrics["pixel_accuracy"]:.3f}')


if __name__ == '__main__':
  main()
