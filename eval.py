r"""Evaluates a workdir's latest checkpoint: eval/metrics.json and overlay PNGs.

  python eval.py --workdir runs/fcn8s [--step 1000] [--num_overlays 16] [--out_dir DIR]

The experiment config is read from the workdir's config.json (written by train.py). Results go
to <workdir>/eval unless --out_dir names another directory. A checkpoint whose files fail their
integrity record is refused (exit code 2), never evaluated.
"""
import json

from absl import flags
from absl import logging as absl_logging

from training import compile_cache, errors
from training.evaluate import evaluate_workdir

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A workdir written by train.py.')
flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
flags.DEFINE_integer('num_overlays', None, 'Overlay PNGs to write (default: config.num_overlays).')
flags.DEFINE_string('out_dir', None, 'Directory for metrics.json and overlays (default: '
                    '<workdir>/eval).')


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)
  compile_cache.enable()
  metrics = evaluate_workdir(FLAGS.workdir, FLAGS.step, FLAGS.num_overlays, out_dir=FLAGS.out_dir)
  print(json.dumps(metrics, indent=2))


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir'])
  errors.run(main)
