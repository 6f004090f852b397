r"""Generic trainer for every task.

  python train.py --config configs/seg/fcn8s_shapes.py --workdir runs/fcn8s \
      [--config.optimizer.learning_rate=1e-3 ...]

The workdir receives config.json, checkpoints/, TensorBoard events, metrics.jsonl and eval/.
Running again with the same workdir resumes from the latest checkpoint (model, optimizer, step,
RNG and data iterator position), so a killed run continues exactly where it was.

Multi-host: start one process per host with `--distributed` (on SLURM or Cloud TPU JAX finds the
others itself) or with `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`; each
reads its own shard of the data and `config.batch_size` stays the global batch size.
"""
import json
import logging
import math
import os
import time

import jax
import ml_collections
import numpy as np
import tqdm
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

import data
import tasks
from training import compile_cache, errors, pretrained, resume
from training.checkpoint import Checkpointer
from training.evaluate import Evaluator, scalar_metrics, write_metrics
from training.optim import make_optimizer
from training.parallel import DataParallel, initialize_distributed
from training.recompiles import step_compiles_once
from training.state import example_batch, init_state
from training.step import make_train_step
from training.writers import MetricWriter

FLAGS = flags.FLAGS
log = logging.getLogger('detseg')
config_flags.DEFINE_config_file('config', None, 'Experiment config file (path[:args]).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and pictures.')
flags.DEFINE_bool('progress', True, 'Show a tqdm progress bar.')
flags.DEFINE_bool('distributed', False, 'Multi-host: call jax.distributed.initialize (implied by '
                  '--coordinator_address).')
flags.DEFINE_string('coordinator_address', None, 'Multi-host: HOST:PORT of process 0.')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process, 0..num_processes-1.')
flags.DEFINE_bool('allow_config_change', False, 'Resume a workdir\'s checkpoints although the '
                  'config changes fields outside training/resume.py:RESUMABLE.')


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       progress: bool = False, devices=None, allow_config_change: bool = False):
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns (state, metrics).

  A resume whose config changes more than training/resume.py allows is refused (UserError)
  unless `allow_config_change`."""
  with errors.user_input():  # Unknown names and bad sizes in the config: the user's mistakes.
    task = tasks.get_task(config)  # Unknown task/model/dataset names fail here, listing them.
    parallel = DataParallel(config.parallel, devices)
    parallel.check_batch_size(config.batch_size)
    tx = make_optimizer(config.optimizer, config.total_steps,
                        frozen=pretrained.frozen_modules(config))
  resume.prepare_workdir(config, workdir, allow_change=allow_config_change,
                         write=jax.process_index() == 0)

  data.ensure_prepared(config.data)
  train_iter = data.make_train_iterator(
      config.data, global_batch_size=config.batch_size, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
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

  train_step = parallel.compile_train_step(make_train_step(task, parallel.axis_name))
  evaluator = Evaluator(task, config)
  state = parallel.put_state(state)
  first_step = int(parallel.get_state(state).step)
  writer = MetricWriter(workdir, resume_step=first_step)
  history, eval_metrics = [], {}
  train_start, timed_steps = time.perf_counter(), 0
  bar = tqdm.tqdm(total=config.total_steps, initial=first_step, disable=not progress,
                  desc='train', dynamic_ncols=True)
  for step in range(first_step + 1, config.total_steps + 1):
    batch = parallel.put_batch(next(train_iter))
    step_start = time.perf_counter()
    with step_compiles_once(step, first_step, batch):
      state, metrics = train_step(state, batch)
    history.append(metrics)
    if step == first_step + 1:  # The first call compiles; report it apart from step time.
      jax.block_until_ready(metrics)
      writer.write_scalars(step, {'compile_time_s': time.perf_counter() - step_start})
      train_start = time.perf_counter()
    else:
      timed_steps += 1
    bar.update(1)

    is_last = step == config.total_steps
    if step % config.log_every_steps == 0 or is_last:
      summary = _mean_metrics([parallel.metrics_to_host(m) for m in history])
      _check_finite(summary, step, last_good_step, workdir)
      if timed_steps:  # Speeds only from steps after the compiling one (none in its summary).
        summary['steps_per_s'] = timed_steps / max(time.perf_counter() - train_start, 1e-9)
        summary['images_per_s'] = summary['steps_per_s'] * config.batch_size
      writer.write_scalars(step, summary, prefix='train/')
      bar.set_postfix(loss=f'{summary["loss"]:.4f}')
      history, train_start, timed_steps = [], time.perf_counter(), 0

    if step % config.checkpoint_every_steps == 0 or is_last:
      # Never save a diverged state: check this very step's metrics before writing.
      _check_finite(parallel.metrics_to_host(metrics), step, last_good_step, workdir)
      checkpointer.save(step, parallel.get_state(state), train_iter.get_state())
      last_good_step = step
      train_start, timed_steps = time.perf_counter(), 0  # Saving is not step time.

    if (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last:
      eval_metrics = evaluator.run(
          parallel.host_local(parallel.get_state(state).variables), os.path.join(workdir, 'eval'),
          num_overlays=config.num_overlays if is_last else 0, progress=progress)
      writer.write_scalars(step, scalar_metrics(eval_metrics), prefix='eval/')
      train_start, timed_steps = time.perf_counter(), 0  # Nor is evaluating.
      if is_last and jax.process_index() == 0:
        write_metrics(eval_metrics, os.path.join(workdir, 'eval'), step)
  bar.close()
  writer.close()
  checkpointer.close()
  return parallel.get_state(state), eval_metrics


def main(argv):
  del argv
  # Our own progress lines at INFO; the libraries' (orbax, tfds) only from WARNING up.
  absl_logging.set_verbosity(absl_logging.WARNING)
  log.setLevel(logging.INFO)
  if FLAGS.distributed or FLAGS.coordinator_address:
    initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  compile_cache.enable()
  metrics = train_and_evaluate(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress,
                               allow_config_change=FLAGS.allow_config_change)[1]
  if metrics:
    print(json.dumps(scalar_metrics(metrics), indent=2))


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  errors.run(main)
