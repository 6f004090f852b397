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


def truncate_jsonl(path: str, last_step: int):
  """Drops the records after `last_step`: a resumed run writes those steps again."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  # A line cut off by a kill mid-write cannot be parsed; it goes too.
  kept = []
  for line in lines:
    try:
      if json.loads(line)['step'] <= last_step:
        kept.append(line)
    except (ValueError, KeyError):
      continue
  if len(kept) != len(lines):
    with open(path + '.tmp', 'w') as f:
      f.writelines(kept)
    os.replace(path + '.tmp', path)


class MetricWriter:
  def __init__(self, workdir: str, *, enabled: bool | None = None,
               resume_step: int | None = None):
    """`resume_step`: the step a run (re)starts from; metrics.jsonl's later records, written
    before an interruption, are dropped (the run writes those steps again)."""
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # Deferred: only process 0 needs it.
      os.makedirs(workdir, exist_ok=True)
      # purge_step: TensorBoard hides the earlier run's events from that step on.
      self._tb = SummaryWriter(workdir, flush_secs=30,
                               purge_step=None if resume_step is None else resume_step + 1)
      path = os.path.join(workdir, 'metrics.jsonl')
      if resume_step is not None:
        truncate_jsonl(path, resume_step)
      self._jsonl = open(path, 'a')

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
