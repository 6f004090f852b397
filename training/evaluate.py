"""One pass over the eval split: task metrics plus overlay pictures."""
import json
import os

import jax
import numpy as np
import tqdm

import data
from training.step import make_eval_step


class Evaluator:
  """Compiles the eval step once; `run(variables, out_dir)` evaluates and writes overlays."""

  def __init__(self, task, config):
    self.task = task
    self.config = config
    self.eval_step = jax.jit(make_eval_step(task))

  def run(self, variables, out_dir: str | None = None, *, num_overlays: int = 0,
          progress: bool = True) -> dict:
    evaluator = self.task.make_evaluator()
    # Every host evaluates the whole split, so metrics need no cross-host reduction.
    batches = data.make_eval_batches(self.config.data, batch_size=self.config.eval_batch_size)
    written = 0
    if out_dir and num_overlays:
      os.makedirs(out_dir, exist_ok=True)
    for batch in tqdm.tqdm(batches, desc='eval', disable=not progress, leave=False):
      predictions = jax.device_get(self.eval_step(variables, batch))
      evaluator.add(batch, predictions)
      if out_dir and written < num_overlays:
        written += self.task.visualize(batch, predictions, out_dir,
                                       max_images=num_overlays - written, start=written)
    return evaluator.result()


def write_metrics(metrics: dict, out_dir: str, step: int):
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump({'step': int(step), **metrics}, f, indent=2)


def scalar_metrics(metrics: dict) -> dict:
  """The scalar entries of a metrics dict (for TensorBoard)."""
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}
