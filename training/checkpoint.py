"""Checkpoints with orbax: the train state plus the data iterator's position, with an integrity
record.

Orbax writes each step into a temporary directory and renames it when complete, so a crash or a
kill mid-save never leaves a half-written step; `latest_step` only sees finished ones. Bytes can
still rot or be cut off afterwards (a full disk, a bad copy), and orbax then restores garbage or
fails deep inside. So once a save is complete, `integrity.json` (the sha256 of every file of the
step, written atomically) goes next to it, and a restore first checks the files against it. A
damaged checkpoint, or one whose parameters are not finite, is reported in one line and moved
aside as `<step>.corrupt` (never deleted), and the previous intact one is used.
"""
import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from training.errors import UserError

log = logging.getLogger('detseg')

_STATE_FIELDS = ('step', 'params', 'batch_stats', 'opt_state', 'rng')
INTEGRITY_FILE = 'integrity.json'


class CorruptCheckpointError(UserError):
  """A checkpoint whose files differ from its integrity record or hold non-finite numbers."""


def file_digests(step_dir: str) -> dict[str, str]:
  """{path relative to step_dir: sha256} of every file of a step but the integrity record."""
  digests = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel in (INTEGRITY_FILE, INTEGRITY_FILE + '.tmp'):
        continue
      h = hashlib.sha256()
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          h.update(block)
      digests[rel] = h.hexdigest()
  return digests


def write_integrity(step_dir: str):
  """Writes the integrity record atomically: a kill leaves either no record or a whole one."""
  digests = file_digests(step_dir)
  tmp = os.path.join(step_dir, INTEGRITY_FILE + '.tmp')
  with open(tmp, 'w') as f:
    json.dump({'sha256': digests}, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, INTEGRITY_FILE))


def integrity_problem(step_dir: str) -> str | None:
  """What is wrong with a step's files ('' if it has no record to check against), else None."""
  path = os.path.join(step_dir, INTEGRITY_FILE)
  if not os.path.exists(path):
    return ''
  try:
    with open(path) as f:
      want = json.load(f)['sha256']
  except (OSError, ValueError, KeyError):
    return f'its {INTEGRITY_FILE} is unreadable'
  got = file_digests(step_dir)
  for rel in sorted(want):
    if rel not in got:
      return f'{rel} is missing'
    if got[rel] != want[rel]:
      return f'{rel} differs from its sha256 in {INTEGRITY_FILE}'
  extra = sorted(set(got) - set(want))
  return f'{extra[0]} is not in {INTEGRITY_FILE}' if extra else None


def _non_finite(tree) -> str | None:
  """The path of the first floating-point leaf holding a NaN or an infinity, else None."""
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_data(0)
    # On the host: jnp would compile one isfinite program per leaf shape (seconds per model).
    if jnp.issubdtype(x.dtype, jnp.inexact) and not np.isfinite(np.asarray(x)).all():
      return jax.tree_util.keystr(path)
  return None


def _first_line(error: Exception) -> str:
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0] if lines else ""}'


class Checkpointer:
  def __init__(self, directory: str, *, max_to_keep: int = 3, finite: bool = True):
    """`finite`: a restored state must hold finite numbers (False for a population, whose
    diverged members are saved as they are)."""
    # Orbax's array writer rejects relative paths (at the first save, not here).
    self.directory = os.path.abspath(directory)
    self.finite = finite
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict | None):
    items = {f: getattr(state, f) for f in _STATE_FIELDS}
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(items), data=ocp.args.JsonSave(data_state or {})))
    self.manager.wait_until_finished()
    if jax.process_index() == 0:
      write_integrity(self.step_dir(step))

  def _missing(self, step: int) -> UserError:
    steps = ', '.join(map(str, self.steps())) or 'none'
    return UserError(f'no checkpoint step {step} in {self.directory}; steps there: {steps}')

  def _restore_step(self, state, step: int):
    """(state, data_state) of one step; CorruptCheckpointError if it is damaged."""
    problem = integrity_problem(self.step_dir(step))
    where = f'checkpoint {self.step_dir(step)}'
    if problem:
      raise CorruptCheckpointError(f'{where} is corrupt: {problem}')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          {f: getattr(state, f) for f in _STATE_FIELDS})
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - orbax raises many types; one line says which.
      if problem is None:  # Intact files: the checkpoint is fine, this config's state is not.
        raise UserError(f'{where} does not fit this config\'s model or optimizer '
                        f'({_first_line(e)}); resume with the config it was saved with, or use a '
                        'new --workdir') from e
      raise CorruptCheckpointError(f'{where} cannot be read ({_first_line(e)})') from e
    bad = self.finite and _non_finite(restored['state'])
    if bad:
      raise CorruptCheckpointError(f'{where} is corrupt: {bad} holds NaN or infinite values')
    return state.replace(**restored['state']), (restored['data'] or None)

  def restore(self, state, step: int | None = None):
    """Restores into the structure of `state`; returns (state, data_state) or None if empty.

    With `step`, that step or CorruptCheckpointError. Without, the latest intact step: damaged
    newer ones are reported and renamed `<step>.corrupt` (so that training can save that step
    again); CorruptCheckpointError if none is intact.
    """
    if step is not None:
      if step not in self.steps():
        raise self._missing(step)
      return self._restore_step(state, step)
    damaged = []
    for candidate in reversed(self.steps()):
      try:
        restored = self._restore_step(state, candidate)
      except CorruptCheckpointError as e:
        damaged.append(candidate)
        log.warning('%s; trying the previous checkpoint', e)
        continue
      if damaged:
        self._set_aside(damaged)
        log.warning('Resuming from step %d, the latest intact checkpoint in %s',
                    candidate, self.directory)
      return restored
    if damaged:
      raise CorruptCheckpointError(
          f'no intact checkpoint in {self.directory} (steps {", ".join(map(str, damaged))} are '
          'damaged, and kept); start over in a new --workdir')
    return None

  def _set_aside(self, steps):
    if jax.process_index() == 0:
      for step in steps:
        target = self.step_dir(step) + '.corrupt'
        suffix = 1
        while os.path.exists(target):
          target, suffix = f'{self.step_dir(step)}.corrupt{suffix}', suffix + 1
        os.rename(self.step_dir(step), target)
        log.warning('Kept the damaged checkpoint as %s', target)
    self.manager.close()
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)

  def restore_arrays(self, step: int | None = None):
    """The saved state fields ({'params': ..., 'batch_stats': ...}) as saved, with no target
    structure (to take parts of another model, e.g. its backbone); None if empty.

    Arrays come back on this process's first device whatever the device count that saved them.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    problem = integrity_problem(self.step_dir(step))
    if problem:
      raise CorruptCheckpointError(f'checkpoint {self.step_dir(step)} is corrupt: {problem}')
    state_dir = os.path.join(self.step_dir(step), 'state')
    saved = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
    return self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))['state']

  def close(self):
    self.manager.close()
