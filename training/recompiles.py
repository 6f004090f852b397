"""Counts the XLA executables a block of code builds, so the train loop can prove its step compiled
once.

A step that recompiles (a batch with another shape or dtype, a Python value that should have been
an array) still trains correctly, only many times slower, so nothing else would notice it. JAX
lowers a function to XLA once per new executable, whether it then compiles it or loads it from the
persistent cache; a cache hit in the dispatch path lowers nothing. Counting lowerings in the
calling thread is therefore exactly "a new executable was needed here".
"""
import contextlib
import threading

from jax import monitoring

_LOWERING_EVENT = '/jax/core/compile/jaxpr_to_mlir_module_duration'
_counters = threading.local()
_listening = False


def _on_event(event: str, duration: float, **kwargs):
  del duration, kwargs
  counter = getattr(_counters, 'active', None)
  if event == _LOWERING_EVENT and counter is not None:
    counter.count += 1


class RecompileError(RuntimeError):
  pass


class Counter:
  count = 0


@contextlib.contextmanager
def count_lowerings():
  """`with count_lowerings() as c: f(x)` -> `c.count`: executables this thread built inside."""
  global _listening
  if not _listening:  # JAX's listeners cannot be removed; one is registered per process.
    monitoring.register_event_duration_secs_listener(_on_event)
    _listening = True
  counter, outer = Counter(), getattr(_counters, 'active', None)
  _counters.active = counter
  try:
    yield counter
  finally:
    _counters.active = outer


def _shapes(batch: dict) -> str:
  return ', '.join(f'{k} {x.dtype}{list(x.shape)}' for k, x in sorted(batch.items()))


@contextlib.contextmanager
def step_compiles_once(step: int, first_step: int, batch: dict):
  """Wraps the train step call of `step`; raises RecompileError if a step after `first_step + 1`
  (the call that compiles) built an executable."""
  with count_lowerings() as compiled:
    yield
  if step > first_step + 1 and compiled.count:
    raise RecompileError(
        f'the train step compiled again at step {step}: an input changed shape, dtype or '
        f'sharding since the step before (this batch: {_shapes(batch)}). Every step must see the '
        'same batch shapes (batches are dropped, not padded, at the end of the data) and get the '
        'state back as the step returned it; a recompiling step is many times slower.')
