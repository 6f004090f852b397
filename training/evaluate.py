"""One pass over the eval split: task metrics plus overlay pictures; evaluating a workdir."""
import json
import os

import jax
import ml_collections
import numpy as np
import optax
import tqdm

import data
import tasks
from configs import loader
from training.checkpoint import Checkpointer, CorruptCheckpointError
from training.errors import UserError
from training.optim import make_optimizer
from training.state import example_batch, init_state
from training.step import jitted_eval_step


class Evaluator:
  """Compiles the eval step once; `run(variables, out_dir)` evaluates and writes overlays."""

  def __init__(self, task, config):
    self.task = task
    self.config = config
    self.eval_step = jitted_eval_step(task)

  def run(self, variables, out_dir: str | None = None, *, num_overlays: int = 0,
          progress: bool = True) -> dict:
    evaluator = self.task.make_evaluator()
    # Every host evaluates the whole split, so metrics need no cross-host reduction.
    batches = data.make_eval_batches(self.config.data, batch_size=self.config.eval_batch_size,
                                     targets=self.task.pixel_targets)
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


def checkpoint_dir(path: str) -> str:
  """The orbax checkpoint directory of `path`: a train.py workdir's checkpoints/, else `path`
  itself (e.g. a converted checkpoint written by tools/import_weights.py)."""
  workdir_checkpoints = os.path.join(path, 'checkpoints')
  return workdir_checkpoints if os.path.isdir(workdir_checkpoints) else path


def config_for(checkpoint: str, spec: str | None, overrides=()) -> ml_collections.ConfigDict:
  """The config file `spec` ('path.py[:args]') or, without one, the workdir's config.json."""
  if spec is None and not os.path.exists(os.path.join(checkpoint, 'config.json')):
    raise UserError(f'{checkpoint} is not a train.py workdir (no config.json); pass '
                            '--config CONFIG for the model it holds')
  return loader.override(loader.load(spec) if spec else load_config(checkpoint), overrides)


def load_variables(task, checkpoint: str, step: int | None = None) -> dict:
  """The model variables (params, batch_stats) of a workdir or checkpoint directory, checked
  against the shapes `task`'s model expects."""
  directory = os.path.abspath(checkpoint_dir(checkpoint))
  arrays = Checkpointer(directory).restore_arrays(step) if os.path.isdir(directory) else None
  if arrays is None:
    raise UserError(f'no checkpoint in {directory}; pass a train.py workdir or a '
                            'directory written by tools/import_weights.py')
  expected = jax.eval_shape(lambda: init_state(task, task.model, optax.identity(),
                                                jax.random.PRNGKey(0),
                                                example_batch(task.info)).variables)
  variables = {k: arrays[k] for k in expected if arrays.get(k) is not None}
  shape = lambda tree: jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)
  if shape(variables) != shape(dict(expected)):
    have = {jax.tree_util.keystr(p): tuple(a.shape)
            for p, a in jax.tree_util.tree_leaves_with_path(variables)}
    want = {jax.tree_util.keystr(p): tuple(a.shape)
            for p, a in jax.tree_util.tree_leaves_with_path(dict(expected))}
    diff = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
    raise UserError(f'{directory} does not fit the config\'s model: {len(diff)} parameters '
                     f'differ, e.g. {diff[:3]}; use the config the checkpoint was made with')
  return variables


def evaluate_checkpoint(config, checkpoint: str, out_dir: str, *, step: int | None = None,
                        num_overlays: int = 0) -> dict:
  """Evaluates the variables of `checkpoint` (a workdir or a checkpoint directory, no training
  state needed) with `config`; writes out_dir/metrics.json."""
  task = tasks.get_task(config)
  variables = load_variables(task, checkpoint, step)
  metrics = Evaluator(task, config).run(variables, out_dir, num_overlays=num_overlays)
  write_metrics(metrics, out_dir, -1 if step is None else step)
  return metrics
