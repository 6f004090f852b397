"""One error format: a user error is one line `error: ...` on stderr and exit code 2; --verbose
adds the traceback; messages list the nearest config files and the valid fields."""
import os

import pytest

from configs import common, loader
from tools import bench
from training import errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_config_lists_the_nearest_files():
  with pytest.raises(FileNotFoundError) as error:
    loader.load('configs/seg/fcn8_shapes.py')
  assert 'nearest: configs/seg/fcn8s_shapes.py' in str(error.value)


def test_misspelt_field_lists_that_nodes_fields():
  with pytest.raises(KeyError) as error:
    loader.check_fields(common.base_config(), ['optimizer.learnin_rate'])
  text = errors.message(error.value)
  assert text.startswith("unknown config field 'optimizer.learnin_rate': did you mean "
                         "'learning_rate'? optimizer has b1, b2, grad_clip_norm")
  with pytest.raises(KeyError, match='config has .*optimizer'):
    loader.check_fields(common.base_config(), ['optimiser.name'])
  config = common.base_config()
  config.eval_xla_options = {}
  with pytest.raises(KeyError, match="'eval_xla_options.x': eval_xla_options has no fields; set "
                     'them in the config file'):
    loader.check_fields(config, ['eval_xla_options.x'])


def test_check_config_args_reads_both_flag_forms():
  spec = os.path.join(REPO, 'configs/seg/fcn8s_shapes.py:runlocal')
  errors.check_config_args(['train.py', '--config', spec, '--config.total_steps=3'])
  with pytest.raises(errors.UserError, match='did you mean .learning_rate.'):
    errors.check_config_args(['train.py', f'--config={spec}', '--config.optimizer.learnin_rate=1'])


def test_guard_prints_one_line_and_exits_2(capsys, monkeypatch):
  monkeypatch.delenv(errors.VERBOSE_ENV, raising=False)
  with pytest.raises(SystemExit) as exit_:
    errors.guard(bench.main)(['--config', 'configs/seg/nope.py'])
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and err.count('\n') == 1
  assert err.startswith("error: config file 'configs/seg/nope.py' not found; nearest:")

  monkeypatch.setenv(errors.VERBOSE_ENV, '1')
  with pytest.raises(SystemExit):
    errors.guard(bench.main)(['--config', 'configs/seg/nope.py'])
  assert 'Traceback (most recent call last)' in capsys.readouterr().err


def test_bugs_keep_their_traceback():
  def buggy(argv):
    raise ZeroDivisionError('a bug')
  with pytest.raises(ZeroDivisionError):
    errors.guard(buggy)([])
