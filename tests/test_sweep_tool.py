"""tools/sweep.py end to end: an interrupted sweep resumes skipping finished trials; PBT logs."""
import csv
import json
import os

import pytest

from tests.workdir_checks import EVAL_SPLIT
from tools import sweep
from training import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs/seg/fcn8s_shapes.py:runlocal')


def _sweep_file(tmp_path, body: str) -> str:
  path = tmp_path / 'my_sweep.py'
  path.write_text(f'from sweeps import hyper\n\n\ndef get_sweep():\n  return {body}\n')
  return str(path)


def _args(tfds_dir, sweep_file, workdir, *extra):
  return ['--config', CONFIG, '--sweep', sweep_file, '--workdir', workdir, '--set',
          f'data.data_dir={tfds_dir}', f'data.eval_split={EVAL_SPLIT}', 'eval_batch_size=8',
          'num_overlays=0', *extra]


def _rows(workdir):
  with open(os.path.join(workdir, 'results.csv')) as f:
    return list(csv.DictReader(f))


def test_interrupted_sweep_reruns_only_unfinished_trials(tfds_dir, tmp_path, monkeypatch,
                                                         capsys):
  # Seeds, not learning rates: the trials share one compiled step (from the compilation cache).
  sweep_file = _sweep_file(tmp_path, "hyper.sweep('seed', [0, 1, 2])")
  workdir = str(tmp_path / 'sweep')
  real_train = loop.train_and_evaluate
  started, interrupt = [], [True]

  def recording_train(config, trial_dir, **kwargs):
    started.append(os.path.basename(trial_dir))
    if interrupt[0] and len(started) == 2:
      raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of trial_001.
    return real_train(config, trial_dir, **kwargs)

  monkeypatch.setattr(loop, 'train_and_evaluate', recording_train)
  with pytest.raises(KeyboardInterrupt):
    sweep.main(_args(tfds_dir, sweep_file, workdir))
  assert sweep.read_status(os.path.join(workdir, 'trial_000'))['status'] == 'done'
  assert sweep.read_status(os.path.join(workdir, 'trial_001'))['status'] == 'pending'

  started.clear()
  interrupt[0] = False
  capsys.readouterr()
  assert sweep.main(_args(tfds_dir, sweep_file, workdir)) == 0
  assert started == ['trial_001', 'trial_002']  # trial_000 was finished: skipped.
  printed = capsys.readouterr().out.splitlines()
  assert printed[0] == 'sweep: 3 trials, 1 finished before, 2 to run'
  progress = [line for line in printed if line.startswith('trial ')]
  assert [line.split()[1] for line in progress] == ['2/3', '3/3']
  assert all('eval/mean_iou=' in line and 'best so far: trial_0' in line for line in progress)
  assert printed[-1] == f'results: {os.path.join(workdir, "results.csv")}'
  rows = _rows(workdir)
  assert [r['status'] for r in rows] == ['done'] * 3
  assert [int(r['seed']) for r in rows] == [0, 1, 2]
  assert all(0 <= float(r['final/eval/mean_iou']) <= 1 for r in rows)
  assert all(float(r['best/train/loss']) <= float(r['final/train/loss']) for r in rows)
  assert os.path.getsize(os.path.join(workdir, 'sweep.png')) > 10_000

  started.clear()
  assert sweep.main(_args(tfds_dir, sweep_file, workdir)) == 0 and not started  # All finished.
  other = _sweep_file(tmp_path, "hyper.sweep('seed', [5])")
  with pytest.raises(ValueError, match='different config, --set or sweep'):
    sweep.main(_args(tfds_dir, other, workdir))


def test_vectorized_sweep_with_pbt_logs_lineage(tfds_dir, tmp_path, monkeypatch):
  # Seeds are swept too, so each member also reads its own data order.
  sweep_file = _sweep_file(tmp_path, "hyper.zipit([hyper.sweep('optimizer.learning_rate', "
                                     "[1e-3, 1e-2]), hyper.sweep('seed', [0, 1])])")
  monkeypatch.chdir(tmp_path)
  workdir = 'pbt'  # Relative, as typed on a command line (orbax needs absolute paths).
  args = _args(tfds_dir, sweep_file, workdir, 'total_steps=4', '--vectorize', '--pbt-every', '2',
               '--pbt-fraction', '0.5')
  assert sweep.main(args) == 0
  events = [json.loads(x) for x in open(os.path.join(workdir, 'population', 'pbt.jsonl'))]
  assert len(events) == 1 and events[0]['step'] == 2
  dst, src = events[0]['member'], events[0]['copied']
  rows = _rows(workdir)
  assert [r['status'] for r in rows] == ['done'] * 2
  assert rows[dst]['lineage'] == f'{src}@0 > {dst}@2' and rows[src]['lineage'] == f'{src}@0'
  copied_lr = float(rows[src]['optimizer.learning_rate'])
  assert any(float(rows[dst]['final_hparams/learning_rate']) == pytest.approx(copied_lr * f)
             for f in (0.8, 1.25))
  assert all(os.path.exists(os.path.join(workdir, f'trial_{i:03d}', 'eval', 'metrics.json'))
             for i in range(2))
