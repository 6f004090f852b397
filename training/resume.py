"""What a rerun in an existing workdir may change, checked before anything is written.

A workdir's checkpoints belong to the config in its `config.json`. Resuming them with another
model, optimizer or data would fail deep inside orbax (a different state structure) or, worse,
quietly train a different experiment under the old name. So a resume compares the new config with
`config.json` field by field: the fields in RESUMABLE (run length, cadences, where data lives,
input speed, XLA's options) may change; any other change is refused with the list of changed
fields, unless the user forces it (`--allow_config_change`; the old config is kept as
`config.previous.json`).
"""
import json
import os

import ml_collections
from flax import traverse_util

from training.errors import UserError

CONFIG_FILE = 'config.json'
DIVERGED = 'training diverged'  # How the NaN stop's message starts (tools/sweep.py looks for it).
FORCE_FLAG = '--allow_config_change'

# Fields (or groups of fields) a resumed run may change: how long it runs, how often it logs,
# evaluates and saves, how much it draws, where the data lives, how fast it is read, how XLA
# compiles the step and in how many slices it runs (the memory it needs). Everything else defines
# the run.
RESUMABLE = frozenset({
    'total_steps', 'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
    'max_checkpoints', 'num_overlays', 'eval_batch_size', 'parallel', 'xla_options',
    'eval_xla_options', 'microbatches',
    'data.data_dir', 'data.manual_dir', 'data.worker_count', 'data.read_threads',
    'data.prefetch_batches', 'data.device_prefetch',
})


def _flat(config: dict) -> dict:
  return traverse_util.flatten_dict(config, sep='.')


def _resumable(field: str) -> bool:
  """The field, or a group it belongs to ('xla_options' for 'xla_options.x'), is in RESUMABLE."""
  parts = field.split('.')
  return any('.'.join(parts[:n]) in RESUMABLE for n in range(1, len(parts) + 1))


def config_changes(old: dict, new: dict) -> list[str]:
  """'field: old -> new' for every non-resumable field that differs (absent fields too)."""
  old, new = _flat(old), _flat(new)
  missing = '(absent)'
  return [f'{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}'
          for k in sorted(set(old) | set(new))
          if not _resumable(k) and old.get(k, missing) != new.get(k, missing)]


def has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _check_writable(workdir: str):
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir {workdir} is a file, not a directory; give a new directory or '
                    'a workdir written by train.py')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create --workdir {workdir} ({e.strerror}); give a path where you '
                    'can write') from e
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise UserError(f'--workdir {workdir} is not writable; give a directory you can write to')


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str, *,
                    allow_change: bool = False, write: bool = True):
  """Checks that `workdir` can hold this run, then writes its config.json (if `write`).

  When the workdir already has checkpoints, a config that changes fields outside RESUMABLE is
  refused (UserError listing them) unless `allow_change`; nothing is written before the check.
  """
  _check_writable(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config.to_json_best_effort())
  if os.path.exists(path) and has_checkpoints(workdir):
    with open(path) as f:
      old = json.load(f)
    changes = config_changes(old, new)
    if changes and not allow_change:
      raise UserError(
          f'{workdir} holds checkpoints of another config; changed: {"; ".join(changes)}. '
          f'Use a new --workdir to start a new run, or rerun with {FORCE_FLAG} to resume these '
          'checkpoints with the new values')
    if changes and write:
      os.replace(path, os.path.join(workdir, 'config.previous.json'))
  if write:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, path)


def nonfinite_message(what: str, value: float, step: int, last_checkpoint, workdir: str) -> str:
  """The NaN stop's message: where the run stands and advice that works with the resume check."""
  fixes = ('--config.optimizer.learning_rate=<lower> or --config.optimizer.grad_clip_norm=1.0, '
           'or check the data for broken labels')
  if last_checkpoint is None:
    return (f'{DIVERGED}: {what} became {value} at step {step}. No checkpoint was saved yet '
            f'(fresh run), so there is nothing to resume: start again with {fixes}.')
  return (f'{DIVERGED}: {what} became {value} at step {step}. The last checkpoint is '
          f'step {last_checkpoint} in {os.path.join(workdir, "checkpoints")}. To resume from it, '
          f'rerun with {fixes}, adding {FORCE_FLAG}; or start over in a new --workdir.')
