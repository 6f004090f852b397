r"""Evaluates a workdir's latest checkpoint: eval/metrics.json and overlay PNGs.

  python eval.py --workdir runs/fcn8s [--step 1000] [--num_overlays 16]

The experiment config is read from the workdir's config.json (written by train.py).
"""
import json
import os

import jax
import ml_collections
from absl import app, flags
from absl import logging as absl_logging

import tasks
from training import compile_cache
from training.checkpoint import Checkpointer
from training.evaluate import Evaluator, write_metrics
from training.optim import make_optimizer
from training.state import example_batch, init_state

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A workdir written by train.py.')
flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
flags.DEFINE_integer('num_overlays', None, 'Overlay PNGs to write (default: config.num_overlays).')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} a workdir written by train.py?')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def evaluate_workdir(workdir: str, step: int | None = None, num_overlays: int | None = None):
  config = load_config(workdir)
  task = tasks.get_task(config)
  tx = make_optimizer(config.optimizer, config.total_steps)
  state = init_state(task, task.model, tx, jax.random.PRNGKey(config.seed),
                     example_batch(task.info))
  checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), 'checkpoints'))
  restored = checkpointer.restore(state, step)
  if restored is None:
    raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints; train first with train.py')
  state = restored[0]
  out_dir = os.path.join(workdir, 'eval')
  overlays = config.num_overlays if num_overlays is None else num_overlays
  metrics = Evaluator(task, config).run(state.variables, out_dir, num_overlays=overlays)
  write_metrics(metrics, out_dir, int(state.step))
  return metrics


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)
  compile_cache.enable()
  metrics = evaluate_workdir(FLAGS.workdir, FLAGS.step, FLAGS.num_overlays)
  print(json.dumps(metrics, indent=2))


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
