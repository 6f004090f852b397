r"""A hyperparameter sweep in one command: every trial in its own workdir, results.csv, a plot.

  python -m tools.sweep --config configs/seg/fcn8s_shapes.py --sweep sweeps/lr.py \
      --workdir runs/sweep_lr [--set total_steps=200 ...] [--parallel 2 | --vectorize] \
      [--pbt-every 50 [--pbt-fraction 0.25 --pbt-perturb 0.8 1.25]]

The sweep file's `get_sweep()` returns one override dict per trial (see sweeps/hyper.py). Trial i
trains in `W/trial_<i>` exactly like `train.py` would (config.json, checkpoints, metrics.jsonl,
eval/) and ends with `status.json`. A rerun skips finished trials (done, or diverged with a
non-finite loss) and resumes the others from their last checkpoint.

- default: trials one after the other, in this process;
- `--parallel N`: N `train.py` processes at a time (their logs: `W/trial_<i>/train.log`);
- `--vectorize`: when the swept fields leave shapes alone (training/population.py: learning rate,
  weight decay, seed), all pending trials train as one population in one jitted step, sharded
  over the devices; otherwise it says why and runs the trials one by one. `--population-mode`
  picks how the step covers the members: `vmap` (accelerators: one grouped convolution for all),
  `unroll` (the K steps side by side in one program) or `loop` (the CPU default: one compiled
  member step called for each member; XLA:CPU runs grouped convolutions ~3.6x slower than K
  separate ones, and an unrolled program compiles K times longer). Either way there is one
  process, one compiled step and one data pipeline for all trials (BENCHMARKS.md);
- `--pbt-every N`: population-based training on the vectorised population.

Finally `W/results.csv` gets one row per trial (swept values, status, final/ and best/ metrics)
and `W/sweep.png` plots `--metric` against each swept field, and every trial's loss curve.
"""
import argparse
import concurrent.futures
import copy
import csv
import json
import logging
import math
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt

from configs import loader
from sweeps import hyper
from training import compile_cache, errors, loop, resume
from training.population import MODES, PBT, non_vectorizable, train_population

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINISHED = ('done', 'diverged')  # A rerun skips these; 'error' and unstarted trials run.


def trial_name(index: int) -> str:
  return f'trial_{index:03d}'


def _assignments(trial: dict) -> list[str]:
  return [f'{k}={v}' if isinstance(v, str) else f'{k}={v!r}' for k, v in trial.items()]


def read_status(trial_dir: str) -> dict:
  path = os.path.join(trial_dir, 'status.json')
  if not os.path.exists(path):
    return {'status': 'pending'}
  with open(path) as f:
    return json.load(f)


def _write_status(trial_dir: str, status: str, **extra):
  os.makedirs(trial_dir, exist_ok=True)
  with open(os.path.join(trial_dir, 'status.json'), 'w') as f:
    json.dump({'status': status, **extra}, f, indent=2)


def _check_same_sweep(workdir: str, record: dict):
  # Trial i's workdir holds trial i's checkpoints: a changed sweep file must not reuse them.
  path = os.path.join(workdir, 'sweep.json')
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) != record:
        raise errors.UserError(f'{workdir} was started with a different config, --set or sweep; '
                         f'compare {path}, or use a new --workdir.')
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(record, f, indent=2)


def _run_in_process(config, trial_dir: str):
  try:
    loop.train_and_evaluate(config, trial_dir)
    _write_status(trial_dir, 'done')
  except loop.NonFiniteLossError as e:
    _write_status(trial_dir, 'diverged', message=str(e))
  except Exception as e:  # Keep sweeping; the trial is retried by the next run.
    logging.exception('%s failed', trial_dir)
    _write_status(trial_dir, 'error', message=f'{type(e).__name__}: {e}')


def _run_subprocess(args, trial: dict, trial_dir: str):
  os.makedirs(trial_dir, exist_ok=True)
  cmd = [sys.executable, os.path.join(REPO, 'train.py'), f'--config={args.config}',
         f'--workdir={trial_dir}', '--noprogress']
  cmd += [f'--config.{a}' for a in args.set + _assignments(trial)]
  # N processes share the accelerators: without preallocation each takes only what it needs.
  env = {**os.environ, 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}
  log_path = os.path.join(trial_dir, 'train.log')
  with open(log_path, 'w') as log:
    rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
  with open(log_path) as f:
    tail = f.read()[-2000:]
  if rc == 0:
    _write_status(trial_dir, 'done')
  elif resume.DIVERGED in tail:
    _write_status(trial_dir, 'diverged', message=tail.strip().splitlines()[-1])
  else:
    _write_status(trial_dir, 'error', message=f'exit code {rc}; see {log_path}')


def _score(trial_dir: str, metric: str):
  """(metric name, the trial's final value) of `metric`, or of train/loss when it has none."""
  series = _read_metrics(trial_dir)
  key = metric if metric in series else 'train/loss'
  values = series.get(key)
  return key, (values[max(values)] if values else None)


class Progress:
  """Prints one line per finished trial: 'trial i/N', its result and the best trial so far."""

  def __init__(self, workdir: str, trials, metric: str):
    self.workdir, self.trials, self.metric = workdir, trials, metric
    self.count = 0

  def _line(self, index: int) -> str:
    trial_dir = os.path.join(self.workdir, trial_name(index))
    key, value = _score(trial_dir, self.metric)
    shown = 'no metrics' if value is None else f'{key}={value:.4g}'
    status = read_status(trial_dir)['status']
    return f'{trial_name(index)} {_label(self.trials[index])}: {status}, {shown}'

  def best(self):
    """(trial index, metric name, value) of the best finished trial, or None."""
    scored = []
    for i in range(len(self.trials)):
      trial_dir = os.path.join(self.workdir, trial_name(i))
      key, value = _score(trial_dir, self.metric)
      if read_status(trial_dir)['status'] == 'done' and value is not None and math.isfinite(value):
        scored.append((value if 'loss' in key else -value, i, key, value))
    return min(scored)[1:] if scored else None

  def finished(self, index: int):
    self.count += 1
    best = self.best()
    best_text = (f'; best so far: {trial_name(best[0])} {best[1]}={best[2]:.4g}' if best
                 else '; no finished trial yet')
    print(f'trial {self.count}/{len(self.trials)} {self._line(index)}{best_text}', flush=True)


def run_sweep(args, trials: list[dict] | None = None) -> list[dict]:
  """Runs the pending trials of the sweep (args.sweep's, unless given); returns the trials."""
  trials = hyper.load(args.sweep) if trials is None else trials
  with errors.user_input():
    base = loader.override(loader.load(args.config), args.set)
  _check_same_sweep(args.workdir, {'config': args.config, 'set': args.set, 'trials': trials})
  dirs = [os.path.join(args.workdir, trial_name(i)) for i in range(len(trials))]
  pending = [i for i, d in enumerate(dirs) if read_status(d)['status'] not in FINISHED]
  print(f'sweep: {len(trials)} trials, {len(trials) - len(pending)} finished before, '
        f'{len(pending)} to run', flush=True)
  progress = Progress(args.workdir, trials, getattr(args, 'metric', 'eval/mean_iou'))
  progress.count = len(trials) - len(pending)
  with errors.user_input():
    configs = {i: loader.override(copy.deepcopy(base), _assignments(trials[i])) for i in pending}

  blockers = non_vectorizable({k for t in trials for k in t})
  if args.pbt_every and blockers:
    raise errors.UserError(f'--pbt-every needs a vectorisable sweep; {", ".join(blockers)} '
                           'cannot vary within a population; drop --pbt-every')
  if pending and (args.vectorize or args.pbt_every) and not blockers:
    pbt = args.pbt_every and PBT(args.pbt_every, args.pbt_fraction, tuple(args.pbt_perturb))
    _, results = train_population([configs[i] for i in pending], [dirs[i] for i in pending],
                                  os.path.join(args.workdir, 'population'), pbt=pbt or None,
                                  mode=args.population_mode)
    for i, result in zip(pending, results, strict=True):
      if not pbt:  # Without PBT, lineage and hyperparameters are the trial's own.
        result = {k: result[k] for k in ('status', 'message')}
      _write_status(dirs[i], **result)
      progress.finished(i)
    return trials
  if args.vectorize and blockers:
    logging.warning('not vectorising: %s change shapes or the model; running trials one by one.',
                    ', '.join(blockers))
  if args.parallel > 1:
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
      runs = {pool.submit(_run_subprocess, args, trials[i], dirs[i]): i for i in pending}
      for run in concurrent.futures.as_completed(runs):
        run.result()
        progress.finished(runs[run])
  else:
    for i in pending:
      print(f'{trial_name(i)} {_label(trials[i])}: training', flush=True)
      _run_in_process(configs[i], dirs[i])
      progress.finished(i)
  return trials


def _read_metrics(trial_dir: str) -> dict:
  """{name: {step: value}} from metrics.jsonl (a resumed run's repeated steps keep the last)."""
  series = {}
  path = os.path.join(trial_dir, 'metrics.jsonl')
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        for key, value in record.items():
          if key != 'step':
            series.setdefault(key, {})[record['step']] = value
  return series


def _best(key: str, values):
  finite = [v for v in values if math.isfinite(v)]
  if not finite:
    return math.nan
  return min(finite) if 'loss' in key else max(finite)


def collect(workdir: str, trials) -> list[dict]:
  """One row per trial: swept values, status, final/<metric> and best/<metric> (eval, loss)."""
  rows = []
  for i, trial in enumerate(trials):
    trial_dir = os.path.join(workdir, trial_name(i))
    status = read_status(trial_dir)
    row = {'trial': trial_name(i), 'status': status['status'], **trial}
    if 'lineage' in status:  # PBT: where the weights came from and the hyperparameters at the end.
      row['lineage'] = status['lineage']
      row.update({f'final_hparams/{k}': v for k, v in status['hparams'].items()})
    series = _read_metrics(trial_dir)
    for key in sorted(series):
      if key.startswith(('train/', 'eval/')):
        row[f'final/{key}'] = series[key][max(series[key])]
    for key in sorted(series):
      if key.startswith('eval/') or key == 'train/loss':
        row[f'best/{key}'] = _best(key, series[key].values())
    rows.append(row)
  return rows


def write_csv(rows, path: str):
  columns = list(dict.fromkeys(k for row in rows for k in row))
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)


def _numeric(values) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _label(trial: dict) -> str:
  return ', '.join(f'{k.split(".")[-1]}={v:.3g}' if isinstance(v, float) else
                   f'{k.split(".")[-1]}={v}' for k, v in trial.items())


def plot(workdir: str, trials, rows, metric: str, path: str):
  """`metric` (final and best) against each swept field, and the train loss curves."""
  if not any(f'final/{metric}' in row for row in rows):
    metric = 'train/loss'
  keys = list(dict.fromkeys(k for t in trials for k in t))
  fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4.5 * (len(keys) + 1), 3.8), squeeze=False)
  for ax, key in zip(axes[0], keys, strict=False):
    values = [row.get(key) for row in rows]
    xs = values if _numeric(values) else [sorted(set(map(str, values))).index(str(v))
                                          for v in values]
    for kind, marker in (('final', 'o'), ('best', '^')):
      ys = [row.get(f'{kind}/{metric}', math.nan) for row in rows]
      ax.scatter(xs, ys, marker=marker, label=kind, facecolors='none' if kind == 'best' else None,
                 edgecolors='C1' if kind == 'best' else None)
    if _numeric(values) and min(values) > 0 and max(values) / min(values) > 20:
      ax.set_xscale('log')
    if not _numeric(values):
      ax.set_xticks(range(len(set(map(str, values)))), sorted(set(map(str, values))),
                    rotation=30)
    ax.set(xlabel=key, ylabel=metric, title=f'{metric} vs {key.split(".")[-1]}')
    ax.legend(fontsize=8)
  curves = axes[0][-1]
  for i, trial in enumerate(trials):
    loss = _read_metrics(os.path.join(workdir, trial_name(i))).get('train/loss', {})
    steps = sorted(loss)
    curves.plot(steps, [loss[s] for s in steps], label=_label(trial), lw=1.2)
  curves.set(xlabel='step', ylabel='train loss', title='learning curves', yscale='log')
  curves.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='config file[:args], as for train.py')
  parser.add_argument('--sweep', required=True, help='python file with get_sweep()')
  parser.add_argument('--workdir', required=True, help='one subdirectory per trial')
  parser.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE',
                      help='overrides applied to every trial (e.g. total_steps=200)')
  parser.add_argument('--parallel', type=int, default=1, help='trials at a time (processes)')
  parser.add_argument('--vectorize', action='store_true',
                      help='train vectorisable sweeps as one population in one jitted step')
  parser.add_argument('--population-mode', choices=MODES, default=None,
                      help='how one step covers the members (default: loop on CPU, else vmap)')
  parser.add_argument('--pbt-every', type=int, default=0, help='PBT interval in steps (0: off)')
  parser.add_argument('--pbt-fraction', type=float, default=0.25)
  parser.add_argument('--pbt-perturb', type=float, nargs='+', default=[0.8, 1.25])
  parser.add_argument('--metric', default='eval/mean_iou', help='metric to plot per swept value')
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
  compile_cache.enable()

  start = time.perf_counter()
  trials = run_sweep(args)
  rows = collect(args.workdir, trials)
  write_csv(rows, os.path.join(args.workdir, 'results.csv'))
  plot(args.workdir, trials, rows, args.metric, os.path.join(args.workdir, 'sweep.png'))
  failed = [row['trial'] for row in rows if row['status'] not in FINISHED]
  best = Progress(args.workdir, trials, args.metric).best()
  print(f'sweep finished in {time.perf_counter() - start:.1f} s; best: '
        + (f'{trial_name(best[0])} {_label(trials[best[0]])} {best[1]}={best[2]:.4g}' if best
           else 'none (no trial finished)'), flush=True)
  if failed:
    print(f'trials not finished: {", ".join(failed)} (rerun the same command to retry; their '
          'errors are in their status.json)', flush=True)
  print(f'plot: {os.path.join(args.workdir, "sweep.png")}', flush=True)
  print(f'results: {os.path.join(args.workdir, "results.csv")}', flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(errors.guard(main)())
