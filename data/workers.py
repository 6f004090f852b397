"""The train pipeline's grain worker processes: how many, what runs in them, how their batches
reach the main process, and an iterator state that is the same with any worker count."""
import os

import cv2
import grain.python as grain
import numpy as np

from data.source import config_field as _get


class TrainIterator:
  """grain's train iterator with a state that does not depend on the worker count: a checkpoint
  resumes with another `data.worker_count` or on a machine with other cores (grain's own state
  is one form in-process and another per worker count: its set_state failed with a KeyError)."""

  def __init__(self, iterator, workers: int):
    self._iterator, self._workers, self._batches = iterator, workers, 0

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

  def close(self) -> None:
    """Stops the worker processes (if any) and frees their shared-memory batches."""
    self._iterator.close()


def _batches_read(state: dict) -> int:
  """The batches read before `state`: ours, or grain's (checkpoints written before ours)."""
  if 'batches' in state:
    return int(state['batches'])
  if 'next_index' in state:  # In-process.
    return int(state['next_index'])
  return sum(int(s['next_index']) for s in state['iterators_in_use_states'])  # Workers.


# worker_count -1 starts one worker per core from this many cores up. Measured on 2 quiet cores
# (BENCHMARKS.md "Input pipeline", third session): in-process 105 img/s at 17.5 ms of CPU per
# image (2 read threads use ~1.8 cores), 2 workers 67 img/s at 30 ms: each worker batch crosses in
# fresh shared memory whose page faults cost ~5 ms per 800x1333 image. C workers then read about
# C x 33 img/s, more than in-process from 4 cores up (estimated, not measured on such a machine).
MIN_CORES_FOR_WORKERS = 4


def worker_count(cfg) -> int:
  """The train pipeline's grain worker processes: `data.worker_count`; -1 = one per core from
  MIN_CORES_FOR_WORKERS cores up, else none (in-process threads)."""
  workers = int(_get(cfg, 'worker_count', 0))
  if workers < 0:
    cores = len(os.sched_getaffinity(0))
    workers = cores if cores >= MIN_CORES_FOR_WORKERS else 0
  return workers


_in_worker = False  # True in grain's worker processes (set by init_worker).


def init_worker(index: int, count: int) -> None:
  """Runs first in each grain worker process."""
  del index, count
  global _in_worker
  _in_worker = True
  # One OpenCV thread: the workers already fill the cores; cv2's pool (one thread per core in
  # every worker) only contends with them.
  cv2.setNumThreads(1)


def stack(elements: list[dict]) -> dict:
  """The batch of `elements` (grain's batch). In a worker process each array is stacked straight
  into shared memory, which grain then hands to the main process as it is; a private batch would
  be copied there once more (~7 MB per batch of 2 at 800x1333: 9 ms of the worker's CPU)."""
  def one(*arrays):
    if not _in_worker or not arrays[0].size:
      return np.stack(arrays)
    return np.stack(arrays, out=grain.SharedMemoryArray((len(arrays), *arrays[0].shape),
                                                        arrays[0].dtype))
  return {k: one(*(e[k] for e in elements)) for k in elements[0]}


def copy_from_shared_memory(batch: dict) -> dict:
  """The workers' batch as ordinary arrays. grain hands it over in shared memory that is freed
  when its array is deleted; jax on CPU keeps the arrays it is given (zero-copy), so those still
  alive at exit were never freed ('leaked shared_memory objects' at the end of `make demo')."""
  return {k: np.array(v) for k, v in batch.items()}
