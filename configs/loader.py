"""Loads `path/to/config.py[:args]` and applies `a.b=value` overrides, outside of absl flags.

train.py gets the same behaviour from ml_collections' `config_flags`, which `override` also uses
to parse values (one parser); tools (bench, sweeps) and tests use this module so they can load
several configs in one process.
"""
import difflib
import glob
import importlib.util
import os

import ml_collections
from absl import flags
from ml_collections import config_flags

CONFIG_ROOT = os.path.dirname(os.path.abspath(__file__))


def all_config_files() -> list[str]:
  """Every experiment config under configs/ (files with a get_config), relative to the repo."""
  repo = os.path.dirname(CONFIG_ROOT)
  paths = []
  for path in sorted(glob.glob(os.path.join(CONFIG_ROOT, '*', '*.py'))):
    with open(path) as f:
      if 'def get_config' in f.read():
        paths.append(os.path.relpath(path, repo))
  return paths


def load(spec: str) -> ml_collections.ConfigDict:
  """'configs/seg/fcn8s_shapes.py:runlocal' -> the ConfigDict its get_config returns."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    configs = all_config_files()
    near = difflib.get_close_matches(os.path.normpath(path), configs, n=4, cutoff=0.5)
    raise FileNotFoundError(f'config file {path!r} not found; nearest: {", ".join(near)}'
                            if near else f'config file {path!r} not found; configs: '
                            f'{", ".join(configs)}')
  module_spec = importlib.util.spec_from_file_location('_experiment_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def check_fields(config: ml_collections.ConfigDict, keys):
  """Raises KeyError for a dotted key ('optimizer.learning_rate') naming no field, listing the
  fields of the node where it goes wrong."""
  for key in keys:
    node = config
    for i, name in enumerate(key.split('.')):
      where = '.'.join(key.split('.')[:i]) or 'config'
      if not isinstance(node, ml_collections.ConfigDict):
        raise KeyError(f'unknown config field {key!r}: {where} is a value, not a block')
      if name not in node:
        if not node:  # An empty block (config.xla_options): flags cannot add fields to it.
          raise KeyError(f'unknown config field {key!r}: {where} has no fields; set them in '
                         'the config file')
        near = difflib.get_close_matches(name, list(node), n=1)
        hint = f'did you mean {near[0]!r}? ' if near else ''
        raise KeyError(f'unknown config field {key!r}: {hint}{where} has '
                       f'{", ".join(sorted(node))}')
      node = node[name]


def override(config: ml_collections.ConfigDict, assignments) -> ml_collections.ConfigDict:
  """Applies 'optimizer.learning_rate=0.01'-style assignments in place; unknown keys list fields.

  Values are parsed by ml_collections' config flags, the parser of train.py's
  `--config.FIELD=VALUE`, so a tool's `--set` and a training command read a value alike.
  """
  argv = ['override']
  for assignment in assignments:
    key, sep, _ = assignment.partition('=')
    if not sep:
      raise ValueError(f'override {assignment!r} must look like key=value')
    check_fields(config, [key])
    argv.append(f'--config.{assignment}')
  values = flags.FlagValues()
  config_flags.DEFINE_config_dict('config', config, flag_values=values, lock_config=False,
                                  sys_argv=argv)
  values(argv)
  return values.config
