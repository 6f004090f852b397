"""The train pipeline's grain worker processes: how many, what runs in them, how their batches
reach the main process, and an iterator state that is the same with any worker count."""
import ctypes
import ctypes.util
import math
import os
import platform
import threading
from multiprocessing import shared_memory

import cv2
import grain.python as grain
import numpy as np

from data.source import config_field as _get


class TrainIterator:
  """grain's train iterator with a state that does not depend on the worker count: a checkpoint
  resumes with another `data.worker_count` or on a machine with other cores (grain's own state
  is one form in-process and another per worker count: its set_state failed with a KeyError)."""

  def __init__(self, iterator, workers: int, reader: 'SlotReader | None' = None):
    self._iterator, self._workers, self._batches, self._reader = iterator, workers, 0, reader

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = next(self._iterator)
    self._batches += 1
    return batch

  def get_state(self) -> dict:
    return {'batches': self._batches}

  def set_state(self, state: dict) -> None:
    n = _batches_read(state)
    if not self._workers:
      self._iterator.set_state({'next_index': n})
    else:  # grain's interleave of W workers; worker i reads batches i, i + W, ... of the stream.
      w = self._workers
      self._iterator.set_state(dict(
          next_index_in_cycle=n % w, next_index_in_datasets=w,
          iterators_in_use_indices=list(range(w)),
          iterators_in_use_states=[{'next_index': len(range(i, n, w))} for i in range(w)],
          exhausted=[0] * w, future_states={}))
    self._batches = n

  def slot_stats(self) -> dict:
    """The shared-memory slots mapped so far, and the batches that came through them."""
    if self._reader is None:
      return dict(slots=0, from_slots=0)
    return dict(slots=len(self._reader.mapped), from_slots=self._reader.from_slots)

  def close(self) -> None:
    """Stops the worker processes (if any) and frees their shared memory."""
    self._iterator.close()
    if self._reader is not None:
      self._reader.close()


def _batches_read(state: dict) -> int:
  """The batches read before `state`: ours, or grain's (checkpoints written before ours)."""
  if 'batches' in state:
    return int(state['batches'])
  if 'next_index' in state:  # In-process.
    return int(state['next_index'])
  return sum(int(s['next_index']) for s in state['iterators_in_use_states'])  # Workers.


# worker_count -1 starts one worker per core from this many cores up. At 800x1333 on the 2-core
# dev box, 2 workers now read at least as fast as in-process, at less CPU per image (15-17 vs 16-21
# ms; BENCHMARKS.md "Input pipeline", fourth session: slots reused, freed memory kept), so the
# pipeline alone would pick workers from 2 cores. The threshold stays at 4 because 2-core machines
# here run the test suite, whose tests leave worker_count at -1 and would each start processes (a
# few seconds per iterator), and the demo, where workers add ~3 s and memory for no speed (128x128
# images). From 3 cores workers should win (estimated, not measured on such a machine).
MIN_CORES_FOR_WORKERS = 4


def worker_count(cfg) -> int:
  """The train pipeline's grain worker processes: `data.worker_count`; -1 = one per core from
  MIN_CORES_FOR_WORKERS cores up, else none (in-process threads)."""
  workers = int(_get(cfg, 'worker_count', 0))
  if workers < 0:
    cores = len(os.sched_getaffinity(0))
    workers = cores if cores >= MIN_CORES_FOR_WORKERS else 0
  return workers


# None in the main process; in grain's worker processes their slot pool, or True where slots are
# not reused (set by init_worker).
_in_worker = None

# Shared-memory slots each worker reuses for its batches. Filling fresh shared memory costs a page
# fault per 4 KiB (~10 ms of CPU per 6.4 MB batch of 2 at 800x1333 on the dev box; grain creates a
# segment per array per batch), refilling a mapped one ~0.3 ms. A slot is held from the stack until
# the main process's copy-out: the worker's read-ahead (`data.prefetch_batches`), grain's queue and
# the main process's interleave buffer hold up to ~prefetch_batches + 5 batches per worker; past
# POOL_SLOTS held a batch takes grain's fresh segments (correct, only slower).
POOL_SLOTS = 16
_ALIGN = 64  # Bytes; each array of a slot starts at a multiple.
_SHM_DIR = '/dev/shm'  # Where Linux keeps POSIX shared memory by name.
# Whether workers reuse slots. The main process clears a slot's flag after its copy-out has read
# the slot, and a worker writes a slot only after it has read the flag clear: both are a load
# followed by a store, which x86-64 never reorders as other cores see them (and a store becomes
# visible only once the earlier loads are done), so the worker cannot overwrite a batch that is
# still being copied. Weaker orderings (ARM) would need a fence that Python lacks: they keep
# grain's fresh segments.
_REUSE_SLOTS = platform.machine() in ('x86_64', 'AMD64')


def _segment_prefix(token: str) -> str:
  return f'detseg_{token}_'


class SlotBatch:
  """A worker's batch in one of its pool's slots: what crosses to the main process (a few hundred
  bytes pickled). `arrays` holds (key, byte offset, shape, dtype) per array."""

  def __init__(self, slot: str, arrays: tuple):
    self.slot, self.arrays = slot, arrays


class _Pool:
  """A worker's slots: shared-memory segments each holding one batch after a header whose first
  byte is 1 while the batch is in flight; the main process sets it to 0 once it has copied the
  batch out. A batch grain drops (set_state discards stale batches) keeps its slot; past
  POOL_SLOTS held, batches take grain's fresh segments."""

  def __init__(self, prefix: str):
    self._prefix, self._slots = prefix, []
    self._lock = threading.Lock()  # grain's read threads stack batches concurrently.

  def stack(self, elements: list[dict]) -> SlotBatch | None:
    """Stacks `elements` into a free slot; None when all POOL_SLOTS are held."""
    arrays, size = [], _ALIGN  # The header.
    for k, a in elements[0].items():
      shape = (len(elements), *a.shape)
      arrays.append((k, size, shape, a.dtype.str))
      size += -(-math.prod(shape) * a.dtype.itemsize // _ALIGN) * _ALIGN
    with self._lock:
      # The main process clears a flag after its copy-out has read the slot (SlotReader), and
      # this load of it comes before the writes below (_REUSE_SLOTS: the order other cores see).
      slot = next((s for s in self._slots if not s.buf[0] and s.size >= size), None)
      if slot is None:
        if len(self._slots) == POOL_SLOTS:
          return None
        slot = shared_memory.SharedMemory(f'{self._prefix}{len(self._slots)}', create=True,
                                          size=size)
        self._slots.append(slot)
      slot.buf[0] = 1
    for k, offset, shape, dtype in arrays:
      np.stack([e[k] for e in elements], out=np.ndarray(shape, dtype, slot.buf, offset))
    return SlotBatch(slot.name, tuple(arrays))


def init_worker(index: int, count: int, token: str) -> None:
  """Runs first in each grain worker process; `token` names the iterator's segments."""
  del count
  global _in_worker
  _in_worker = _Pool(f'{_segment_prefix(token)}w{index}_') if _REUSE_SLOTS else True
  # One OpenCV thread: the workers already fill the cores; cv2's pool (one thread per core in
  # every worker) only contends with them.
  cv2.setNumThreads(1)
  _keep_freed_memory()


def _keep_freed_memory() -> None:
  """Has glibc's malloc keep the memory a worker frees. By default it returns blocks above its
  mmap threshold, and heap tops above its trim threshold, to the kernel, so every image's
  few-MB arrays (decoded image, resized canvas, ...) faulted their pages in afresh: ~1450 faults
  per 800x1333 image in 2 workers, 100-135 with this, and 15.9 instead of 21.2 ms of CPU per image
  (BENCHMARKS.md "Input pipeline", fourth session). A worker's RSS stays at its peak working set."""
  if platform.libc_ver()[0] != 'glibc':
    return
  mallopt = ctypes.CDLL(ctypes.util.find_library('c')).mallopt
  mallopt(_M_TRIM_THRESHOLD, 1 << 30)
  mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest (HEAP_MAX_SIZE / 2 on 64 bits).


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h.


def stack(elements: list[dict]) -> dict | SlotBatch:
  """The batch of `elements` (grain's batch). In a worker process it is stacked straight into
  shared memory that grain passes to the main process as it is: a slot of the worker's pool, or
  else grain's segments (a private batch would be copied there once more by grain)."""
  if isinstance(_in_worker, _Pool) and (batch := _in_worker.stack(elements)) is not None:
    return batch

  def one(*arrays):
    if not _in_worker or not arrays[0].size:
      return np.stack(arrays)
    return np.stack(arrays, out=grain.SharedMemoryArray((len(arrays), *arrays[0].shape),
                                                        arrays[0].dtype))
  return {k: one(*(e[k] for e in elements)) for k in elements[0]}


class SlotReader:
  """The main process's side of the workers' batches: copies each out into ordinary arrays and
  frees its slot. jax on CPU keeps the arrays it is given (zero-copy), so a batch must not alias
  a slot that its worker will refill, nor grain's segments, freed when their arrays are deleted
  (those alive at exit were never freed: 'leaked shared_memory objects' at the end of `make
  demo')."""

  def __init__(self, token: str):
    self._prefix, self._open = _segment_prefix(token), {}  # Segment name -> its SharedMemory.
    self.from_slots = 0  # Batches copied out of slots (the others came in grain's segments).

  def __call__(self, batch: dict | SlotBatch) -> dict:
    if not isinstance(batch, SlotBatch):
      return {k: np.array(v) for k, v in batch.items()}
    slot = self._segment(batch.slot)
    out = {k: np.ndarray(shape, dtype, slot.buf, offset).copy()
           for k, offset, shape, dtype in batch.arrays}
    slot.buf[0] = 0  # Frees the slot: stored after the copies above have read it (_Pool.stack).
    self.from_slots += 1
    return out

  @property
  def mapped(self) -> list[str]:
    """The names of the slots mapped, for checks."""
    return sorted(self._open)

  def _segment(self, name: str) -> shared_memory.SharedMemory:
    segment = self._open.get(name)
    if segment is None:
      segment = self._open[name] = shared_memory.SharedMemory(name)
      # The mappings stay valid, and no name is left in /dev/shm if a process dies later. The
      # resource tracker (the workers share this process's) forgets the name.
      segment.unlink()
    return segment

  def close(self) -> None:
    """Unmaps the slots; unlinks those of the workers that never reached this process (their
    batches were still in flight). Call after the workers have stopped."""
    for segment in self._open.values():
      segment.close()
    self._open.clear()
    for name in os.listdir(_SHM_DIR) if os.path.isdir(_SHM_DIR) else []:
      if name.startswith(self._prefix):
        segment = shared_memory.SharedMemory(name)
        segment.close()
        segment.unlink()

