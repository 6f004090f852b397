"""Metric writers: TensorBoard event files, `metrics.jsonl`, and the log.

clu's writers import TensorFlow; we write TensorBoard events with tensorboardX instead so that
training needs no TensorFlow. Only process 0 writes.
"""
import json
import logging
import os

import jax
import numpy as np

log = logging.getLogger('detseg')


class MetricWriter:
  def __init__(self, workdir: str, *, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # Deferred: only process 0 needs it.
      os.makedirs(workdir, exist_ok=True)
      self._tb = SummaryWriter(workdir, flush_secs=30)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write_scalars(self, step: int, scalars: dict, prefix: str = ''):
    if not self.enabled:
      return
    values = {f'{prefix}{k}': float(np.asarray(v)) for k, v in scalars.items()}
    for name, value in values.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({'step': int(step), **values}) + '\n')
    self._jsonl.flush()
    log.info('step %d: %s', step, ', '.join(f'{k}={v:.4g}' for k, v in values.items()))

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
