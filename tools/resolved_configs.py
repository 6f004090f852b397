r"""Prints every experiment config and sweep resolved, as JSON, to compare two trees.

  python -m tools.resolved_configs > /tmp/before.json
  # ... refactor ...
  python -m tools.resolved_configs > /tmp/after.json && diff /tmp/before.json /tmp/after.json

Variants per config: no argument, each boolean argument alone (`runlocal`, `demo`, `cascade`,
...), `runlocal` with each other boolean, and each value that the config's docstring lists for a
string argument (`upsample=KIND` (nearest, bed_of_nails, ...)). Sweeps: every trial of each
`sweeps/*.py` with a `get_sweep`. A variant that fails prints its error instead of a config.
"""
import argparse
import glob
import json
import os
import re
import sys

from configs import common, loader
from sweeps import hyper

# `key=NAME` (a, b, c) in a config's docstring: the values a string argument takes.
_CHOICES = re.compile(r'`(\w+)=[A-Z_]+`\s*\(([^)]*)\)')


def _argument_defaults(path: str) -> dict:
  """The keyword defaults the config passes to common.parse_arg (recorded by a wrapper)."""
  seen = {}
  original = common.parse_arg

  def recording(arg, **defaults):
    seen.update(defaults)
    return original(arg, **defaults)

  common.parse_arg = recording
  try:
    loader.load(path)
  finally:
    common.parse_arg = original
  return seen


def variants(path: str) -> list[str]:
  defaults = _argument_defaults(path)
  flags = sorted(k for k, v in defaults.items() if isinstance(v, bool))
  out = [''] + flags
  out += [f'runlocal,{f}' for f in flags if f != 'runlocal' and 'runlocal' in flags]
  with open(path) as f:
    doc = f.read()
  for key, listed in _CHOICES.findall(doc):
    if isinstance(defaults.get(key), str):
      words = [w.strip() for w in listed.split(',')]
      out += [f'{key}={w}' for w in words if re.fullmatch(r'\w+', w)]
  return out


def resolve_all() -> dict:
  resolved = {}
  for path in loader.all_config_files():
    for variant in variants(path):
      spec = f'{path}:{variant}' if variant else path
      try:
        resolved[spec] = loader.load(spec).to_dict()
      except Exception as e:  # noqa: BLE001 (a failing variant is part of what is compared)
        resolved[spec] = f'error: {type(e).__name__}: {e}'
  repo = os.path.dirname(loader.CONFIG_ROOT)
  for path in sorted(glob.glob(os.path.join(repo, 'sweeps', '*.py'))):
    if os.path.basename(path) not in ('__init__.py', 'hyper.py'):
      resolved[os.path.relpath(path, repo)] = hyper.load(path)
  return resolved


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.parse_args(argv)
  json.dump(resolve_all(), sys.stdout, indent=1, sort_keys=True, default=repr)
  sys.stdout.write('\n')


if __name__ == '__main__':
  main()
