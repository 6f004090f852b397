r"""Speed, element size and peak memory of a config's input pipelines (no model, no device).

  python -m tools.bench_input --config configs/det/faster_rcnn_r50_fpn_coco.py \
      --set data.manual_dir=/tmp/cocolike/manual --set data.data_dir=/tmp/cocolike/tfds \
      [--workers 0 2] [--batch_size 2] [--batches 30] [--eval_images 300] [--eval_step_s 0.5]

Reports, each measured in a fresh process (peak memory is a high-water mark):
- train: img/s of `data.make_train_iterator` with each `--workers` count (0 = in-process
  threads), the CPU time per image of the main process and of the worker processes, bytes per
  batch element, the shared-memory slots the workers' batches came through (data.workers),
  peak RSS of the process and its workers (the batches carry
  the per-pixel targets of the config's task, `Task.pixel_targets`, as train.py's do);
- eval: peak RSS while `data.make_eval_batches` is iterated over the first `--eval_images` images
  of the eval split at `--eval_batch_size`, the consumer taking `--eval_step_s` per batch (a model
  that is slower than the readers is what fills unbounded buffers);
- stages: ms per image of reading + decoding, augmenting + building the element, and batching,
  in one thread.
Prints a Markdown table row per measurement (and JSON with --json).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

import data
import tasks
from configs import loader
from data import pipeline


def _status_bytes(pid: int, field: str) -> int:
  """A memory field of /proc/PID/status (VmRSS: now, VmHWM: peak) in bytes; 0 if it has ended."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1]) * 1024
  except OSError:  # The process ended between listing and reading.
    pass
  return 0


def _cpu_seconds(pid: int) -> float:
  """User + system CPU seconds of process `pid` (all its threads); 0 if it has ended."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
  except OSError:
    return 0.0
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _descendants(pid: int) -> list[int]:
  out = []
  try:
    for tid in os.listdir(f'/proc/{pid}/task'):
      with open(f'/proc/{pid}/task/{tid}/children') as f:
        out += [int(c) for c in f.read().split()]
  except OSError:
    return out
  return out + [d for c in out for d in _descendants(c)]


class PeakMemory:
  """Samples the RSS of this process plus its descendants (grain workers) every 20 ms."""

  def __init__(self):
    self.peak = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    while not self._stop.is_set():
      pid = os.getpid()
      self.peak = max(self.peak, sum(_status_bytes(p, 'VmRSS') for p in [pid, *_descendants(pid)]))
      self._stop.wait(0.02)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def _element_bytes(batch: dict) -> int:
  return sum(v.nbytes for v in batch.values()) // len(next(iter(batch.values())))


def bench_train(config, workers: int, batch_size: int, batches: int, targets) -> dict:
  config.data.worker_count = workers
  it = data.make_train_iterator(config.data, global_batch_size=batch_size, seed=0,
                                targets=targets)
  for _ in range(3):  # Start-up: workers spawning, buffers filling.
    batch = next(it)
  processes = lambda: [os.getpid(), *_descendants(os.getpid())]
  workers_cpu = lambda: sum(_cpu_seconds(p) for p in processes()[1:])
  start, main_start, workers_start = time.perf_counter(), time.process_time(), workers_cpu()
  for _ in range(batches):
    batch = next(it)
  seconds = time.perf_counter() - start
  images = batches * batch_size
  cpu_ms = dict(main_cpu_ms=1000 * (time.process_time() - main_start) / images,
                workers_cpu_ms=1000 * (workers_cpu() - workers_start) / images)
  # The processes' own high-water marks (their sum bounds the peak of them together), not RSS
  # sampling as in evaluation: its walk over every thread of every process every 20 ms took CPU
  # time from the main process whose speed this measures.
  peak = sum(_status_bytes(p, 'VmHWM') for p in processes())
  slots = it.slot_stats()
  it.close()  # Stops the workers; their shared-memory batches are freed.
  return dict(mode='train', workers=workers, img_per_s=images / seconds, **cpu_ms,
              element_mib=_element_bytes(batch) / 2**20, peak_rss_gb=peak / 1e9, **slots,
              shapes={k: (str(v.dtype), v.shape[1:]) for k, v in batch.items()})


def bench_eval(config, batch_size: int, images: int, step_s: float, targets) -> dict:
  config.data.eval_split = f'{config.data.get("eval_split", "validation")}[:{images}]'
  with PeakMemory() as memory:
    start, count = time.perf_counter(), 0
    for batch in data.make_eval_batches(config.data, batch_size=batch_size, targets=targets):
      count += int(np.sum(batch['example_valid']))
      time.sleep(step_s)
    seconds = time.perf_counter() - start
  return dict(mode='eval', images=count, batch_size=batch_size, step_s=step_s,
              seconds=seconds, element_mib=_element_bytes(batch) / 2**20,
              peak_rss_gb=memory.peak / 1e9)


def bench_stages(config, images: int, batch_size: int, targets) -> dict:
  """ms per image of each stage of the train pipeline, in this thread."""
  source = pipeline.decoded_source(config.data, config.data.get('train_split', 'train'))
  times = dict(decode=0.0, augment_element=0.0, batch=0.0)
  elements = []
  for i in range(images):
    t0 = time.perf_counter()
    ex = source[i % len(source)]
    t1 = time.perf_counter()
    elements.append(pipeline.train_element(i, ex, cfg=config.data, seed=0, process_index=0,
                                           targets=targets))
    t2 = time.perf_counter()
    times['decode'] += t1 - t0
    times['augment_element'] += t2 - t1
    if len(elements) == batch_size:
      t3 = time.perf_counter()
      {k: np.stack([e[k] for e in elements]) for k in elements[0]}  # What grain's batch does.
      times['batch'] += time.perf_counter() - t3
      elements = []
  return dict(mode='stages', images=images, **{f'{k}_ms': 1000 * v / images
                                               for k, v in times.items()})


def _run_child(args, mode: str, workers: int = 0, eval_images: int = 0) -> dict:
  command = [sys.executable, '-m', 'tools.bench_input', '--config', args.config, '--child', mode,
             '--workers', str(workers), '--batch_size', str(args.batch_size), '--batches',
             str(args.batches), '--eval_images', str(eval_images), '--eval_batch_size',
             str(args.eval_batch_size), '--eval_step_s', str(args.eval_step_s),
             '--stage_images', str(args.stage_images)]
  for assignment in args.set:
    command += ['--set', assignment]
  out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def _row(r: dict, load: str) -> str:
  if r['mode'] == 'train':
    return (f"| train | workers {r['workers']} | {r['img_per_s']:.1f} img/s | CPU ms/image: main "
            f"{r['main_cpu_ms']:.1f}, workers {r['workers_cpu_ms']:.1f} | "
            f"{r['element_mib']:.2f} MiB/element | peak {r['peak_rss_gb']:.2f} GB | "
            f"{r['slots']} slots, {r['from_slots']} batches through them | {load} |")
  if r['mode'] == 'eval':
    return (f"| eval | {r['images']} images, batch {r['batch_size']}, {r['step_s']} s/step | "
            f"{r['images'] / r['seconds']:.1f} img/s | {r['element_mib']:.2f} MiB/element | "
            f"peak {r['peak_rss_gb']:.2f} GB | {load} |")
  stages = ', '.join(f'{k[:-3]} {v:.1f}' for k, v in r.items() if k.endswith('_ms'))
  return f"| stages | ms/image: {stages} | {load} |"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='Config file (path[:args]).')
  parser.add_argument('--set', action='append', default=[], help='Override, e.g. data.x=1.')
  parser.add_argument('--only', choices=['train', 'eval', 'stages'], action='append')
  parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--batches', type=int, default=30)
  parser.add_argument('--eval_images', type=int, nargs='+', default=[300])
  parser.add_argument('--eval_batch_size', type=int, default=8)
  parser.add_argument('--eval_step_s', type=float, default=0.5)
  parser.add_argument('--stage_images', type=int, default=20)
  parser.add_argument('--json', action='store_true', help='Also print the results as JSON.')
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  config = loader.override(loader.load(args.config), args.set)
  data.ensure_prepared(config.data)

  if args.child:  # One measurement in this fresh process; the parent reads the JSON line.
    workers = args.workers[0]
    targets = tasks.get_task(config).pixel_targets
    result = {'train': lambda: bench_train(config, workers, args.batch_size, args.batches,
                                           targets),
              'eval': lambda: bench_eval(config, args.eval_batch_size, args.eval_images[0],
                                         args.eval_step_s, targets),
              'stages': lambda: bench_stages(config, args.stage_images, args.batch_size,
                                             targets)}
    print(json.dumps(result[args.child]()))
    return

  runs = {'stages': [dict(mode='stages')], 'train': [dict(mode='train', workers=w)
                                                      for w in args.workers],
          'eval': [dict(mode='eval', eval_images=n) for n in args.eval_images]}
  results = []
  for mode in args.only or ['stages', 'train', 'eval']:
    for run in runs[mode]:
      results.append(_run_child(args, **run))
      load = 'load ' + ' '.join(f'{x:.2f}' for x in os.getloadavg())
      print(_row(results[-1], load), flush=True)
  if args.json:
    print(json.dumps(results, indent=2, default=str))


if __name__ == '__main__':
  main()
