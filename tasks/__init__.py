"""Tasks: the only code that knows what a task is. Looked up by `config.task` in one plain dict."""
from tasks.captioning import CaptioningTask
from tasks.densecap import DenseCapTask
from tasks.detection import DetectionTask
from tasks.instance import InstanceTask
from tasks.localization import LocalizationTask
from tasks.pose import PoseTask
from tasks.segmentation import SegmentationTask

TASKS = {
    'segmentation': SegmentationTask,
    'detection': DetectionTask,
    'instance_segmentation': InstanceTask,
    'dense_captioning': DenseCapTask,
    'localization': LocalizationTask,
    'pose': PoseTask,
    'captioning': CaptioningTask,
}


def get_task(config):
  if config.task not in TASKS:
    raise ValueError(f'unknown config.task {config.task!r}; valid: {", ".join(sorted(TASKS))}')
  return TASKS[config.task](config)
