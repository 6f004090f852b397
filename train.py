r"""Generic trainer for every task (the loop itself: training/loop.py).

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

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from training import compile_cache, errors
from training.evaluate import scalar_metrics
from training.loop import train_and_evaluate
from training.parallel import initialize_distributed

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
