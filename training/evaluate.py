"""One pass over the eval split: task metrics plus overlay pictures; evaluating a workdir."""
import json
import os

import jax
import ml_collections
import numpy as np
import tqdm

import data
import tasks
from configs import loader
from training.checkpoint import Checkpointer, CorruptCheckpointError
from training.errors import UserError
from training.optim import make_optimizer
from training.state import example_batch, init_state
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


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise UserError(f'{path} not found: --workdir {workdir} is not a workdir written by '
                    'train.py; give one that is')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def evaluate_workdir(workdir: str, step: int | None = None, num_overlays: int | None = None, *,
                     overrides=(), out_dir: str | None = None):
  """Evaluates a checkpoint; `overrides` ('a.b=value') change test-time settings (e.g. the
  number of proposals) and `out_dir` (default <workdir>/eval) receives the results."""
  config = loader.override(load_config(workdir), overrides)
  checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), 'checkpoints'))
  step = checkpointer.latest_step() if step is None else step
  if step is None:
    raise UserError(f'no checkpoint in {workdir}/checkpoints; train first with train.py')
  if step not in checkpointer.steps():
    raise UserError(f'no checkpoint step {step} in {checkpointer.directory}; steps there: '
                    f'{", ".join(map(str, checkpointer.steps()))}')
  task = tasks.get_task(config)
  tx = make_optimizer(config.optimizer, config.total_steps)
  state = init_state(task, task.model, tx, jax.random.PRNGKey(config.seed),
                     example_batch(task.info))
  try:  # No fallback here: metrics must be those of the step asked for (or the latest).
    state = checkpointer.restore(state, step)[0]
  except CorruptCheckpointError as e:
    others = ', '.join(str(s) for s in checkpointer.steps() if s != step) or 'none'
    raise CorruptCheckpointError(f'{e}; not evaluating it. Other steps (--step): {others}') from e
  out_dir = out_dir or os.path.join(workdir, 'eval')
  overlays = config.num_overlays if num_overlays is None else num_overlays
  metrics = Evaluator(task, config).run(state.variables, out_dir, num_overlays=overlays)
  write_metrics(metrics, out_dir, int(state.step))
  return metrics
