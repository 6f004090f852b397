"""Device prefetch: the next train batches are read and put on the devices while the step runs."""
import queue
import threading


class DevicePrefetch:
  """Wraps a checkpointable host iterator: a thread reads `size` batches ahead and puts each on
  the devices with `put` (the transfer overlaps the running step).

  `get_state()` is the host iterator's state after the last batch handed out, not after the
  batches waiting in the queue, so a checkpoint resumes exactly after the last step. Errors of
  the reader reach the caller at the `next()` that would have returned that batch.
  """

  def __init__(self, iterator, put, size: int = 2):
    if size < 1:
      raise ValueError(f'config.data.device_prefetch must be >= 1, got {size}')
    self._iterator, self._put = iterator, put
    self._queue = queue.Queue(maxsize=size)
    self._state = iterator.get_state()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._read, daemon=True, name='device-prefetch')
    self._thread.start()

  def _read(self):
    while not self._stop.is_set():
      try:
        item = (self._put(next(self._iterator)), self._iterator.get_state(), None)
      except Exception as e:  # Handed to the consumer thread, which raises it there.
        item = (None, None, e)
      self._queue.put(item)
      if item[2] is not None:
        return

  def __iter__(self):
    return self

  def __next__(self):
    batch, state, error = self._queue.get()
    if error is not None:
      raise error
    self._state = state
    return batch

  def get_state(self):
    return self._state

  def close(self):
    """Stops the reader thread (the batches it holds are dropped), then closes the host iterator:
    a grain iterator with worker processes stops them and frees their shared-memory batches
    (left open, the interpreter's exit killed the workers and leaked those)."""
    self._stop.set()
    while self._thread.is_alive():  # Unblocks its put.
      try:
        self._queue.get(timeout=0.1)
      except queue.Empty:
        pass
    if hasattr(self._iterator, 'close'):
      self._iterator.close()
