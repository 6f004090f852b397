"""The training loop every trainer shares: steps, and when to log, checkpoint and evaluate.

`run_loop(run, config, first_step)` steps from `first_step + 1` to `config.total_steps` and calls
the `Run`'s hooks on the config's cadence: `log` every `log_every_steps`, `checkpoint` every
`checkpoint_every_steps`, `evaluate` every `eval_every_steps` (0: only at the end), all three at
the last step. Each step must compile once (`training/recompiles.py`).

`train_and_evaluate` (one config in one workdir; train.py's main) and
`training.population.train_population` (K members in one process) are its two users: each says
what a step, a log, a checkpoint and an evaluation mean for it.
"""
import logging
import math
import os
import time

import jax
import ml_collections
import numpy as np
import tqdm

import data
import tasks
from training import errors, pretrained, resume
from training.checkpoint import Checkpointer
from training.evaluate import Evaluator, scalar_metrics, write_metrics
from training.host_memory import release_freed_memory
from training.optim import make_optimizer
from training.parallel import DataParallel
from training.prefetch import DevicePrefetch
from training.recompiles import step_compiles_once
from training.state import example_batch, init_state
from training.step import compiled_train_step
from training.writers import MetricWriter

log = logging.getLogger('detseg')


class Run:
  """What one trainer does at each point of the loop; `run_loop` decides when."""

  def next_batch(self, step: int):
    """The host batch of `step` (its shapes are what the step-compiles-once check watches)."""
    raise NotImplementedError

  def step(self, step: int, batch) -> dict:
    """One training step on `batch`; returns its metrics (device arrays)."""
    raise NotImplementedError

  def log(self, step: int, history: list) -> dict | None:
    """Summarises the metrics of the steps since the last log; may return a progress postfix."""
    raise NotImplementedError

  def after_log(self, step: int, is_last: bool) -> None:
    """Runs every step after the log point, before the checkpoint (population: PBT)."""

  def checkpoint(self, step: int, metrics: dict) -> None:
    raise NotImplementedError

  def evaluate(self, step: int, is_last: bool) -> None:
    raise NotImplementedError


def run_loop(run: Run, config, first_step: int, *, progress: bool = False) -> None:
  history = []
  bar = tqdm.tqdm(total=config.total_steps, initial=first_step, disable=not progress,
                  desc='train', dynamic_ncols=True)
  for step in range(first_step + 1, config.total_steps + 1):
    batch = run.next_batch(step)
    with step_compiles_once(step, first_step, batch):
      metrics = run.step(step, batch)
    if step == first_step + 1:  # What the first step's compiles freed (a population's).
      release_freed_memory()
    history.append(metrics)
    bar.update(1)

    is_last = step == config.total_steps
    if step % config.log_every_steps == 0 or is_last:
      postfix = run.log(step, history)
      if postfix:
        bar.set_postfix(postfix)
      history = []

    run.after_log(step, is_last)

    if step % config.checkpoint_every_steps == 0 or is_last:
      run.checkpoint(step, metrics)

    if (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last:
      run.evaluate(step, is_last)
  bar.close()


class NonFiniteLossError(errors.UserError):
  """Training diverged: reported as one line with advice (training/resume.py), exit code 2."""


def _check_finite(metrics: dict, step: int, last_good_step, workdir: str):
  bad = [k for k in ('loss', 'param_norm') if not math.isfinite(float(metrics[k]))]
  if bad:
    raise NonFiniteLossError(resume.nonfinite_message(
        " and ".join(bad), float(metrics[bad[0]]), step, last_good_step, workdir))


def _mean_metrics(history: list) -> dict:
  stacked = jax.device_get(history)
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


class _SingleRun(Run):
  """One config in one workdir, data parallel over `parallel`'s devices."""

  def __init__(self, config, workdir, parallel, state, train_iter, train_step, checkpointer,
               evaluator, writer, first_step, last_good_step, progress):
    self.config, self.workdir, self.parallel = config, workdir, parallel
    self.state, self.train_iter, self.train_step = state, train_iter, train_step
    self.checkpointer, self.evaluator, self.writer = checkpointer, evaluator, writer
    self.first_step, self.last_good_step, self.progress = first_step, last_good_step, progress
    self.eval_metrics = {}
    # Speeds count only the steps after the compiling one, and neither saving nor evaluating.
    self.train_start, self.timed_steps = time.perf_counter(), 0

  def next_batch(self, step):
    return next(self.train_iter)  # Already on the devices (DevicePrefetch).

  def step(self, step, batch):
    step_start = time.perf_counter()
    first = step == self.first_step + 1
    if first and self.parallel.mode == 'jit':
      # Compile before the first call and hand the compiler's freed heap back before the step
      # allocates its buffers: both at once were the process's peak memory (R50-FPN at 800x1344:
      # 0.5 GB of the compiler's on top of the step's 2 GB). The call reuses this executable
      # (pmap's calls would not: pmap compiles in its first call).
      self.train_step.lower(self.state, batch).compile()
      release_freed_memory()
    self.state, metrics = self.train_step(self.state, batch)
    if first:  # Report the compiling step apart from step time.
      jax.block_until_ready(metrics)
      self.writer.write_scalars(step, {'compile_time_s': time.perf_counter() - step_start})
      self.train_start = time.perf_counter()
    else:
      self.timed_steps += 1
    return metrics

  def _restart_clock(self):
    self.train_start, self.timed_steps = time.perf_counter(), 0

  def log(self, step, history):
    summary = _mean_metrics([self.parallel.metrics_to_host(m) for m in history])
    _check_finite(summary, step, self.last_good_step, self.workdir)
    if self.timed_steps:  # None in the summary of the compiling step alone.
      summary['steps_per_s'] = self.timed_steps / max(time.perf_counter() - self.train_start, 1e-9)
      summary['images_per_s'] = summary['steps_per_s'] * self.config.batch_size
    self.writer.write_scalars(step, summary, prefix='train/')
    self._restart_clock()
    return {'loss': f'{summary["loss"]:.4f}'}

  def checkpoint(self, step, metrics):
    # Never save a diverged state: check this very step's metrics before writing.
    _check_finite(self.parallel.metrics_to_host(metrics), step, self.last_good_step, self.workdir)
    self.checkpointer.save(step, self.parallel.get_state(self.state), self.train_iter.get_state())
    self.last_good_step = step
    self._restart_clock()

  def evaluate(self, step, is_last):
    config, parallel = self.config, self.parallel
    self.eval_metrics = self.evaluator.run(
        parallel.host_local(parallel.get_state(self.state).variables),
        os.path.join(self.workdir, 'eval'),
        num_overlays=config.num_overlays if is_last else 0, progress=self.progress)
    self.writer.write_scalars(step, scalar_metrics(self.eval_metrics), prefix='eval/')
    if is_last and jax.process_index() == 0:
      write_metrics(self.eval_metrics, os.path.join(self.workdir, 'eval'), step)
    self._restart_clock()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       progress: bool = False, devices=None, allow_config_change: bool = False):
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns (state, metrics).

  A resume whose config changes more than training/resume.py allows is refused (UserError)
  unless `allow_config_change`."""
  with errors.user_input():  # Unknown names and bad sizes in the config: the user's mistakes.
    task = tasks.get_task(config)  # Unknown task/model/dataset names fail here, listing them.
    parallel = DataParallel(config.parallel, devices)
    parallel.check_batch_size(config.batch_size, config.get('microbatches', 1))
    tx = make_optimizer(config.optimizer, config.total_steps,
                        frozen=pretrained.frozen_modules(config))
  resume.prepare_workdir(config, workdir, allow_change=allow_config_change,
                         write=jax.process_index() == 0)

  data.ensure_prepared(config.data)
  train_iter = data.make_train_iterator(
      config.data, global_batch_size=config.batch_size, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      targets=task.pixel_targets)
  model = task.build_model(bn_axis_name=parallel.axis_name)
  state = init_state(task, model, tx, jax.random.PRNGKey(config.seed), example_batch(task.info))

  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'),
                              max_to_keep=config.max_checkpoints)
  restored = checkpointer.restore(state)
  if restored is not None:
    state, data_state = restored
    if data_state:
      train_iter.set_state(data_state)
    log.info('Resumed from step %d in %s', int(state.step), workdir)
  elif config.get('init', {}).get('checkpoint'):
    state = pretrained.load_backbone(state, config.init.checkpoint)
    log.info('Backbone loaded from %s', config.init.checkpoint)
  last_good_step = checkpointer.latest_step()

  train_iter = DevicePrefetch(train_iter, parallel.put_batch, config.data.get('device_prefetch', 2))
  with errors.user_input():  # XLA options it does not know: one line.
    train_step = compiled_train_step(task, parallel, config)
    evaluator = Evaluator(task, config)
  state = parallel.put_state(state)
  first_step = int(parallel.get_state(state).step)
  writer = MetricWriter(workdir, resume_step=first_step)
  run = _SingleRun(config, workdir, parallel, state, train_iter, train_step, checkpointer,
                   evaluator, writer, first_step, last_good_step, progress)
  try:
    run_loop(run, config, first_step, progress=progress)
  finally:  # Also on a NaN stop: grain's worker processes and their shared memory go with it.
    train_iter.close()
  writer.close()
  checkpointer.close()
  return parallel.get_state(run.state), run.eval_metrics
