"""Hands host memory that the process freed back to the operating system."""
import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
  try:
    return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim
  except (OSError, AttributeError):  # Not glibc: nothing to do.
    return None


def release_freed_memory() -> None:
  """glibc keeps what XLA's compiler and one-off programs (parameter initialisation) freed in its
  heap, still counted in the process's resident memory; `malloc_trim(0)` returns it. For
  ResNet-50-FPN at 800x1344: 0.25 GB after initialising the parameters, 0.5 GB after compiling
  the train step (2026-12-06, 2-core box)."""
  trim = _malloc_trim()
  if trim is not None:
    trim(0)
