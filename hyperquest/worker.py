"""Background worker pool: trains queued epochs and computes baselines, never in a request.

Jobs are ('epoch', session_id) or ('baseline', dataset). Baselines take minutes (3 seeds x
several epochs), so they have their own thread and queue: a player's epoch never waits behind
one. The queues themselves are not persisted: the
database is the source of truth, and start() re-enqueues every queued epoch and every missing
baseline, which is what makes a killed server resume.
"""
import logging
import os
import queue
import threading
import time
import traceback

log = logging.getLogger("hyperquest.worker")


class WorkerPool:

  def __init__(self, engine, num_workers=1):
    # Tests set HYPERQUEST_JOB_DELAY (seconds) to hold jobs in the queue long enough to kill
    # the server while an epoch is pending.
    self.delay = float(os.environ.get("HYPERQUEST_JOB_DELAY", "0"))
    self.engine = engine
    self.num_workers = num_workers
    self._queue = queue.Queue()
    self._baseline_queue = queue.Queue()
    self._queued = set()
    self._running = {}
    self._guard = threading.Lock()
    self._threads = []
    self._stop = threading.Event()
    self.errors = []

  def start(self):
    sids, datasets = self.engine.pending_work()
    for sid in sids:
      self.submit_epoch(sid)
    for ds in datasets:
      self.submit_baseline(ds)
    queues = [self._queue] * self.num_workers + [self._baseline_queue]
    for i, q in enumerate(queues):
      t = threading.Thread(target=self._loop, args=(q,), name=f"hq-worker-{i}", daemon=True)
      t.start()
      self._threads.append(t)
    return self

  def stop(self, timeout=None):
    self._stop.set()
    for _ in self._threads:
      self._queue.put(None)
      self._baseline_queue.put(None)
    for t in self._threads:
      t.join(timeout)

  def _submit(self, job):
    with self._guard:
      if job in self._queued:
        return
      self._queued.add(job)
    (self._queue if job[0] == "epoch" else self._baseline_queue).put(job)

  def submit_epoch(self, sid):
    self._submit(("epoch", sid))

  def submit_baseline(self, dataset):
    if self.engine.baseline(dataset) is None:
      self._submit(("baseline", dataset))

  def position(self, sid):
    """0 if the session's epoch is training now, k>0 if k jobs are ahead of it, None if idle."""
    job = ("epoch", sid)
    with self._guard:
      if job in self._running.values():
        return 0
      if job not in self._queued:
        return None
      items = list(self._queue.queue)
    return items.index(job) + 1 if job in items else 0

  def idle(self):
    with self._guard:
      return not self._queued and not self._running

  def _loop(self, jobs):
    me = threading.current_thread().name
    while not self._stop.is_set():
      job = jobs.get()
      if job is None:
        return
      with self._guard:
        self._running[me] = job
      try:
        time.sleep(self.delay)
        kind, arg = job
        if kind == "epoch":
          self.engine.run_pending(arg)
        else:
          self.engine.ensure_baseline(arg)
      except Exception:  # a failing job must not kill the worker; it is logged and kept
        self.errors.append((job, traceback.format_exc()))
        log.exception("job %s failed", job)
      finally:
        with self._guard:
          self._running.pop(me, None)
          self._queued.discard(job)
