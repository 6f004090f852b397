"""Checkpoints with orbax: the train state plus the data iterator's position.

Orbax writes each step into a temporary directory and renames it when complete, so a crash or a
kill mid-save never corrupts the last good checkpoint; `latest_step` only sees finished ones.
"""
import os

import jax
import orbax.checkpoint as ocp

_STATE_FIELDS = ('step', 'params', 'batch_stats', 'opt_state', 'rng')


class Checkpointer:
  def __init__(self, directory: str, *, max_to_keep: int = 3):
    # Orbax's array writer rejects relative paths (at the first save, not here).
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory), options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict | None):
    items = {f: getattr(state, f) for f in _STATE_FIELDS}
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(items), data=ocp.args.JsonSave(data_state or {})))
    self.manager.wait_until_finished()

  def restore(self, state, step: int | None = None):
    """Restores into the structure of `state`; returns (state, data_state) or None if empty."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          {f: getattr(state, f) for f in _STATE_FIELDS})
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return state.replace(**restored['state']), (restored['data'] or None)

  def restore_arrays(self, step: int | None = None):
    """The saved state fields ({'params': ..., 'batch_stats': ...}) as saved, with no target
    structure (to take parts of another model, e.g. its backbone); None if empty."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    return self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))['state']

  def close(self):
    self.manager.close()
