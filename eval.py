r"""Evaluates a workdir's latest checkpoint: eval/metrics.json and overlay PNGs.

  python eval.py --workdir runs/fcn8s [--step 1000] [--num_overlays 16]
  python eval.py --config CONFIG --checkpoint DIR [--config.x=y ...]

The experiment config is read from the workdir's config.json (written by train.py). With
--checkpoint (a workdir, or a checkpoint directory such as tools/import_weights.py writes), only
the model variables are read, with --config (default: the workdir's config.json); the results go
to DIR/eval.
"""
import json
import os

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from training import compile_cache
from training.evaluate import config_for, evaluate_checkpoint, evaluate_workdir

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A workdir written by train.py.')
flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
flags.DEFINE_integer('num_overlays', None, 'Overlay PNGs to write (default: config.num_overlays).')
flags.DEFINE_string('checkpoint', None, 'Instead of --workdir: a workdir or checkpoint directory '
                    'whose model variables are evaluated with --config.')
config_flags.DEFINE_config_file('config', None, 'With --checkpoint: the experiment config '
                                '(path[:args]); default: the workdir\'s config.json.',
                                lock_config=True)


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)
  compile_cache.enable()
  if FLAGS.checkpoint:
    config = FLAGS.config or config_for(FLAGS.checkpoint, None)
    overlays = config.num_overlays if FLAGS.num_overlays is None else FLAGS.num_overlays
    metrics = evaluate_checkpoint(config, FLAGS.checkpoint, os.path.join(FLAGS.checkpoint, 'eval'),
                                  step=FLAGS.step, num_overlays=overlays)
  elif FLAGS.workdir:
    metrics = evaluate_workdir(FLAGS.workdir, FLAGS.step, FLAGS.num_overlays)
  else:
    raise app.UsageError('pass --workdir WORKDIR, or --checkpoint DIR [--config CONFIG]')
  print(json.dumps(metrics, indent=2))


if __name__ == '__main__':
  app.run(main)
