"""Datasets (tfds builders, read with grain) and the input pipeline.

`DATASETS` maps a config's `data.name` to its builder; `get_dataset(name)` looks one up and fails
with the list of valid names (both in `data.source`, with the decoded records). The pipeline API
the trainer calls lives in `data.pipeline`.
"""
from __future__ import annotations

from data.pipeline import (
    dataset_info,
    make_eval_batches,
    make_train_iterator,
)
from data.source import DATASETS, ensure_prepared, get_dataset, variants

__all__ = ['DATASETS', 'get_dataset', 'variants', 'dataset_info',
           'ensure_prepared', 'make_eval_batches', 'make_train_iterator']
