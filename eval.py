r"""Evaluates a checkpoint: metrics.json and overlay PNGs.

  python eval.py --workdir runs/fcn8s [--step 1000] [--num_overlays 16] [--out_dir DIR]
  python eval.py --config CONFIG --checkpoint DIR [--config.x=y ...] [--out_dir DIR]

With --workdir the experiment config is read from the workdir's config.json (written by train.py)
and results go to <workdir>/eval. With --checkpoint (a workdir, or a checkpoint directory such as
tools/import_weights.py writes) only the model variables are read, with --config (default: the
workdir's config.json), and results go to DIR/eval. --out_dir names another directory for either.
A checkpoint whose files fail their integrity record is refused (exit code 2), never evaluated.
"""
import json
import os

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from training import compile_cache, errors
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
flags.DEFINE_string('out_dir', None, 'Directory for metrics.json and overlays (default: '
                    '<workdir>/eval, or <checkpoint>/eval).')


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)
  compile_cache.enable()
  if FLAGS.checkpoint:
    config = FLAGS.config or config_for(FLAGS.checkpoint, None)
    overlays = config.num_overlays if FLAGS.num_overlays is None else FLAGS.num_overlays
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.checkpoint, 'eval')
    metrics = evaluate_checkpoint(config, FLAGS.checkpoint, out_dir, step=FLAGS.step,
                                  num_overlays=overlays)
  elif FLAGS.workdir:
    metrics = evaluate_workdir(FLAGS.workdir, FLAGS.step, FLAGS.num_overlays,
                               out_dir=FLAGS.out_dir)
  else:
    raise errors.UserError('nothing to evaluate: pass --workdir WORKDIR, or --checkpoint DIR '
                           '[--config CONFIG]')
  print(json.dumps(metrics, indent=2))


if __name__ == '__main__':
  errors.run(main)
