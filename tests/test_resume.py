"""The resume check: allowed and refused config changes, nothing written before the check, the
workdir's own problems, and the NaN stop's advice."""
import json
import os

import pytest

from configs import common
from training import resume
from training.errors import UserError


def _workdir(tmp_path, config, *, checkpoint: bool = True) -> str:
  workdir = str(tmp_path / 'run')
  resume.prepare_workdir(config, workdir)
  if checkpoint:
    os.makedirs(os.path.join(workdir, 'checkpoints', '4'))
  return workdir


def _saved(workdir) -> dict:
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)


def test_resumable_fields_may_change(tmp_path):
  config = common.base_config()
  workdir = _workdir(tmp_path, config)
  config.total_steps, config.log_every_steps, config.num_overlays = 5000, 7, 0
  config.data.data_dir = '/elsewhere'
  config.xla_options.xla_cpu_scheduler_type = 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'
  resume.prepare_workdir(config, workdir)
  assert _saved(workdir)['total_steps'] == 5000


def test_other_changes_are_refused_before_anything_is_written(tmp_path):
  config = common.base_config()
  workdir = _workdir(tmp_path, config)
  before = _saved(workdir)
  config.optimizer.learning_rate = 0.01
  config.model.backbone = 'resnet18'
  with pytest.raises(UserError) as error:
    resume.prepare_workdir(config, workdir)
  message = str(error.value)
  assert "optimizer.learning_rate: 0.001 -> 0.01" in message
  assert "model.backbone: '(absent)' -> 'resnet18'" in message
  assert 'new --workdir' in message and resume.FORCE_FLAG in message and '\n' not in message
  assert _saved(workdir) == before  # config.json untouched: eval.py still reads the old run.

  resume.prepare_workdir(config, workdir, allow_change=True)
  assert _saved(workdir)['optimizer']['learning_rate'] == 0.01
  with open(os.path.join(workdir, 'config.previous.json')) as f:
    assert json.load(f) == before


def test_a_workdir_without_checkpoints_takes_any_config(tmp_path):
  config = common.base_config()
  workdir = _workdir(tmp_path, config, checkpoint=False)
  config.optimizer.learning_rate = 0.01
  resume.prepare_workdir(config, workdir)
  assert _saved(workdir)['optimizer']['learning_rate'] == 0.01


def test_a_workdir_that_is_a_file_or_under_one_is_one_line(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('')
  with pytest.raises(UserError, match='is a file, not a directory'):
    resume.prepare_workdir(common.base_config(), str(path))
  with pytest.raises(UserError, match='cannot create --workdir .*; give a path where you can'):
    resume.prepare_workdir(common.base_config(), str(path / 'run'))


def test_nan_message_names_the_last_checkpoint_or_none():
  fresh = resume.nonfinite_message('loss', float('nan'), 3, None, 'runs/x')
  assert fresh.startswith(resume.DIVERGED) and 'No checkpoint was saved yet' in fresh
  assert resume.FORCE_FLAG not in fresh  # Nothing to resume: no resume advice.
  later = resume.nonfinite_message('loss', float('nan'), 7, 4, 'runs/x')
  assert 'The last checkpoint is step 4 in runs/x/checkpoints' in later
  assert 'grad_clip_norm' in later and resume.FORCE_FLAG in later


def test_a_read_only_workdir_is_one_line(tmp_path, monkeypatch):
  # Root may write anywhere, so the test cannot chmod its way there: os.access answers as for a
  # user without write permission.
  monkeypatch.setattr(os, 'access', lambda path, mode: False)
  with pytest.raises(UserError, match='is not writable; give a directory you can write to'):
    resume.prepare_workdir(common.base_config(), str(tmp_path))
