"""Datasets (tfds builders, read with grain) and the input pipeline.

`DATASETS` maps a config's `data.name` to its builder; `get_dataset(name)` looks one up and fails
with the list of valid names. The pipeline API the trainer calls lives in `data.pipeline`.
"""
from __future__ import annotations

from data.coco import Coco2017
from data.coco_json import CocoJson
from data.lsp import Lsp
from data.mask_folder import MaskFolder
from data.shapes import Shapes
from data.visual_genome import VisualGenome
from data.voc import Voc2012Segmentation, VocDetection

DATASETS = {
    'shapes': Shapes,
    'voc2012_segmentation': Voc2012Segmentation,
    'lsp': Lsp,
    'voc_detection': VocDetection,
    'coco2017': Coco2017,
    'coco_json': CocoJson,
    'mask_folder': MaskFolder,
    'visual_genome': VisualGenome,
}


def get_dataset(name: str):
  """The tfds builder class registered as `name`."""
  if name not in DATASETS:
    raise ValueError(f'Unknown dataset {name!r}; valid names: {sorted(DATASETS)}')
  return DATASETS[name]


def variants(name: str) -> list[str]:
  """The builder config names (`data.variant` values) of dataset `name`."""
  return [c.name for c in get_dataset(name).BUILDER_CONFIGS]


# The pipeline API the trainer calls (`data.make_train_iterator(...)` etc.); imported last because
# the pipeline looks datasets up in DATASETS above.
from data.pipeline import (  # noqa: E402
    dataset_info,
    default_config,
    ensure_prepared,
    make_eval_batches,
    make_train_iterator,
)

__all__ = ['DATASETS', 'get_dataset', 'variants', 'dataset_info', 'default_config',
           'ensure_prepared', 'make_eval_batches', 'make_train_iterator']
